"""The HTTP API through Flask's test client: every endpoint, every bad input, hot reload."""

from __future__ import annotations

import logging

import numpy as np
import orjson
import pytest
from openapi_spec_validator import validate

from service.engine import LinearModel
from service.http import create_app
from service.http.openapi import document
from service.http.reload import ModelHolder
from service.store import LocalStore

FEATURES = ("sqft", "bedrooms", "bathrooms", "age_years")
TOKEN = "s3cret-token-for-tests"
ROW = {"sqft": 1500, "bedrooms": 3, "bathrooms": 2, "age_years": 20}


def make_model(
    coef=(150.0, 10_000.0, 5_000.0, -500.0), intercept=50_000.0, x_mean=(1500.0, 3.0, 2.0, 20.0)
) -> LinearModel:
    """A LinearModel built by hand: y = coef . x + intercept, with consistent scaler stats."""
    coef = np.asarray(coef, dtype=float)
    x_mean = np.asarray(x_mean, dtype=float)
    x_scale = np.array([500.0, 1.0, 0.8, 10.0])
    y_mean, y_scale = 300_000.0, 80_000.0
    return LinearModel.numeric(
        feature_names=FEATURES,
        target="price",
        coef=coef,
        intercept=intercept,
        x_mean=x_mean,
        x_scale=x_scale,
        y_mean=y_mean,
        y_scale=y_scale,
        coef_std=coef * x_scale / y_scale,
        intercept_std=0.0,  # standardised form: not used for serving
    )


def add_version(store: LocalStore, model: LinearModel, *, activate: bool = True) -> str:
    metrics = {"holdout": {"rmse": 1000.0, "mae": 800.0, "r2": 0.9}}
    version = store.save(model, {"metrics": metrics}, parent=store.active_version())
    if activate:
        store.activate(version)
    return version


def expected(model: LinearModel, row: dict) -> float:
    return float(np.array([row[f] for f in FEATURES]) @ model.coef + model.intercept)


pytestmark = pytest.mark.usefixtures("clean_env")  # tests/conftest.py


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "models", "house-price")


def build(tmp_path, **overrides):
    config = {"model_dir": tmp_path / "models", "reload_interval": 0, "api_token": TOKEN}
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def client(tmp_path):
    return build(tmp_path).test_client()


@pytest.fixture
def model(store) -> LinearModel:
    m = make_model()
    add_version(store, m)
    return m


def post_json(client, path, payload, **kwargs):
    return client.post(path, data=orjson.dumps(payload), content_type="application/json", **kwargs)


def error_of(response) -> dict:
    assert response.mimetype == "application/json", response.data
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"])
    return body["error"]


# -- /health, /ready ----------------------------------------------------------------------------


