"""The Open Inference Protocol (v2) REST API through Flask's test client.

Responses are checked against the protocol's JSON objects (transcribed below from the
specification's REST document: kserve/open-inference-protocol, inference_rest.md), and
predictions against /predict on the same rows, bit for bit.
"""

from __future__ import annotations

import math

import jsonschema
import numpy as np
import orjson
import pytest
from test_app import (
    FEATURES,
    ROW,
    add_version,
    build,
    expected,
    make_model,
    post_json,
)

from service.engine import LinearModel
from service.store import LocalStore

pytestmark = pytest.mark.usefixtures("clean_env")  # tests/conftest.py

NAME = "house-price"
INFER = f"/v2/models/{NAME}/infer"

# The protocol's objects. Required fields as the specification writes them.
TENSOR_META = {"type": "object", "required": ["name", "datatype", "shape"],
               "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                              "shape": {"type": "array", "items": {"type": "integer"}}}}
SPEC = {
    "server_metadata": {
        "type": "object", "required": ["name", "version", "extensions"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                       "extensions": {"type": "array", "items": {"type": "string"}}},
    },
    "model_metadata": {
        "type": "object", "required": ["name", "platform", "inputs", "outputs"],
        "properties": {"name": {"type": "string"}, "platform": {"type": "string"},
                       "versions": {"type": "array", "items": {"type": "string"}},
                       "inputs": {"type": "array", "items": TENSOR_META},
                       "outputs": {"type": "array", "items": TENSOR_META}},
    },
    "inference_response": {
        "type": "object", "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"},
            "id": {"type": "string"}, "parameters": {"type": "object"},
            "outputs": {"type": "array", "items": {
                "type": "object", "required": ["name", "shape", "datatype", "data"],
                "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                               "shape": {"type": "array", "items": {"type": "integer"}},
                               "data": {"type": "array"}}}},
        },
    },
    "error": {"type": "object", "required": ["error"],
              "properties": {"error": {"type": "string"}}},
    "model_ready": {"type": "object", "required": ["name", "ready"],
                    "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
}


def conforms(body, kind):
    jsonschema.validate(body, SPEC[kind])
    return body


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "models", NAME)


@pytest.fixture
def client(tmp_path):
    return build(tmp_path).test_client()


@pytest.fixture
def model(store) -> LinearModel:
    m = make_model(coef=(149.37, 10_001.3, 4_999.7, -503.1), intercept=50_000.3)
    add_version(store, m)
    return m


def rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.uniform(500, 4000, n).round(1), rng.integers(1, 6, n),
                         rng.integers(1, 4, n) + 0.5 * rng.integers(0, 2, n),
                         rng.uniform(0, 80, n).round(2)])
    return [dict(zip(FEATURES, map(float, x), strict=True)) for x in X]


def by_feature(batch: list[dict], datatype: str = "FP64") -> dict:
    return {"inputs": [{"name": f, "shape": [len(batch)], "datatype": datatype,
                        "data": [r[f] for r in batch]} for f in FEATURES]}


def one_matrix(batch: list[dict], nested: bool = False) -> dict:
    values = [[r[f] for f in FEATURES] for r in batch]
    data = values if nested else [v for row in values for v in row]
    return {"inputs": [{"name": "input-0", "shape": [len(batch), 4], "datatype": "FP64",
                        "data": data}]}


def infer(client, payload, path=INFER):
    return client.post(path, data=orjson.dumps(payload), content_type="application/json")


def error_of(r) -> dict:
    body = conforms(r.get_json(), "error")
    assert isinstance(body.get("code"), str)
    return body


# -- metadata and health ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v2", "/v2/"])
def test_server_metadata(client, path):
    r = client.get(path)
    assert r.status_code == 200
    body = conforms(r.get_json(), "server_metadata")
    assert body["name"] == "sgdserve" and body["extensions"] == ["binary_tensor_data"]


def test_live_and_ready(client, store):
    assert client.get("/v2/health/live").get_json() == {"live": True}
    r = client.get("/v2/health/ready")
    assert r.status_code == 503
    assert r.get_json()["ready"] is False and "sgdserve train" in r.get_json()["error"]
    r = client.get(f"/v2/models/{NAME}/ready")
    assert r.status_code == 503 and conforms(r.get_json(), "model_ready")["ready"] is False
    add_version(store, make_model())
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    r = client.get(f"/v2/models/{NAME}/ready")
    assert r.status_code == 200 and r.get_json() == {"name": NAME, "ready": True}


