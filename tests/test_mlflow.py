"""MLflow's scoring protocol (service/http/mlflow.py) through Flask's test client, with the
request bodies MLflow's documentation gives (``mlflow models serve``, "Deploy MLflow models")."""

from __future__ import annotations

import orjson
import pytest
from test_app import FEATURES, add_version, build, make_model, post_json
from test_v2 import rows

pytestmark = pytest.mark.usefixtures("clean_env")  # tests/conftest.py


@pytest.fixture
def store(tmp_path):
    from service.store import LocalStore

    return LocalStore(tmp_path / "models", "house-price")


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
    assert set(body) == {"error", "error_code", "message"}, body
    assert body["message"] == body["error"]["message"]
    return body


def bodies(batch: list[dict]) -> dict[str, tuple[bytes, str | None]]:
    values = [[r[f] for f in FEATURES] for r in batch]
    columns = list(reversed(FEATURES))
    csv = ",".join(columns) + "\n" + "".join(
        ",".join(repr(r[c]) for c in columns) + "\n" for r in batch)
    json = "application/json"
    return {
        "dataframe_split": (orjson.dumps({"dataframe_split": {"columns": list(FEATURES),
                                                              "data": values}}), json),
        "dataframe_split_index": (orjson.dumps({"dataframe_split": {
            "index": list(range(len(batch))), "columns": columns,
            "data": [v[::-1] for v in values]}}), json),
        "dataframe_records": (orjson.dumps({"dataframe_records": batch}), json),
        "instances": (orjson.dumps({"instances": batch}), json),
        "inputs_columns": (orjson.dumps({"inputs": {f: [r[f] for r in batch]
                                                    for f in FEATURES}}), json),
        "inputs_lists": (orjson.dumps({"inputs": values, "params": {}}), json),
        "charset": (orjson.dumps({"dataframe_records": batch}),
                    "application/json; charset=UTF-8"),
        "csv": (csv.encode(), "text/csv"),
        "csv_charset": (csv.encode(), "text/csv; charset=utf-8"),
        "json_untyped": (orjson.dumps({"dataframe_records": batch}), None),
        "csv_untyped": (csv.encode(), None),
    }


@pytest.mark.parametrize("n", [1, 100])
@pytest.mark.parametrize("form", list(bodies([])))
def test_every_format_equals_predict(client, model, store, form, n):
    batch = rows(n, seed=4)
    data, content_type = bodies(batch)[form]
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = client.post("/invocations", data=data, headers=headers)
    assert r.status_code == 200, r.get_json()
    reference = post_json(client, "/predict", {"instances": batch}).get_json()["predictions"]
    assert r.get_json() == {"predictions": reference, "model_version": store.active_version()}


@pytest.mark.parametrize(("data", "content_type", "status", "code", "message"), [
    (b"{}", "text/plain", 415, "BAD_REQUEST", "This predictor only supports the following "
     "content types: Types: ['application/json', 'text/csv']. Got 'text/plain'."),
    (b"{}", "application/json; format=pandas-split", 415, "BAD_REQUEST",
     "Unrecognized content type parameters: format."),
    (b"{}", "application/json; charset=latin-1", 415, "BAD_REQUEST",
     "The scoring server only supports UTF-8"),
    (b'{"dataframe_records": [}', "application/json", 400, "BAD_REQUEST",
     "Invalid input. Ensure that input is a valid JSON formatted string."),
    (b"[1]", "application/json", 400, "BAD_REQUEST", "Received a list."),
    (b'{"data": [[1, 2, 3, 4]]}', "application/json", 400, "BAD_REQUEST",
     "Received dictionary with input fields: []."),
    (b'{"dataframe_records": [{"sqft": 1.0}]}', "application/json", 400,
     "INVALID_PARAMETER_VALUE", "dataframe_records[0]: feature 'bedrooms' is missing"),
    (b'{"dataframe_records": [{"sqft": "abc", "bedrooms": 2, "bathrooms": 3, "age_years": 4}]}',
     "application/json", 400, "INVALID_PARAMETER_VALUE",
     "dataframe_records[0]: feature 'sqft' must be a number, got \"abc\""),
    (b"sqft,bedrooms\n1,2\n", "text/csv", 400, "INVALID_PARAMETER_VALUE",
     "CSV header: column 'bathrooms' is missing"),
    (b" \x00\x01", None, 400, "INVALID_PARAMETER_VALUE", "CSV header: column 'sqft' is missing"),
    (b'{"instances": [[1e308, 1, 1, 1]]}', None, 400, "INVALID_PARAMETER_VALUE",
     "row 0: the prediction is not finite"),
])
def test_wrong_formats_get_mlflows_errors_in_our_shape(client, model, data, content_type,
                                                       status, code, message):
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = client.post("/invocations", data=data, headers=headers)
    assert r.status_code == status
    body = error_of(r)
    assert body["error_code"] == code
    assert message in body["message"]


def test_ping_version_and_no_model(client, store):
    r = client.get("/ping")
    assert r.status_code == 503 and error_of(r)["error_code"] == "TEMPORARILY_UNAVAILABLE"
    r = client.post("/invocations", json={"instances": [[1, 2, 3, 4]]})
    assert r.status_code == 503 and "sgdserve train" in error_of(r)["message"]
    add_version(store, make_model())
    r = client.get("/ping")
    assert r.status_code == 200 and r.get_json()["status"] == "ready"
    r = client.get("/version")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    from service import __version__

    assert r.get_data(as_text=True) == __version__
    r = client.get("/invocations")
    assert r.status_code == 405 and error_of(r)["error"]["code"] == "method_not_allowed"