def test_health_needs_no_model(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok"}


def test_ready_is_503_without_a_model(client):
    r = client.get("/ready")
    assert r.status_code == 503
    assert error_of(r)["code"] == "no_model"


def test_ready_with_a_model(client, model, store):
    r = client.get("/ready")
    assert r.status_code == 200
    version = store.active_version()
    assert r.get_json() == {"status": "ready", "model_version": version}
    assert r.headers["X-Model-Version"] == version


def test_ready_is_503_when_the_smoke_prediction_is_not_finite(tmp_path, store):
    add_version(store, make_model(x_mean=(1e306, 1e306, 1e306, 1e306)))
    r = build(tmp_path).test_client().get("/ready")
    assert r.status_code == 503
    assert error_of(r)["code"] == "smoke_test_failed"
    assert "not finite" in error_of(r)["message"]


# -- /predict -----------------------------------------------------------------------------------


def test_predict_one_row(client, model, store):
    r = post_json(client, "/predict", {"features": ROW})
    assert r.status_code == 200
    body = r.get_json()
    assert body["prediction"] == pytest.approx(expected(model, ROW))
    assert body["model_version"] == store.active_version()
    assert r.headers["X-Model-Version"] == store.active_version()


def test_predict_a_batch(client, model, store):
    rows = [dict(ROW, sqft=1000 + 100 * i, age_years=i) for i in range(50)]
    rows[3] = {k: float(v) for k, v in rows[3].items()}  # floats and ints mix
    r = post_json(client, "/predict", {"instances": rows})
    assert r.status_code == 200
    body = r.get_json()
    assert body["predictions"] == pytest.approx([expected(model, row) for row in rows])
    assert body["model_version"] == store.active_version()


def test_a_row_predicts_the_same_alone_and_in_a_batch(client, store):
    # coefficients and values with rounding in every product: summation order would show
    add_version(store, make_model(coef=(149.37, 10_001.3, 4_999.7, -503.1), intercept=50_000.3))
    rows = [dict(ROW, sqft=1000.1 + 37.3 * i, bathrooms=1.5 + 0.1 * i, age_years=i / 7)
            for i in range(30)]
    batch = post_json(client, "/predict", {"instances": rows}).get_json()["predictions"]
    single = [post_json(client, "/predict", {"features": row}).get_json()["prediction"]
              for row in rows]
    assert single == batch  # exactly: the single-row fast path computes as the batch does


def test_predict_accepts_features_in_any_order_and_charset(client, model):
    row = dict(reversed(list(ROW.items())))
    r = client.post(
        "/predict", data=orjson.dumps({"features": row}),
        content_type="application/json; charset=utf-8",
    )
    assert r.status_code == 200
    assert r.get_json()["prediction"] == pytest.approx(expected(model, ROW))


def test_predict_without_a_model_says_how_to_train(client):
    r = post_json(client, "/predict", {"features": ROW})
    assert r.status_code == 503
    error = error_of(r)
    assert error["code"] == "no_model"
    assert "sgdserve train --data FILE --target COL" in error["message"]
    assert "POST /retrain" in error["message"]


BAD_BODIES = [
    ({"features": {"bedrooms": 3, "bathrooms": 2, "age_years": 20}},
     "invalid_features", "feature 'sqft' is missing"),
    ({"instances": [ROW, ROW, ROW, {"bedrooms": 3, "bathrooms": 2, "age_years": 20}]},
     "invalid_features", "instances[3]: feature 'sqft' is missing"),
    ({"instances": [ROW, dict(ROW, pool=1)]},
     "invalid_features", "instances[1]: unknown feature 'pool'"),
    ({"features": dict(ROW, pool=1)}, "invalid_features", "unknown feature 'pool'"),
    ({"instances": [dict(ROW, sqft=True)]},
     "invalid_features", "instances[0]: feature 'sqft' must be a number, got true"),
    ({"features": dict(ROW, bedrooms=False)},
     "invalid_features", "feature 'bedrooms' must be a number, got false"),
    ({"instances": [ROW, dict(ROW, sqft="1500")]},
     "invalid_features", "instances[1]: feature 'sqft' must be a number, got \"1500\""),
    ({"features": dict(ROW, sqft=[1500])},
     "invalid_features", "feature 'sqft' must be a number, got [1500]"),
    ({"features": dict(ROW, sqft={"v": 1})},
     "invalid_features", "feature 'sqft' must be a number, got {\"v\":1}"),
    ({"instances": [ROW, dict(ROW, sqft=1e308)]},
     "invalid_features", "instances[1]: the prediction is not finite"),
    ({"instances": []}, "empty_batch", "'instances' is empty"),
    ({"instances": ROW}, "bad_request", "'instances' must be a list of rows"),
    ({"instances": [ROW, [1, 2, 3, 4]]}, "invalid_features", "instances[1] must be an object"),
    ({"instances": [ROW, "row"]}, "invalid_features", "instances[1] must be an object"),
    ({"features": [1500, 3, 2, 20]}, "invalid_features", "'features' must be an object"),
    ({"features": ROW, "instances": [ROW]}, "bad_request", "either 'features' or 'instances'"),
    ({"features": ROW, "extra": 1}, "bad_request", "unknown key 'extra'"),
    ({"rows": [ROW]}, "bad_request", "unknown key 'rows'"),
    ({}, "bad_request", "'features' (one row) or 'instances'"),
    ([ROW], "bad_request", "must be a JSON object"),
    ("text", "bad_request", "must be a JSON object"),
    (None, "bad_request", "must be a JSON object"),
]


@pytest.mark.parametrize(("payload", "code", "message"), BAD_BODIES)
def test_predict_refuses_bad_bodies_naming_row_and_field(client, model, payload, code, message):
    r = post_json(client, "/predict", payload)
    assert r.status_code == 400
    error = error_of(r)
    assert error["code"] == code
    assert message in error["message"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"features": {"sqft": NaN, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}',
        b'{"features": {"sqft": Infinity, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}',
        b'{"features": {"sqft": -Infinity, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}',
        b'{"features": {"sqft": 1e400, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}',
        b'{"features": {"sqft": 1500,',
        b"{'features': {}}",
        b'{"features": {}} trailing',
        b"",
        b"\xff\xfe",
    ],
    ids=["nan", "inf", "-inf", "overflow", "truncated", "single-quotes", "trailing", "empty",
         "not-utf8"],
)
def test_predict_refuses_malformed_json(client, model, raw):
    r = client.post("/predict", data=raw, content_type="application/json")
    assert r.status_code == 400
    error = error_of(r)
    assert error["code"] == "invalid_json"
    assert error["message"].startswith("request body is not valid JSON")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "text/csv", None]
)
def test_predict_refuses_a_wrong_content_type(client, model, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    r = client.post("/predict", data=orjson.dumps({"features": ROW}), **kwargs)
    assert r.status_code == 415
    error = error_of(r)
    assert error["code"] == "unsupported_media_type"
    assert "application/json" in error["message"]


def test_predict_refuses_too_many_rows(tmp_path, model):
    client = build(tmp_path, max_batch_rows=5).test_client()
    assert post_json(client, "/predict", {"instances": [ROW] * 5}).status_code == 200
    r = post_json(client, "/predict", {"instances": [ROW] * 6})
    assert r.status_code == 400
    error = error_of(r)
    assert error["code"] == "too_many_rows"
    assert "6 rows; the limit is 5" in error["message"]


def test_predict_refuses_a_body_over_the_limit(tmp_path, model):
    client = build(tmp_path, max_body_bytes=1000).test_client()
    small = {"instances": [ROW] * 5}
    assert len(orjson.dumps(small)) < 1000
    assert post_json(client, "/predict", small).status_code == 200
    r = post_json(client, "/predict", {"instances": [ROW] * 50})
    assert r.status_code == 413
    assert error_of(r)["code"] == "body_too_large"


def test_predict_at_the_row_limit_matches_numpy(tmp_path, model):
    client = build(tmp_path, max_batch_rows=10_000).test_client()
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 3000, size=(10_000, 4)).round(2)
    rows = [dict(zip(FEATURES, map(float, x), strict=True)) for x in X]
    r = post_json(client, "/predict", {"instances": rows})
    assert r.status_code == 200
    np.testing.assert_allclose(r.get_json()["predictions"], X @ model.coef + model.intercept)