def test_model_metadata_lists_one_input_per_feature(client, model, store):
    version = store.active_version()
    for path in (f"/v2/models/{NAME}", f"/v2/models/{NAME}/versions/{version}"):
        r = client.get(path)
        assert r.status_code == 200
        body = conforms(r.get_json(), "model_metadata")
        assert body["name"] == NAME and body["versions"] == [version]
        assert [t["name"] for t in body["inputs"]] == list(FEATURES)
        assert {t["datatype"] for t in body["inputs"]} == {"FP64"}
        assert body["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]},
                                   {"name": "prediction_id", "datatype": "BYTES", "shape": [-1]}]
        assert r.headers["X-Model-Version"] == version


def test_only_the_served_name_and_version_are_found(client, model, store):
    old = store.active_version()
    new = add_version(store, make_model(intercept=1.0))
    for path in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/nope/infer"):
        if path.endswith("infer"):
            r = client.post(path, json=by_feature([ROW]))
        else:
            r = client.get(path)
        assert r.status_code == 404
        assert error_of(r)["code"] == "model_not_found"
        assert "serves 'house-price'" in error_of(r)["error"]
    for path in (f"/v2/models/{NAME}/versions/{old}", f"/v2/models/{NAME}/versions/{old}/ready"):
        r = client.get(path)
        assert r.status_code == 404 and error_of(r)["code"] == "version_not_found"
        assert f"the active version is {new}" in error_of(r)["error"]
    r = infer(client, by_feature([ROW]), f"/v2/models/{NAME}/versions/{old}/infer")
    assert r.status_code == 404 and error_of(r)["code"] == "version_not_found"
    r = infer(client, by_feature([ROW]), f"/v2/models/{NAME}/versions/{new}/infer")
    assert r.status_code == 200 and r.get_json()["model_version"] == new


def test_routing_errors_under_v2_take_the_protocol_shape(client):
    r = client.get("/v2/models/x/y/z")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = client.get(INFER)
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"
    assert "POST" in r.headers["Allow"]


# -- inference ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 300])
@pytest.mark.parametrize("layout", ["by-feature", "flat-matrix", "nested-matrix",
                                    "by-feature-nested"])
def test_infer_matches_predict_bit_for_bit(client, model, store, layout, n):
    batch = rows(n)
    payload = {
        "by-feature": by_feature(batch),
        "flat-matrix": one_matrix(batch),
        "nested-matrix": one_matrix(batch, nested=True),
        "by-feature-nested": {"inputs": [
            {"name": f, "shape": [len(batch), 1], "datatype": "FP64",
             "data": [[r[f]] for r in batch]} for f in reversed(FEATURES)]},
    }[layout]
    r = infer(client, payload)
    assert r.status_code == 200, r.get_json()
    body = conforms(r.get_json(), "inference_response")
    assert body["model_name"] == NAME and body["model_version"] == store.active_version()
    assert "id" not in body
    output, ids = body["outputs"]
    assert ids["name"] == "prediction_id" and ids["datatype"] == "BYTES"
    assert ids["shape"] == [len(batch)] and len(set(ids["data"])) == len(batch)
    assert output["name"] == "predict" and output["datatype"] == "FP64"
    assert output["shape"] == [len(batch)]
    reference = post_json(client, "/predict", {"instances": batch}).get_json()["predictions"]
    assert output["data"] == reference  # exactly: the same sum in the same order
    assert output["data"] == pytest.approx([expected(model, row) for row in batch])


def test_infer_echoes_the_id_and_accepts_the_one_output(client, model):
    payload = dict(by_feature([ROW]), id="42", parameters={"anything": 1},
                   outputs=[{"name": "predict", "parameters": {}}])
    r = infer(client, payload)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["id"] == "42"
    assert r.get_json()["outputs"][0]["data"] == [pytest.approx(expected(model, ROW))]


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64", "INT8", "INT32", "INT64",
                                      "UINT8", "UINT64"])
def test_every_numeric_datatype_reads_as_float64(client, model, datatype):
    batch = [{f: float(int(v)) for f, v in row.items()} for row in rows(5)]
    payload = by_feature(batch, datatype)
    r = infer(client, payload)
    assert r.status_code == 200, r.get_json()
    reference = post_json(client, "/predict", {"instances": batch}).get_json()["predictions"]
    assert r.get_json()["outputs"][0]["data"] == reference


