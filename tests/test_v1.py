"""KServe V1 (service/http/v1.py) through Flask's test client: readiness, predict, errors."""

from __future__ import annotations

import gzip

import orjson
import pytest
from test_app import FEATURES, add_version, build, make_model, post_json
from test_v2 import rows

pytestmark = pytest.mark.usefixtures("clean_env")  # tests/conftest.py

NAME = "house-price"
PREDICT = f"/v1/models/{NAME}:predict"


@pytest.fixture
def store(tmp_path):
    from service.store import LocalStore

    return LocalStore(tmp_path / "models", NAME)


@pytest.fixture
def client(tmp_path):
    return build(tmp_path).test_client()


@pytest.fixture
def model(store):
    m = make_model(coef=(149.37, 10_001.3, 4_999.7, -503.1), intercept=50_000.3)
    add_version(store, m)
    return m


def error_of(r) -> dict:
    body = r.get_json()
    assert set(body) == {"error", "code"} and isinstance(body["error"], str), body
    return body


def test_liveness_models_and_readiness(client, store):
    # KServe's client asks with Accept: */*; a browser names text/html and gets the page.
    live = client.get("/", headers={"Accept": "*/*"})
    assert live.get_json() == {"status": "alive"} and "Accept" in live.headers["Vary"]
    page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.content_type.startswith("text/html") and "Accept" in page.headers["Vary"]
    assert client.get("/v1/models").get_json() == {"models": [NAME]}
    r = client.get(f"/v1/models/{NAME}")
    assert r.status_code == 503 and r.get_json()["ready"] is False
    assert "sgdserve train" in r.get_json()["error"]
    add_version(store, make_model())
    r = client.get(f"/v1/models/{NAME}")
    assert r.status_code == 200 and r.get_json() == {"name": NAME, "ready": True}
    r = client.get("/v1/models/other")
    assert r.status_code == 404 and error_of(r)["code"] == "model_not_found"


@pytest.mark.parametrize("n", [1, 200])  # one row takes Python floats, as /predict's does
@pytest.mark.parametrize("layout", ["lists", "objects", "inputs"])
def test_predictions_equal_predict(client, model, store, layout, n):
    batch = rows(n, seed=3)
    instances = ([[r[f] for f in FEATURES] for r in batch] if layout != "objects" else batch)
    key = "inputs" if layout == "inputs" else "instances"
    r = post_json(client, PREDICT, {key: instances})
    assert r.status_code == 200, r.get_json()
    reference = post_json(client, "/predict", {"instances": batch}).get_json()
    assert r.get_json() == {"predictions": reference["predictions"],
                            "model_version": store.active_version()}
    assert r.headers["X-Model-Version"] == store.active_version()


def test_no_content_type_and_gzip(client, model):
    body = orjson.dumps({"instances": [[1500, 3, 2, 20]]})
    expected = post_json(client, PREDICT, {"instances": [[1500, 3, 2, 20]]}).get_json()
    assert client.post(PREDICT, data=body).get_json() == expected
    r = client.post(PREDICT, data=gzip.compress(body), content_type="application/json",
                    headers={"Content-Encoding": "gzip"})
    assert r.get_json() == expected
    r = client.post(PREDICT, data=body, content_type="text/plain")
    assert r.status_code == 415 and error_of(r)["code"] == "unsupported_media_type"


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"{", 400, "request body is not valid JSON"),
    (b'{"instances": [[1, 2, 3]]}', 400, "instances[0] has 3 values; the model has 4"),
    (b'{"instances": [[1, 2, 3, "4"]]}', 400,
     "instances[0][3] ('age_years') must be a number, got \"4\""),
    (b'{"instances": [{"sqft": 1}]}', 400, "instances[0]: feature 'bedrooms' is missing"),
    (b'{"instances": [[1e308, 1, 1, 1]]}', 400, "instances[0]: the prediction is not finite"),
    (b'{"instances": []}', 400, "'instances' is empty"),
    (b'{"rows": []}', 400, "unknown key 'rows'"),
])
def test_bad_bodies_are_4xx_in_kserves_shape(client, model, body, status, message):
    r = client.post(PREDICT, data=body, content_type="application/json")
    assert r.status_code == status
    assert message in error_of(r)["error"]


def test_unknown_paths_and_explain(client, model):
    r = client.post(f"/v1/models/{NAME}:explain", json={"instances": [[1, 2, 3, 4]]})
    assert r.status_code == 501 and error_of(r)["code"] == "unsupported_extension"
    r = client.get("/v1/whatever")
    assert r.status_code == 404 and "in KServe V1 as sgdserve serves it" in error_of(r)["error"]
    r = client.post("/v1/models/other:predict", json={"instances": [[1, 2, 3, 4]]})
    assert r.status_code == 404 and error_of(r)["code"] == "model_not_found"