def _bodies_for_both_paths() -> list[bytes]:
    """Valid and invalid /predict bodies, as raw bytes, for comparing the two parsing paths."""
    rng = np.random.default_rng(7)
    bodies = [orjson.dumps(payload) for payload, _, _ in BAD_BODIES]
    bodies += [
        b'{"features": {"sqft": NaN, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}',
        b'{"features": {"sqft": 1e400, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}',
        b'{"features": {"sqft": 1500,', b'{"features": {}} trailing', b"", b"\xff\xfe",
        b'{"features": {"sqft": 1500, "sqft": 7, "bedrooms": 3, "bathrooms": 2, "age_years": 1}}',
        b'{"features": {"sqft": -0, "bedrooms": 3e0, "bathrooms": 2E-1, "age_years": -0.0}}',
        b'{"features": {"sqft": 1.7976931348623157e308, "bedrooms": 3, "bathrooms": 2, '
        b'"age_years": 20}}',
        b'{"features": {"sqft": 9007199254740993, "bedrooms": 18446744073709551616, '
        b'"bathrooms": 2, "age_years": 1180591620717411303424}}',
        b'{"features": {"sqft": 4.9e-324, "bedrooms": 1e-400, "bathrooms": 2, "age_years": 1}}',
        b'{"features": null}', b'{"instances": null}',
        b'{"features": {"sqft": 1}, "instances": null}',
        b'  {"instances" : [ {"age_years":1,"bathrooms":2,"bedrooms":3,"sqft":4} ] }  ',
        b'{"instances": [{"sqft": 1, "bedrooms": 2, "bathrooms": 3, "age_years": 4}, null]}',
        b'{"features": {"sqft": 1, "bedrooms": 2, "bathrooms": 3, "age_years": 4, "": 0}}',
        rb'{"features": {"sqft": 1, "bedrooms": 2, "bathrooms": 3, "age_ye\u0061rs": 4}}',
    ]
    for n in (1, 2, 7, 300):
        values = rng.normal(0, 10.0 ** rng.integers(-3, 6, size=(n, 4)), size=(n, 4))
        rows = [dict(zip(FEATURES, row.tolist(), strict=True)) for row in values]
        rows[0] = {k: int(v) for k, v in rows[0].items()}  # ints mix with floats
        bodies.append(orjson.dumps({"instances": rows}))
        bodies.append(orjson.dumps({"features": rows[-1]}))
        bodies.append(orjson.dumps({"instances": [dict(reversed(r.items())) for r in rows]}))
        broken = [dict(r) for r in rows]
        del broken[-1]["bathrooms"]
        bodies.append(orjson.dumps({"instances": broken}))
        # The options ride on both paths too (this model has no calibration residuals).
        bodies.append(orjson.dumps({"instances": rows, "explain": True}))
        bodies.append(orjson.dumps({"features": rows[0], "explain": n > 2}))
        bodies.append(orjson.dumps({"features": rows[0], "explain": "yes"}))
        bodies.append(orjson.dumps({"features": rows[0], "interval": 0.9}))
    return bodies