def test_a_one_feature_model_takes_its_name_or_a_matrix(tmp_path, store):
    add_version(store, LinearModel.numeric(
        feature_names=("sqft",), target="price", coef=np.array([2.0]), intercept=3.0,
        x_mean=np.array([1.0]), x_scale=np.array([1.0]), y_mean=0.0, y_scale=1.0,
        coef_std=np.array([2.0]), intercept_std=0.0,
    ))
    client = build(tmp_path).test_client()
    for tensor in ({"name": "sqft", "shape": [2], "data": [1, 2.5]},
                   {"name": "sqft", "shape": [2, 1], "data": [[1], [2.5]]},
                   {"name": "x", "shape": [2, 1], "data": [1, 2.5]}):
        r = infer(client, {"inputs": [dict(tensor, datatype="FP64")]})
        assert r.status_code == 200, (tensor, r.get_json())
        assert r.get_json()["outputs"][0]["data"] == [5.0, 8.0]
    r = infer(client, {"inputs": [{"name": "x", "shape": [2], "datatype": "FP64",
                                   "data": [1, 2]}]})
    assert "send one [n, 1] input" in error_of(r)["error"]


def _input(**changes) -> dict:
    tensor = {"name": "sqft", "shape": [2], "datatype": "FP64", "data": [1500, 2000]}
    tensor.update(changes)
    return tensor


def _others(n: int = 2) -> list[dict]:
    return [{"name": f, "shape": [n], "datatype": "FP64", "data": [1] * n}
            for f in FEATURES[1:]]


BAD_REQUESTS = [
    ([], "request body must be a JSON object"),
    ({}, "'inputs' is missing"),
    ({"inputs": {}}, "'inputs' must be a list"),
    ({"inputs": []}, "'inputs' is empty"),
    ({"inputs": [_input()] + _others(), "input": 1}, "unknown key 'input'"),
    ({"inputs": [_input()] + _others(), "id": 42}, "'id' must be a string"),
    ({"inputs": [_input()] + _others(), "id": None}, "'id' must be a string"),
    ({"inputs": [_input()] + _others(), "parameters": []}, "'parameters' must be an object"),
    ({"inputs": [_input()] + _others(), "outputs": [{"name": "proba"}]},
     "unknown output 'proba'; this model's outputs are predict, prediction_id"),
    ({"inputs": [_input()] + _others(), "outputs": {"name": "predict"}},
     "'outputs' must be a list"),
    ({"inputs": [_input()] + _others(), "outputs": [{"nam": "predict"}]},
     "outputs[0] must be an object with a 'name'"),
    ({"inputs": ["sqft"]}, "inputs[0] must be an object"),
    ({"inputs": [{"name": "sqft", "shape": [1], "datatype": "FP64"}]},
     "inputs[0]: 'data' is missing"),
    ({"inputs": [_input(extra=1)] + _others()}, "inputs[0]: unknown key 'extra'"),
    ({"inputs": [_input(name=1)] + _others()}, "inputs[0]: 'name' must be a string"),
    ({"inputs": [_input(shape=[-2])] + _others()}, "'shape' must be a list of non-negative"),
    ({"inputs": [_input(shape=[True])] + _others()}, "'shape' must be a list of non-negative"),
    ({"inputs": [_input(shape=2)] + _others()}, "'shape' must be a list of non-negative"),
    ({"inputs": [_input(datatype=64)] + _others()}, "'datatype' must be a string"),
    ({"inputs": [_input(data="1500")] + _others()}, "'data' must be a list of numbers"),
    ({"inputs": [_input(data=[1500, True])] + _others()},
     "inputs[0] ('sqft'): data[1] must be a number, got true"),
    ({"inputs": [_input(data=[1500, None])] + _others()}, "data[1] must be a number, got null"),
    ({"inputs": [_input(data=[1500, "2000"])] + _others()},
     'data[1] must be a number, got "2000"'),
    ({"inputs": [_input(shape=[2, 1, 1], data=[[[1500]], [[2000]]])] + _others()},
     "shape [2, 1, 1] has 3 dimensions; an input has 1 ([n]) or 2"),
    ({"inputs": [_input(shape=[2, 1, 1], data=[1500, 2000])] + _others()},
     "shape [2, 1, 1] has 3 dimensions"),
    ({"inputs": [_input(shape=[], data=[1500])] + _others()}, "shape [] has 0 dimensions"),
    ({"inputs": [_input(shape=[2, 1], data=[[1500], [True]])] + _others()},
     "data[1][0] must be a number, got true"),
    ({"inputs": [_input(shape=[2, 1], data=[[1500], 2000])] + _others()},
     "data[1] must be a list (nested as the shape)"),
    ({"inputs": [_input(shape=[2, 1], data=[[1500, 1], [2000]])] + _others()},
     "data[0] has 2 items where shape [1] needs 1"),
    ({"inputs": [_input(data=[1500, 2000, 1])] + _others()},
     "inputs[0] ('sqft'): shape [2] holds 2 values, data has 3"),
    ({"inputs": [_input(datatype="BYTES", data=["1500", "2000"])] + _others()},
     "inputs[0] ('sqft'): datatype BYTES is not accepted by 'sqft', a numeric input (FP64)"),
    ({"inputs": [_input(datatype="BYTES")] + _others()},
     "inputs[0] ('sqft'): datatype BYTES is not accepted by 'sqft'"),
    ({"inputs": [_input(datatype="BOOL", data=[True, False])] + _others()},
     "datatype BOOL is not accepted by 'sqft', a numeric input (FP64)"),
    ({"inputs": [_input(datatype="FP8")] + _others()},
     "datatype 'FP8' is not a datatype of the protocol"),
    ({"inputs": [_input(datatype="INT64", data=[1500, 2000.5])] + _others()},
     "data[1] is 2000.5, not an integer as INT64 says"),
    ({"inputs": [_input(datatype="UINT32", data=[1500, -1])] + _others()},
     "data[1] is negative, but UINT32 is unsigned"),
    ({"inputs": [_input()] + _others()[:2]}, "no input for feature 'age_years'"),
    ({"inputs": [_input(), _input()] + _others()}, "input 'sqft' is given twice"),
    ({"inputs": [_input(), _input(name="pool")] + _others()}, "unknown input 'pool'"),
    ({"inputs": [_input(shape=[1, 2], data=[1, 2])] + _others()},
     "input 'sqft' has shape [1, 2]; a feature's input has shape [n] or [n, 1]"),
    ({"inputs": [_input(shape=[3], data=[1, 2, 3])] + _others()},
     "input 'bedrooms' has 2 rows where 'sqft' has 3"),
    ({"inputs": [_input()]}, "input 'sqft' has shape [2]; send one [n, 4] input"),
    ({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1] * 6}]},
     "input 'x' has shape [2, 3]; send one [n, 4] input with the features in the order sqft, "
     "bedrooms, bathrooms, age_years"),
    ({"inputs": [_input(data=[1e308, 1])] + _others()},
     "row 0: the prediction is not finite"),
]


@pytest.mark.parametrize(("payload", "message"), BAD_REQUESTS)
def test_bad_requests_are_400_naming_the_problem(client, model, payload, message):
    r = infer(client, payload)
    assert r.status_code == 400, r.get_json()
    assert message in error_of(r)["error"]


@pytest.mark.parametrize("raw", [b"{", b"", b'{"inputs": [{"name": "sqft", "data": [NaN]}]}',
                                 b'{"inputs": [{"name": "sqft", "data": [1e400]}]}'])
def test_malformed_json_is_400(client, model, raw):
    r = client.post(INFER, data=raw, content_type="application/json")
    assert r.status_code == 400
    assert error_of(r)["code"] == "invalid_json"


def test_empty_and_oversized_batches(tmp_path, model):
    client = build(tmp_path, max_batch_rows=5).test_client()
    assert infer(client, one_matrix(rows(5))).status_code == 200
    r = infer(client, one_matrix(rows(6)))
    assert r.status_code == 400 and error_of(r)["code"] == "too_many_rows"
    assert "6 rows; the limit is 5" in error_of(r)["error"]
    r = infer(client, {"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP64",
                                   "data": []}]})
    assert r.status_code == 400 and error_of(r)["code"] == "empty_batch"


def test_body_limit_content_type_and_no_model(tmp_path, store):
    client = build(tmp_path, max_body_bytes=2000).test_client()
    r = infer(client, one_matrix(rows(3)))
    assert r.status_code == 503 and error_of(r)["code"] == "no_model"
    assert "sgdserve train" in error_of(r)["error"]
    add_version(store, make_model())
    assert infer(client, one_matrix(rows(3))).status_code == 200
    r = infer(client, one_matrix(rows(300)))
    assert r.status_code == 413 and error_of(r)["code"] == "body_too_large"
    r = client.post(INFER, data=orjson.dumps(one_matrix(rows(3))), content_type="text/plain")
    assert r.status_code == 415 and error_of(r)["code"] == "unsupported_media_type"