def test_the_typed_and_general_paths_answer_alike(client, model, monkeypatch):
    """Valid bodies are decoded by msgspec into typed rows; anything it refuses is re-parsed
    by the general path, which names the problem. Both must accept the same bodies and predict
    the same values, bit for bit."""
    from service.http.rows import RowDecoder

    bodies = _bodies_for_both_paths()

    def answers():
        out = []
        for body in bodies:
            r = client.post("/predict", data=body, content_type="application/json")
            answer = r.get_json()
            if r.status_code == 200:  # ids differ by nature; each answer has its own
                ids = answer.pop("prediction_id", None) or answer.pop("prediction_ids")
                assert ids
            out.append((r.status_code, answer))
        return out

    typed = answers()
    monkeypatch.setattr(RowDecoder, "decode", lambda *args: None)
    general = answers()
    for body, a, b in zip(bodies, typed, general, strict=True):
        assert a == b, body[:200]
    assert sum(status == 200 for status, _ in typed) >= 15  # both kinds are in the corpus
    assert sum(status == 400 for status, _ in typed) >= 30


def test_valid_bodies_are_not_parsed_twice(client, model, monkeypatch):
    import service.http.predict

    calls = []
    monkeypatch.setattr(service.http.predict, "parse_json", lambda data: calls.append(data))
    assert post_json(client, "/predict", {"features": ROW}).status_code == 200
    assert post_json(client, "/predict", {"instances": [ROW] * 3}).status_code == 200
    assert calls == []  # the general parser ran for neither


def test_predict_with_feature_names_that_are_not_identifiers(tmp_path, store):
    names = ("sq ft", "class", "1st-floor", "Ärea", "f0")
    coef = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    add_version(store, LinearModel.numeric(
        feature_names=names, target="y", coef=coef, intercept=0.5, x_mean=np.zeros(5),
        x_scale=np.ones(5), y_mean=0.0, y_scale=1.0, coef_std=coef, intercept_std=0.5,
    ))
    client = build(tmp_path).test_client()
    row = dict(zip(names, [1, 10, 100, 1000, 10000], strict=True))
    r = post_json(client, "/predict", {"features": row})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["prediction"] == 54321.5
    r = post_json(client, "/predict", {"instances": [row, row]})
    assert r.get_json()["predictions"] == [54321.5, 54321.5]
    r = post_json(client, "/predict", {"features": dict(row, f1=2)})
    assert "unknown feature 'f1'" in error_of(r)["message"]


# -- routing errors -----------------------------------------------------------------------------


def test_unknown_path_is_json_404(client):
    r = client.get("/nope")
    assert r.status_code == 404
    assert error_of(r)["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("get", "/predict", "POST"), ("post", "/health", "GET"), ("delete", "/models", "GET"),
     ("get", "/retrain", "POST"), ("put", "/model", "GET")],
)
def test_wrong_method_is_json_405(client, method, path, allowed):
    r = getattr(client, method)(path)
    assert r.status_code == 405
    assert error_of(r)["code"] == "method_not_allowed"
    assert allowed in r.headers["Allow"]