def _requests_for_both_paths() -> list[bytes]:
    bodies = [orjson.dumps(payload) for payload, _ in BAD_REQUESTS]
    batch = rows(40, seed=5)
    ints = [{f: int(v) for f, v in row.items()} for row in batch]
    for payload in (by_feature(batch), one_matrix(batch), one_matrix(batch, nested=True),
                    by_feature(ints, "INT32"), one_matrix(ints),
                    dict(by_feature(batch), id="x", outputs=[{"name": "predict"}]),
                    dict(one_matrix(batch), parameters={"a": [1, {"b": None}]})):
        bodies.append(orjson.dumps(payload))
    bodies += [
        b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", '
        b'"data": [-0, 1e-400, 4.9e-324, 18446744073709551616]}]}',
        b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4], '
        b'"parameters": null}]}',
        b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}], '
        b'"outputs": null}',
        b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}], '
        b'"outputs": [{"name": "predict", "parameters": null}]}',
        b'{"inputs": [{"name": "x", "shape": [1, 4.0], "datatype": "FP64", "data": [1, 2, 3, 4]}]}',
    ]
    return bodies


def test_the_fast_and_general_paths_answer_alike(client, model, monkeypatch):
    import service.http.codecs.oip_json

    bodies = _requests_for_both_paths()

    def answers():
        out = []
        for body in bodies:
            r = client.post(INFER, data=body, content_type="application/json")
            answer = r.get_json()
            if r.status_code == 200:  # every answer has ids of its own
                answer["outputs"] = [o for o in answer["outputs"] if o["name"] != "prediction_id"]
            out.append((r.status_code, answer))
        return out

    fast = answers()
    monkeypatch.setattr(service.http.codecs.oip_json, "decode_fast", lambda data: None)
    general = answers()
    for body, a, b in zip(bodies, fast, general, strict=True):
        assert a == b, body[:200]
    assert sum(status == 200 for status, _ in fast) >= 8
    assert sum(status == 400 for status, _ in fast) >= 40


def test_flat_numeric_requests_are_parsed_once(client, model, monkeypatch):
    import service.http.codecs.oip_json

    calls = []
    monkeypatch.setattr(service.http.codecs.oip_json, "decode_general",
                        lambda body: calls.append(body))
    assert infer(client, one_matrix(rows(3))).status_code == 200
    assert infer(client, dict(by_feature(rows(3)), id="a")).status_code == 200
    assert calls == []


def test_metrics_count_v2_requests_and_rows(client, model):
    for _ in range(2):
        assert infer(client, one_matrix(rows(3))).status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert ('sgdserve_requests_total{endpoint="/v2/models/<name>/infer",method="POST",'
            'status="200"} 2.0') in text
    assert "sgdserve_rows_predicted_total 6.0" in text


def test_non_finite_rows_are_named_in_order(client, model):
    batch = rows(10)
    batch[7]["sqft"] = 1e308
    batch[9]["sqft"] = 1e308
    r = infer(client, one_matrix(batch))
    assert error_of(r)["error"].startswith("row 7: the prediction is not finite")
    assert not math.isfinite(1e308 * 150.0)


def test_deeply_nested_data_is_a_400_not_a_crash(client, model):
    depth = 900  # orjson parses up to 1024 levels; following them would pass Python's limit
    data = b"[" * depth + b"1" + b"]" * depth
    shape = b"[" + b",".join([b"1"] * depth) + b"]"
    body = (b'{"inputs": [{"name": "x", "shape": ' + shape + b', "datatype": "FP64", "data": '
            + data + b"}]}")
    r = client.post(INFER, data=body, content_type="application/json")
    assert r.status_code == 400
    assert f"has {depth} dimensions" in error_of(r)["error"]


# -- as clients send it: content types, compression, the binary tensor extension ------------------


def binary_body(values: np.ndarray, *, datatype: str = "FP64", outputs=None, **top):
    """One [n, 4] input as binary tensor data: (body, headers)."""
    raw = np.ascontiguousarray(values).tobytes()
    header = dict(top, inputs=[{"name": "input-0", "shape": list(values.shape),
                                "datatype": datatype,
                                "parameters": {"binary_data_size": len(raw)}}])
    if outputs is not None:
        header["outputs"] = outputs
    head = orjson.dumps(header)
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def matrix(batch: list[dict]) -> np.ndarray:
    return np.array([[r[f] for f in FEATURES] for r in batch])


def read_binary(r) -> tuple[dict, np.ndarray]:
    n = int(r.headers["Inference-Header-Content-Length"])
    header = orjson.loads(r.data[:n])
    output, *loop = header["outputs"]  # the ids (and intervals...) are JSON data after it
    assert output["name"] == "predict" and all("data" in o for o in loop)
    assert output["parameters"]["binary_data_size"] == len(r.data) - n
    return header, np.frombuffer(r.data[n:], "<f8")


@pytest.mark.parametrize("content_type", [None, "application/octet-stream",
                                          "application/json; charset=utf-8",
                                          "application/vnd.api+json"])
def test_json_bodies_with_the_content_types_clients_send(client, model, content_type):
    batch = rows(3)
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = client.post(INFER, data=orjson.dumps(one_matrix(batch)), headers=headers)
    assert r.status_code == 200, r.get_json()
    reference = post_json(client, "/predict", {"instances": batch}).get_json()["predictions"]
    assert r.get_json()["outputs"][0]["data"] == reference


@pytest.mark.parametrize("outputs", [None, [{"name": "predict"}],
                                     [{"name": "predict", "parameters": {"binary_data": True}}]])
def test_binary_in_binary_out(client, model, store, outputs):
    batch = rows(50)
    body, headers = binary_body(matrix(batch), outputs=outputs, id="b-1",
                                parameters={"binary_data_output": True})
    r = client.post(INFER, data=body, headers=headers)
    assert r.status_code == 200, r.data[:300]
    assert r.headers["Content-Type"] == "application/octet-stream"
    header, y = read_binary(r)
    assert header["id"] == "b-1" and header["model_name"] == NAME
    assert header["model_version"] == r.headers["X-Model-Version"] == store.active_version()
    reference = post_json(client, "/predict", {"instances": batch}).get_json()["predictions"]
    assert y.tolist() == reference


def test_binary_in_json_out_and_json_in_binary_out(client, model):
    batch = rows(5)
    reference = post_json(client, "/predict", {"instances": batch}).get_json()["predictions"]
    body, headers = binary_body(matrix(batch), outputs=[
        {"name": "predict", "parameters": {"binary_data": False}}],
        parameters={"binary_data_output": True})
    r = client.post(INFER, data=body, headers=dict(headers, **{
        "Content-Type": "application/octet-stream"}))
    assert r.status_code == 200 and "Inference-Header-Content-Length" not in r.headers
    assert conforms(r.get_json(), "inference_response")["outputs"][0]["data"] == reference
    payload = dict(one_matrix(batch), outputs=[{"name": "predict",
                                                "parameters": {"binary_data": True}}])
    r = infer(client, payload)
    assert read_binary(r)[1].tolist() == reference


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64",
                                      "UINT8", "UINT16", "UINT32", "UINT64"])
def test_every_numeric_datatype_as_binary(client, model, datatype):
    from service.http.codecs.tensors import BINARY_DTYPES

    batch = [{f: float(int(v) % 100) for f, v in row.items()} for row in rows(7)]
    body, headers = binary_body(matrix(batch).astype(BINARY_DTYPES[datatype]),
                                datatype=datatype)
    r = client.post(INFER, data=body, headers=headers)
    assert r.status_code == 200, r.get_json()
    reference = post_json(client, "/predict", {"instances": batch}).get_json()["predictions"]
    assert r.get_json()["outputs"][0]["data"] == reference


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_json_and_binary_bodies(client, model, encoding):
    import gzip
    import zlib

    compress = gzip.compress if encoding == "gzip" else zlib.compress
    batch = rows(20)
    reference = post_json(client, "/predict", {"instances": batch}).get_json()["predictions"]
    r = client.post(INFER, data=compress(orjson.dumps(one_matrix(batch))),
                    headers={"Content-Encoding": encoding})
    assert r.status_code == 200 and r.get_json()["outputs"][0]["data"] == reference
    body, headers = binary_body(matrix(batch))  # the header's length is of the inflated body
    r = client.post(INFER, data=compress(body), headers=dict(headers, **{
        "Content-Encoding": encoding}))
    assert r.status_code == 200 and r.get_json()["outputs"][0]["data"] == reference