def test_an_unexpected_error_is_a_logged_json_500(client, model, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(LinearModel, "predict_columns", boom)  # every prediction goes through it
    with caplog.at_level(logging.ERROR, logger="sgdserve.http"):
        r = post_json(client, "/predict", {"instances": [ROW]})
    assert r.status_code == 500
    assert error_of(r) == {"code": "internal_error", "message": "internal server error"}
    assert any("POST /predict" in rec.getMessage() for rec in caplog.records)


# -- auth ---------------------------------------------------------------------------------------

WRITES = [
    ("/retrain", {"rows": [dict(ROW, price=1.0)]}),
    ("/models/20240101T000000.000000Z-abcdef/activate", None),
]


@pytest.mark.parametrize(("path", "payload"), WRITES)
def test_writes_are_disabled_without_a_configured_token(tmp_path, model, path, payload):
    client = build(tmp_path, api_token=None).test_client()
    r = post_json(client, path, payload, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 403
    error = error_of(r)
    assert error["code"] == "writes_disabled"
    assert "SGDSERVE_API_TOKEN" in error["message"]


@pytest.mark.parametrize(("path", "payload"), WRITES)
@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x",
     f"Token {TOKEN}", "Bearer \u00e9t\u00e9"],
)
def test_writes_need_the_right_bearer_token(client, model, path, payload, header):
    headers = {} if header is None else {"Authorization": header}
    r = post_json(client, path, payload, headers=headers)
    assert r.status_code == 401
    assert error_of(r)["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_token_is_never_logged(client, model, store, caplog):
    other = add_version(store, make_model(intercept=1.0), activate=False)
    with caplog.at_level(logging.DEBUG):
        client.post(f"/models/{other}/activate", headers={"Authorization": f"Bearer {TOKEN}"})
        client.post(f"/models/{other}/activate", headers={"Authorization": "Bearer wrong"})
        post_json(client, "/predict", {"features": ROW}, headers={"Authorization": TOKEN})
    assert caplog.records  # the reload is logged, so something was captured
    assert not any(TOKEN in rec.getMessage() for rec in caplog.records)


# -- /model, /models, activate ------------------------------------------------------------------


def test_model_shows_manifest_coefficients_and_metrics(client, model, store):
    r = client.get("/model")
    assert r.status_code == 200
    body = r.get_json()
    version = store.active_version()
    assert body["model_version"] == version
    assert r.headers["X-Model-Version"] == version
    assert body["features"] == list(FEATURES)
    assert body["target"] == "price"
    assert body["coefficients"] == pytest.approx(dict(zip(FEATURES, model.coef, strict=True)))
    assert body["intercept"] == pytest.approx(model.intercept)
    assert body["metrics"]["holdout"]["rmse"] == 1000.0
    assert body["manifest"]["id"] == version
    assert body["manifest"]["sha256"] == store.get(version)["sha256"]
    assert body["schema"] == [
        {"name": name, "kind": "numeric", "mean": pytest.approx(float(mean)), "min": None,
         "max": None, "imputes": True, "missing": 0, "coefficient": pytest.approx(float(coef)),
         "standardized": pytest.approx(float(std))}
        for name, mean, coef, std in zip(FEATURES, model.x_mean, model.coef, model.coef_std,
                                         strict=True)]


def test_model_without_a_model_is_503(client):
    r = client.get("/model")
    assert r.status_code == 503
    assert error_of(r)["code"] == "no_model"


def test_models_lists_every_version_and_marks_the_active_one(client, store):
    assert client.get("/models").get_json() == {"active": None, "models": []}
    first = add_version(store, make_model())
    second = add_version(store, make_model(intercept=0.0))
    third = add_version(store, make_model(intercept=1.0), activate=False)
    body = client.get("/models").get_json()
    assert body["active"] == second
    assert [m["id"] for m in body["models"]] == [first, second, third]
    assert [m["active"] for m in body["models"]] == [False, True, False]
    assert body["models"][1]["parent"] == first
    assert body["models"][0]["metrics"]["holdout"]["r2"] == 0.9


def auth() -> dict:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_activate_rolls_back_and_this_worker_serves_it_at_once(tmp_path, store):
    old_model = make_model(intercept=0.0)
    old = add_version(store, old_model)
    new = add_version(store, make_model(intercept=99_999.0))
    client = build(tmp_path, reload_interval=3600).test_client()
    assert post_json(client, "/predict", {"features": ROW}).get_json()["model_version"] == new
    r = client.post(f"/models/{old}/activate", headers=auth())
    assert r.status_code == 200
    assert r.get_json() == {"active": old, "previous": new, "model_version": old}
    assert r.headers["X-Model-Version"] == old
    assert store.active_version() == old
    body = post_json(client, "/predict", {"features": ROW}).get_json()
    assert body.pop("prediction_id")
    assert body == {"prediction": pytest.approx(expected(old_model, ROW)), "model_version": old}


@pytest.mark.parametrize(
    "version_id", ["20240101T000000.000000Z-abcdef", "nope", "..", "CURRENT", "%2e%2e"]
)
def test_activate_an_unknown_version_is_404(client, model, version_id):
    r = client.post(f"/models/{version_id}/activate", headers=auth())
    assert r.status_code == 404
    assert error_of(r)["code"] in ("version_not_found", "not_found")


def test_activate_while_the_store_is_locked_is_409(client, model, store):
    other = add_version(store, make_model(intercept=1.0), activate=False)
    with store.lock(owner="sgdserve train"):
        r = client.post(f"/models/{other}/activate", headers=auth())
    assert r.status_code == 409
    error = error_of(r)
    assert error["code"] == "retrain_in_progress"
    assert "sgdserve train" in error["message"]
    assert store.active_version() != other


def test_activate_a_tampered_version_is_422_and_nothing_changes(client, model, store):
    active = store.active_version()
    bad = add_version(store, make_model(intercept=1.0), activate=False)
    path = store.version_dir(bad) / "model.joblib"
    path.write_bytes(path.read_bytes()[:-10])
    r = client.post(f"/models/{bad}/activate", headers=auth())
    assert r.status_code == 422
    assert error_of(r)["code"] == "integrity_error"
    assert store.active_version() == active


# -- hot reload ---------------------------------------------------------------------------------


def test_a_promotion_by_another_process_is_picked_up(tmp_path, model, store):
    client = build(tmp_path).test_client()
    first = store.active_version()
    assert post_json(client, "/predict", {"features": ROW}).get_json()["model_version"] == first
    other_store = LocalStore(tmp_path / "models", "house-price")  # as the CLI would open it
    new_model = make_model(coef=(100.0, 0.0, 0.0, 0.0), intercept=7.0)
    second = add_version(other_store, new_model)
    body = post_json(client, "/predict", {"features": ROW}).get_json()
    assert body.pop("prediction_id")
    assert body == {"prediction": pytest.approx(expected(new_model, ROW)), "model_version": second}


def test_a_model_that_fails_to_load_is_logged_counted_and_the_old_one_serves(
    tmp_path, model, store, caplog
):
    client = build(tmp_path).test_client()
    first = store.active_version()
    assert client.get("/ready").status_code == 200
    second = add_version(store, make_model(intercept=5.0))
    path = store.version_dir(second) / "model.joblib"
    path.write_bytes(b"tampered" + path.read_bytes()[8:])
    with caplog.at_level(logging.INFO, logger="sgdserve.reload"):
        for _ in range(3):
            r = post_json(client, "/predict", {"features": ROW})
            assert r.status_code == 200
            assert r.get_json()["model_version"] == first
    failures = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(failures) == 1  # logged once, not on every request
    assert second in failures[0].getMessage() and "sha256" in failures[0].getMessage()
    assert failures[0].exc_info is None
    metrics = client.get("/metrics").data.decode()
    # Retried at every poll (here every request: interval 0), and each failure counted.
    assert f'sgdserve_model_load_failures_total{{version="{second}"}} 3.0' in metrics
    third = add_version(store, make_model(intercept=6.0))
    assert post_json(client, "/predict", {"features": ROW}).get_json()["model_version"] == third


def test_a_missing_current_keeps_the_old_model(tmp_path, model, store):
    client = build(tmp_path).test_client()
    first = store.active_version()
    assert client.get("/ready").status_code == 200
    store.current_file.unlink()
    r = post_json(client, "/predict", {"features": ROW})
    assert r.status_code == 200
    assert r.get_json()["model_version"] == first


class FakeStore:
    """A store whose CURRENT is a variable; counts stats and loads."""

    def __init__(self):
        self.stat_error: OSError | None = None
        self.version: str | None = None
        self.stamp: int | None = None
        self.stats = 0
        self.loads: list[str] = []
        self.broken: set[str] = set()

    def promote(self, version):
        self.version = version
        self.stamp = (self.stamp or 0) + 1

    def current_stamp(self):
        self.stats += 1
        if self.stat_error is not None:
            raise self.stat_error
        return self.stamp

    def active_version(self):
        return self.version

    def load(self, version):
        from service.errors import IntegrityError

        self.loads.append(version)
        if version in self.broken:
            raise IntegrityError(f"version {version!r}: sha256 mismatch")
        return make_model(intercept=float(len(self.loads))), {"id": version}


class FakeMetrics:
    def __init__(self):
        self.loaded: list[str] = []
        self.failed: list[str] = []
        self.poll_failures = 0

    def store_poll_failed(self):
        self.poll_failures += 1

    def model_loaded(self, version):
        self.loaded.append(version)

    def model_load_failed(self, version):
        self.failed.append(version)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_holder_stats_current_at_most_once_per_interval():
    fake, metrics, clock = FakeStore(), FakeMetrics(), Clock()
    holder = ModelHolder(fake, interval=1.0, metrics=metrics, clock=clock)
    assert holder.get() == (None, None)
    fake.promote("v1")
    for _ in range(100):
        assert holder.get() == (None, None)  # within the interval: no stat
    assert fake.stats == 1
    clock.now += 1.0
    version, model = holder.get()
    assert version == "v1" and model is not None
    assert fake.stats == 2 and fake.loads == ["v1"] and metrics.loaded == ["v1"]
    clock.now += 5.0
    holder.get()
    assert fake.loads == ["v1"]  # stamp unchanged: nothing loaded


def test_holder_keeps_the_old_model_when_a_load_fails_and_retries_at_the_next_poll():
    fake, metrics, clock = FakeStore(), FakeMetrics(), Clock()
    holder = ModelHolder(fake, interval=1.0, metrics=metrics, clock=clock)
    fake.promote("v1")
    _, m1 = holder.get()
    fake.broken.add("v2")
    fake.promote("v2")
    for _ in range(3):
        clock.now += 1.0
        assert holder.get() == ("v1", m1)
        assert holder.get() == ("v1", m1)  # within the interval: no retry
    assert fake.loads == ["v1", "v2", "v2", "v2"] and metrics.failed == ["v2"] * 3
    assert "sha256" in holder.last_error
    fake.broken.clear()  # fixed in place (say, signed): CURRENT did not change
    clock.now += 1.0
    assert holder.get()[0] == "v2"
    assert holder.last_error is None
    fake.promote("v3")
    clock.now += 1.0
    assert holder.get()[0] == "v3"
    assert holder.last_error is None
    fake.stamp = None  # CURRENT deleted
    clock.now += 1.0
    assert holder.get()[0] == "v3"


# -- /metrics, /openapi.json --------------------------------------------------------------------


def test_metrics_count_requests_by_endpoint_and_status(client, model):
    for _ in range(3):
        post_json(client, "/predict", {"instances": [ROW, ROW]})
    post_json(client, "/predict", {"features": {}})
    client.get("/nope")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    text = r.data.decode()
    assert (
        'sgdserve_requests_total{endpoint="/predict",method="POST",status="200"} 3.0' in text
    )
    assert 'sgdserve_requests_total{endpoint="/predict",method="POST",status="400"} 1.0' in text
    assert 'sgdserve_requests_total{endpoint="unmatched",method="GET",status="404"} 1.0' in text
    assert "sgdserve_rows_predicted_total 6.0" in text
    assert "sgdserve_last_promotion_timestamp_seconds" in text


def test_openapi_document_is_valid_and_covers_every_route(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.get_json()
    validate(doc)
    app = create_app({"model_dir": "unused"})
    routes = set()
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert documented == routes


def test_openapi_limits_follow_the_settings(tmp_path):
    client = build(tmp_path, max_batch_rows=7).test_client()
    doc = client.get("/openapi.json").get_json()
    assert doc["components"]["schemas"]["PredictBatch"]["properties"]["instances"]["maxItems"] == 7
    validate(document(7, 1.0))


def test_openapi_describes_the_served_models_features(client, model):
    doc = client.get("/openapi.json").get_json()
    validate(doc)
    row = doc["components"]["schemas"]["FeatureRow"]
    assert row["required"] == list(FEATURES)
    assert row["additionalProperties"] is False
    assert row["properties"]["sqft"]["type"] == "number" and row["properties"]["sqft"]["nullable"]
    assert "price" in row["properties"] and "price" not in row["required"]  # the target: ignored


def test_a_one_feature_model(tmp_path, store):
    model = LinearModel.numeric(
        feature_names=("sqft",), target="price", coef=np.array([2.0]), intercept=3.0,
        x_mean=np.array([1.0]), x_scale=np.array([1.0]), y_mean=0.0, y_scale=1.0,
        coef_std=np.array([2.0]), intercept_std=0.0,
    )
    add_version(store, model)
    client = build(tmp_path).test_client()
    r = post_json(client, "/predict", {"instances": [{"sqft": 1}, {"sqft": 2.5}]})
    assert r.get_json()["predictions"] == [5.0, 8.0]
    assert post_json(client, "/predict", {"features": {"sqft": 10}}).get_json()["prediction"] == 23
    r = post_json(client, "/predict", {"instances": [{"sqft": 1}, {"sqft": False}]})
    assert error_of(r)["message"] == "instances[1]: feature 'sqft' must be a number, got false"
    r = post_json(client, "/predict", {"instances": [{"sqft": 1}, {"rooms": 1}]})
    assert error_of(r)["message"] == "instances[1]: feature 'sqft' is missing"


def test_holder_logs_a_lasting_stat_failure_once_and_keeps_serving(caplog):
    fake, metrics, clock = FakeStore(), FakeMetrics(), Clock()
    holder = ModelHolder(fake, interval=1.0, metrics=metrics, clock=clock)
    fake.promote("v1")
    _, m1 = holder.get()
    fake.stat_error = PermissionError(13, "Permission denied")
    with caplog.at_level(logging.ERROR, logger="sgdserve.reload"):
        for _ in range(5):
            clock.now += 1.0
            assert holder.get() == ("v1", m1)
    assert len(caplog.records) == 1
    assert "Permission denied" in caplog.records[0].getMessage()
    assert metrics.poll_failures == 5  # each counted, each retried at the next poll
    fake.stat_error = None
    fake.promote("v2")
    clock.now += 1.0
    assert holder.get()[0] == "v2"


def test_a_parsed_batch_is_freed_after_the_response_is_sent(client, model, monkeypatch):
    import weakref

    import service.http.predict
    from service.http.body import release_after_sending
    from service.http.errors import json_response

    class Body:  # stands for a parsed body: weakly referenceable
        pass

    body = Body()
    alive = weakref.ref(body)
    response = json_response({"ok": True})
    release_after_sending(response, body)
    del body
    assert alive() is not None  # held by the response...
    response.close()
    assert alive() is None  # ...until the server closes it

    held = []
    monkeypatch.setattr(service.http.predict, "release_after_sending",
                        lambda response, *objects: held.extend(objects))
    assert post_json(client, "/predict", {"instances": [ROW] * 3}).status_code == 200
    assert len(held[0].instances) == 3 and isinstance(held[1], bytes)


# -- a damaged CURRENT and the If-Match precondition ------------------------------------------


def test_a_damaged_current_is_named_by_ready_and_models(tmp_path, store):
    version = add_version(store, make_model())
    client = build(tmp_path).test_client()
    assert client.get("/ready").status_code == 200  # the worker loads the model
    store.current_file.write_text("not a version\n")
    # This worker keeps serving what it loaded, and says what is wrong with the store.
    r = client.get("/ready")
    assert r.status_code == 200, r.data
    assert "CURRENT is damaged: it holds 'not a version'" in r.get_json()["store_error"]
    assert post_json(client, "/predict", {"features": ROW}).get_json()["model_version"] == version
    body = client.get("/models").get_json()
    assert body["active"] is None and [m["id"] for m in body["models"]] == [version]
    assert "CURRENT is damaged" in body["current_error"]
    # A worker that starts now has nothing to serve: not ready, with the reason.
    fresh = build(tmp_path).test_client().get("/ready")
    assert fresh.status_code == 503
    assert "CURRENT is damaged" in error_of(fresh)["message"]
    # Activating a version repairs it.
    assert client.post(f"/models/{version}/activate", headers=auth()).status_code == 200
    assert "current_error" not in client.get("/models").get_json()


def test_activate_with_if_match(client, model, store):
    active = store.active_version()
    other = add_version(store, make_model(intercept=1.0), activate=False)
    stale = client.post(f"/models/{other}/activate", headers={**auth(), "If-Match": other})
    assert stale.status_code == 409
    assert error_of(stale) == {
        "code": "current_changed", "current": active,
        "message": f"the active version is {active}, not {other} as expected; it changed "
        "meanwhile: look again and retry",
    }
    assert store.active_version() == active
    for header in (f'"{active}"', active):  # an entity tag, or the bare id
        r = client.post(f"/models/{other}/activate", headers={**auth(), "If-Match": header})
        assert r.status_code == 200, r.data
        store.activate(active)
    bad = client.post(f"/models/{other}/activate", headers={**auth(), "If-Match": "yesterday"})
    assert bad.status_code == 400 and error_of(bad)["code"] == "invalid_precondition"
    assert client.post(f"/models/{other}/activate",
                       headers={**auth(), "If-Match": "*"}).status_code == 200


# -- empty values, rows copied from the training file ------------------------------------------


def test_null_is_an_empty_value_imputed_with_the_training_mean_and_counted(client, model, store):
    r = post_json(client, "/predict", {"instances": [dict(ROW, age_years=None), ROW]})
    assert r.status_code == 200, r.data
    imputed = dict(ROW, age_years=float(model.x_mean[3]))
    assert r.get_json()["predictions"] == [expected(model, imputed), expected(model, ROW)]
    one = post_json(client, "/predict", {"features": dict(ROW, sqft=None)}).get_json()
    assert one["prediction"] == expected(model, dict(ROW, sqft=float(model.x_mean[0])))
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'sgdserve_values_imputed_total{feature="age_years"} 1.0' in metrics
    assert 'sgdserve_values_imputed_total{feature="sqft"} 1.0' in metrics


def test_a_row_copied_with_its_target_predicts_and_typos_stay_errors(client, model):
    with_target = post_json(client, "/predict", {"features": dict(ROW, price=312000)})
    assert with_target.get_json()["prediction"] == expected(model, ROW)
    batch = post_json(client, "/predict", {"instances": [dict(ROW, price=1), ROW]}).get_json()
    assert batch["predictions"] == [expected(model, ROW)] * 2
    typo = post_json(client, "/predict", {"features": dict(ROW, sqfeet=1)})
    assert typo.status_code == 400
    assert "unknown feature 'sqfeet'" in error_of(typo)["message"]


# -- signed versions ---------------------------------------------------------------------------

SIGNING_KEY = "signing-key-" + "x" * 20


def test_a_tampered_version_is_refused_counted_and_the_old_model_keeps_serving(
        tmp_path, caplog):
    from service.store import Signer

    store = LocalStore(tmp_path / "models", signer=Signer(SIGNING_KEY))
    good = add_version(store, make_model(intercept=1.0))
    client = build(tmp_path, signing_key=SIGNING_KEY).test_client()
    assert post_json(client, "/predict", {"features": ROW}).get_json()["model_version"] == good
    bad = add_version(store, make_model(intercept=2.0), activate=False)
    manifest = store.version_dir(bad) / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"candidate"', '"promoted"'))
    r = client.post(f"/models/{bad}/activate", headers=auth())
    assert r.status_code == 422 and error_of(r)["code"] == "signature_error"
    assert "tampered" in error_of(r)["message"]
    # Activated behind the service's back (no key, or by hand): every worker refuses it.
    LocalStore(tmp_path / "models").activate(bad)
    with caplog.at_level(logging.ERROR, logger="sgdserve.reload"):
        for _ in range(2):
            assert post_json(client, "/predict", {"features": ROW}).get_json()[
                "model_version"] == good
    assert any("tampered" in rec.getMessage() for rec in caplog.records)
    metrics = client.get("/metrics").data.decode()
    assert f'sgdserve_model_load_failures_total{{version="{bad}"}} 2.0' in metrics
    assert "tampered" in client.get("/ready").get_json()["store_error"]