def test_a_gzip_bomb_is_413_and_the_app_goes_on(tmp_path, model):
    import gzip

    client = build(tmp_path, max_body_bytes=1 << 20).test_client()
    bomb = gzip.compress(b'{"inputs": [' + b" " * (64 << 20) + b"]}", compresslevel=9)
    assert len(bomb) < (1 << 20)
    r = client.post(INFER, data=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413 and error_of(r)["code"] == "body_too_large"
    assert "inflates (gzip) to more than the limit of 1048576 bytes" in error_of(r)["error"]
    assert infer(client, one_matrix(rows(2))).status_code == 200


@pytest.mark.parametrize(("content_type", "status"), [("text/plain", 415),
                                                      ("multipart/form-data; boundary=x", 415),
                                                      ("application/x-www-form-urlencoded", 415)])
def test_other_content_types_are_refused(client, model, content_type, status):
    r = client.post(INFER, data=orjson.dumps(one_matrix(rows(2))), content_type=content_type)
    assert r.status_code == status and error_of(r)["code"] == "unsupported_media_type"
    assert "application/octet-stream with binary tensor data" in error_of(r)["error"]


def test_binary_data_without_the_header_says_which_header(client, model):
    body, _ = binary_body(matrix(rows(2)))
    for headers in ({}, {"Content-Type": "application/octet-stream"}):
        r = client.post(INFER, data=body, headers=headers)
        assert r.status_code == 400 and error_of(r)["code"] == "invalid_json"
        message = error_of(r)["error"]
        assert "request body is not valid JSON" in message
        assert "needs the Inference-Header-Content-Length header" in message
    body, headers = binary_body(matrix(rows(2)))
    headers["Inference-Header-Content-Length"] = str(int(
        headers["Inference-Header-Content-Length"]) - 3)
    r = client.post(INFER, data=body, headers=headers)
    assert "the JSON header (the first" in error_of(r)["error"]


def _set(key: str, value):
    """A change to the binary request's one input: (header, raw) -> (body, header length)."""
    def change(head: dict, raw: bytes):
        head["inputs"][0][key] = value
        text = orjson.dumps(head)
        return text + raw, str(len(text))
    return change


def _cut(body_change, length_change=lambda n, body: n):
    def change(head: dict, raw: bytes):
        text = orjson.dumps(head)
        body = body_change(text + raw)
        return body, str(length_change(len(text), body))
    return change


BAD_BINARY = [
    (_cut(lambda b: b[:-8]), "binary_data_size is 64 bytes, but only 56 bytes"),
    (_cut(lambda b: b + b"\0" * 8), "8 bytes of the body follow the binary data"),
    (_cut(lambda b: b, lambda n, b: "x"), "must be the byte length of the JSON header, got 'x'"),
    (_cut(lambda b: b, lambda n, b: len(b) + 10), "but the body (decompressed) has"),
    (_set("datatype", "BYTES"), "datatype BYTES is not accepted by 'sqft', a numeric input "
     "(FP64)"),
    (_set("shape", [4, 2]), "has shape [4, 2]; send one [n, 4]"),
    (_set("shape", [1, 4]), "binary_data_size is 64 bytes, but shape [1, 4] of FP64 is 32 bytes"),
    (_set("datatype", "FP32"), "shape [2, 4] of FP32 is 32"),
    (_set("parameters", {"binary_data_size": -1}), "binary_data_size must be a non-negative "
     "integer"),
    (_set("parameters", {"binary_data_size": True}), "binary_data_size must be a non-negative "
     "integer"),
    (_set("parameters", {"shared_memory_region": "r"}), "the shared-memory extension is not "
     "supported"),
    (_set("data", [1.0] * 8), "give 'data' or parameters.binary_data_size, not both"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD_BINARY)
def test_bad_binary_bodies_are_400_naming_the_problem(client, model, mutate, message):
    values = matrix(rows(2))
    head = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64",
                        "parameters": {"binary_data_size": values.nbytes}}]}
    body, n = mutate(head, values.tobytes())
    r = client.post(INFER, data=body, headers={"Inference-Header-Content-Length": n})
    assert r.status_code == 400, r.data[:300]
    assert message in error_of(r)["error"]
    assert infer(client, one_matrix(rows(2))).status_code == 200


def test_keys_clients_add_are_accepted_and_checked(client, model, store):
    version = store.active_version()
    payload = dict(one_matrix(rows(2)), id="k-1", model_name=NAME, model_version=version,
                   parameters={"priority": 1, "timeout": 1000, "foo": "bar",
                               "binary_data_output": False},
                   outputs=[{"name": "predict", "parameters": {"binary_data": False}}])
    r = infer(client, payload)
    assert r.status_code == 200 and r.get_json()["id"] == "k-1"
    r = infer(client, dict(payload, model_name="other"))
    assert r.status_code == 400 and "'model_name' is 'other', but the path names" in \
        error_of(r)["error"]
    r = infer(client, dict(payload, model_version="nope"))
    assert r.status_code == 404 and error_of(r)["code"] == "version_not_found"
    for bad, message in (({"binary_data_output": 1}, "binary_data_output must be true or "
                          "false"),):
        r = infer(client, dict(payload, parameters=bad))
        assert r.status_code == 400 and message in error_of(r)["error"]
    for output, message in (
            ({"name": "predict", "parameters": {"binary_data": "yes"}}, "binary_data must be"),
            ({"name": "predict", "parameters": {"classification": 2}}, "classification "
             "extension is not supported"),
            ({"name": "predict", "parameters": []}, "'parameters' must be an object")):
        r = infer(client, dict(payload, outputs=[output]))
        assert r.status_code == 400 and message in error_of(r)["error"]
    r = infer(client, dict(payload, outputs=[{"name": "predict"}, {"name": "predict"}]))
    assert "output 'predict' is requested twice" in error_of(r)["error"]


def test_versions_by_number_and_alias(client, store):
    first = add_version(store, make_model(intercept=1.0))
    second = add_version(store, make_model(intercept=2.0), activate=False)
    body = one_matrix(rows(2))
    for version in (first, "1", "active"):
        r = client.get(f"/v2/models/{NAME}/versions/{version}")
        assert r.status_code == 200 and r.get_json()["versions"] == [first]
        r = infer(client, body, f"/v2/models/{NAME}/versions/{version}/infer")
        assert r.status_code == 200 and r.get_json()["model_version"] == first
        assert client.get(f"/v2/models/{NAME}/versions/{version}/ready").status_code == 200
    for version in ("2", "latest", second):
        r = infer(client, body, f"/v2/models/{NAME}/versions/{version}/infer")
        assert r.status_code == 404 and error_of(r)["code"] == "version_not_found"
        assert f"the active version is {first}" in error_of(r)["error"]
    assert f"'2 ({second})' is not being served" in error_of(infer(
        client, body, f"/v2/models/{NAME}/versions/2/infer"))["error"]
    r = client.get(f"/v2/models/{NAME}/versions/3")
    assert "the store keeps 2 versions, numbered 1 (the oldest) to 2" in error_of(r)["error"]
    r = client.get(f"/v2/models/{NAME}/versions/v1")
    assert r.status_code == 404
    assert "by its number among the stored versions (1 is the oldest" in error_of(r)["error"]
    store.activate(second)
    r = infer(client, body, f"/v2/models/{NAME}/versions/latest/infer")
    assert r.status_code == 200 and r.get_json()["model_version"] == second


@pytest.mark.parametrize(("method", "path", "extension"), [
    ("POST", "/v2/repository/index", "model repository"),
    ("POST", f"/v2/repository/models/{NAME}/load", "model repository"),
    ("GET", f"/v2/models/{NAME}/config", "model configuration"),
    ("GET", f"/v2/models/{NAME}/versions/1/config", "model configuration"),
    ("GET", "/v2/models/stats", "statistics"),
    ("GET", f"/v2/models/{NAME}/stats", "statistics"),
    ("GET", "/v2/systemsharedmemory/status", "system shared memory"),
    ("POST", "/v2/cudasharedmemory/region/r0/register", "CUDA shared memory"),
    ("GET", "/v2/trace/setting", "trace"),
    ("POST", "/v2/logging", "logging"),
])
def test_extensions_clients_probe_say_they_are_not_supported(client, method, path, extension):
    r = client.open(path, method=method)
    assert r.status_code == 501
    body = error_of(r)
    assert body["code"] == "unsupported_extension"
    assert body["error"].startswith(f"the {extension} extension is not supported by sgdserve")
    assert "binary_tensor_data" in body["error"]


def test_unknown_protocol_paths_say_which_protocol(client):
    r = client.get("/v2/models/house-price/explain/x")
    assert r.status_code == 404
    assert error_of(r)["error"].startswith("no route GET /v2/models/house-price/explain/x in "
                                           "the Open Inference Protocol as sgdserve serves it")
    assert "The requested URL" not in error_of(r)["error"]
