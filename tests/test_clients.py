"""The protocols through the clients their users have, against a real gunicorn (`sgdserve serve`).

- Triton's ``tritonclient.http`` (sync, gevent) and ``tritonclient.http.aio`` (aiohttp), as
  shipped: binary tensors both ways (their default), JSON, every numeric datatype, BYTES,
  outputs named and not, request ids, versions, compression, errors.
- KServe's ``InferenceRESTClient``: it does not install here without replacing the test
  environment's pandas 3 by pandas 2 (kserve 0.21 pins ``pandas<3``, ``psutil<6`` and pulls
  grpcio, kubernetes and fastapi), so its requests, captured byte for byte on loopback
  (tests/data/kserve_requests.json), are replayed and the answers read the way its client reads
  them (``InferResponse.from_bytes``: ``model_name``, outputs by ``binary_data_size`` or
  ``data``; error messages only from a Content-Type of exactly ``application/json``).
- MLflow's documented scoring bodies, with the content types its docs use and with none.

Every answer equals ``/predict``'s on the same rows, bit for bit. Bad input of every kind is a
4xx JSON naming the problem; afterwards the server still answers and its access log has no 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import socket
from pathlib import Path

import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

from service.store import LocalStore

from helpers import GunicornServer, hand_model

pytestmark = pytest.mark.slow

# The feature names KServe's captured requests use; any four would do for tritonclient.
FEATURES = ("sqft", "rooms", "age", "dist")
COEF = (149.37, 10_001.3, -503.1, 4_999.7)
INTERCEPT = 50_000.3
MODEL = "house-price"
KSERVE = json.loads((Path(__file__).parent / "data" / "kserve_requests.json").read_text())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clients")
    store = LocalStore(tmp / "models", MODEL)
    first = store.save(hand_model(1.0, FEATURES, coef=COEF), {}, parent=None)
    active = store.save(hand_model(INTERCEPT, FEATURES, coef=COEF), {}, parent=first)
    store.activate(active)
    srv = GunicornServer(tmp, workers=2, env={"SGDSERVE_MODEL_DIR": str(tmp / "models"),
                                              "SGDSERVE_MAX_BODY_BYTES": str(4 << 20)})
    srv.versions = (first, active)
    with srv:
        yield srv
    statuses = [json.loads(line)["status"] for line in srv.stdout().splitlines()
                if line.startswith("{")]
    # 501 is the answer for an extension sgdserve does not implement; any other 5xx is a bug.
    assert statuses and not [s for s in statuses if s >= 500 and s != 501], statuses


@pytest.fixture
def triton(server):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


def reference(server: GunicornServer, X: np.ndarray) -> list[float]:
    """What /predict answers for the rows of X (columns in FEATURES order)."""
    rows = [dict(zip(FEATURES, map(float, row), strict=True)) for row in X]
    r = requests.post(server.url + "/predict", json={"instances": rows}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def sample(n: int = 40, seed: int = 0) -> np.ndarray:
    """Rows every numeric datatype holds exactly: small integers and halves."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 100, size=(n, len(FEATURES))) + 0.5 * rng.integers(0, 2, (n, 4))


NUMPY = {"FP64": np.float64, "FP32": np.float32, "FP16": np.float16, "INT64": np.int64,
         "INT32": np.int32, "INT16": np.int16, "INT8": np.int8, "UINT64": np.uint64,
         "UINT32": np.uint32, "UINT16": np.uint16, "UINT8": np.uint8}


def matrix_input(module, X: np.ndarray, datatype: str, binary: bool):
    values = X.astype(NUMPY[datatype])
    tensor = module.InferInput("input-0", list(values.shape), datatype)
    tensor.set_data_from_numpy(values, binary_data=binary)
    return [tensor]


# -- tritonclient, sync ----------------------------------------------------------------------------


def test_health_and_metadata(triton, server):
    first, active = server.versions
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready(MODEL)
    for version in ("2", "active", "latest", active):
        assert triton.is_model_ready(MODEL, version)
    assert not triton.is_model_ready(MODEL, "1") and not triton.is_model_ready("other")
    assert triton.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = triton.get_model_metadata(MODEL)
    assert [t["name"] for t in meta["inputs"]] == list(FEATURES)
    assert {t["datatype"] for t in meta["inputs"]} == {"FP64"}
    assert triton.get_model_metadata(MODEL, "2")["versions"] == [active]


@pytest.mark.parametrize("datatype", list(NUMPY))
@pytest.mark.parametrize("binary", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("output", [None, True, False], ids=["no-outputs", "binary-out",
                                                           "json-out"])
def test_infer_every_numeric_datatype(triton, server, datatype, binary, output):
    X = sample(seed=len(datatype))
    outputs = None if output is None else [httpclient.InferRequestedOutput("predict",
                                                                           binary_data=output)]
    result = triton.infer(MODEL, matrix_input(httpclient, X, datatype, binary), outputs=outputs)
    y = result.as_numpy("predict")
    sent = X.astype(NUMPY[datatype]).astype(np.float64)  # integer types drop the halves
    assert y.dtype == np.float64 and y.tolist() == reference(server, sent)
    sent_binary = output if output is not None else True  # no outputs: binary_data_output
    answer = result.get_response()["outputs"][0]
    assert ("parameters" in answer) == sent_binary and ("data" in answer) != sent_binary


def test_one_input_per_feature_request_ids_and_versions(triton, server):
    first, active = server.versions
    X = sample(25, seed=9)
    inputs = []
    for j, name in enumerate(FEATURES):
        tensor = httpclient.InferInput(name, [len(X)], "FP64")
        tensor.set_data_from_numpy(np.ascontiguousarray(X[:, j]), binary_data=j % 2 == 0)
        inputs.append(tensor)
    for version in ("", "2", "active", "latest", active):
        result = triton.infer(MODEL, inputs, request_id="req-42", model_version=version)
        assert result.get_response()["id"] == "req-42"
        assert result.get_response()["model_version"] == active
        assert result.as_numpy("predict").tolist() == reference(server, X)
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(MODEL, inputs, model_version="1")
    assert caught.value.status() == "404"
    assert f"version '1 ({first})' is not being served; the active version is {active}" in \
        caught.value.message()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [True, False])
def test_compressed_requests_and_responses(triton, server, algorithm, binary):
    X = sample(seed=3)
    result = triton.infer(MODEL, matrix_input(httpclient, X, "FP64", binary),
                          request_compression_algorithm=algorithm,
                          response_compression_algorithm=algorithm)
    assert result.as_numpy("predict").tolist() == reference(server, X)


def test_bytes_are_refused_for_numeric_features_naming_the_input(triton, server):
    values = np.array([["1.0", "2.0", "3.0", "4.0"], ["5.0", "6.0", "7.0", "héllo"]],
                      dtype=np.object_)
    for binary in (True, False):
        tensor = httpclient.InferInput("input-0", [2, 4], "BYTES")
        tensor.set_data_from_numpy(values, binary_data=binary)
        with pytest.raises(InferenceServerException) as caught:
            triton.infer(MODEL, [tensor])
        assert caught.value.status() == "400"
        assert "inputs[0] ('input-0'): datatype BYTES is not accepted by 'sqft', a numeric " \
               "input (FP64)" in caught.value.message()


@pytest.mark.parametrize(("make", "status", "message"), [
    (lambda: ([httpclient.InferInput("input-0", [2, 3], "FP64").set_data_from_numpy(
        np.ones((2, 3)))], None), "400", "input 'input-0' has shape [2, 3]; send one [n, 4]"),
    (lambda: ([httpclient.InferInput("pool", [2], "FP64").set_data_from_numpy(np.ones(2))],
              None), "400", "input 'pool' has shape [2]; send one [n, 4] input"),
    (lambda: (matrix_input(httpclient, np.ones((2, 4)), "FP64", True),
              [httpclient.InferRequestedOutput("proba")]), "400", "unknown output 'proba'"),
    (lambda: ([httpclient.InferInput("input-0", [2, 4], "BOOL").set_data_from_numpy(
        np.ones((2, 4), dtype=bool))], None), "400", "datatype BOOL is not accepted"),
    (lambda: (matrix_input(httpclient, np.full((2, 4), np.nan), "FP64", True), None), "400",
     "data[0] is nan; feature values must be finite"),
    (lambda: (matrix_input(httpclient, np.ones((20_001, 4)), "FP64", True), None), "400",
     "has 20001 rows; the limit is 10000"),
])
def test_bad_requests_raise_the_servers_message(triton, make, status, message):
    inputs, outputs = make()
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(MODEL, inputs, outputs=outputs)
    assert caught.value.status() == status
    assert message in caught.value.message()


def test_unknown_model_and_unsupported_extensions(triton):
    with pytest.raises(InferenceServerException) as caught:
        triton.infer("other", matrix_input(httpclient, np.ones((1, 4)), "FP64", True))
    assert caught.value.status() == "404" and "serves 'house-price'" in caught.value.message()
    for call, extension in ((triton.get_model_repository_index, "model repository"),
                            (lambda: triton.get_model_config(MODEL), "model configuration"),
                            (lambda: triton.get_inference_statistics(MODEL), "statistics"),
                            (triton.get_system_shared_memory_status, "system shared memory"),
                            (triton.get_trace_settings, "trace"),
                            (triton.get_log_settings, "logging")):
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == "501"
        assert caught.value.message().startswith(f"the {extension} extension is not supported")


# -- tritonclient, asyncio ------------------------------------------------------------------------


def test_the_asyncio_client(server):
    X = sample(30, seed=5)
    expected = reference(server, X)

    async def run() -> None:
        client = aioclient.InferenceServerClient(server.url.removeprefix("http://"))
        try:
            assert await client.is_server_ready() and await client.is_model_ready(MODEL)
            assert (await client.get_server_metadata())["extensions"] == ["binary_tensor_data"]
            for binary in (True, False):
                for output in (None, True, False):
                    outputs = None if output is None else [
                        aioclient.InferRequestedOutput("predict", binary_data=output)]
                    result = await client.infer(MODEL, matrix_input(aioclient, X, "FP32",
                                                                    binary),
                                                outputs=outputs, request_id=f"a-{binary}")
                    assert result.as_numpy("predict").tolist() == expected
                    assert result.get_response()["id"] == f"a-{binary}"
            result = await client.infer(MODEL, matrix_input(aioclient, X, "FP16", True),
                                        request_compression_algorithm="gzip",
                                        response_compression_algorithm="gzip")
            assert result.as_numpy("predict").tolist() == expected
            with pytest.raises(InferenceServerException) as caught:
                await client.infer(MODEL, matrix_input(aioclient, X[:, :3], "FP64", True))
            assert caught.value.status() == "400" and "send one [n, 4]" in \
                caught.value.message()
        finally:
            await client.close()

    asyncio.run(run())


# -- KServe's client, replayed --------------------------------------------------------------------


def kserve_infer_response(r: requests.Response) -> dict:
    """The answer as ``kserve.InferResponse.from_bytes`` reads it (kserve 0.21.0)."""
    assert r.status_code // 100 == 2, r.text
    content = r.content
    json_length = int(r.headers.get("inference-header-content-length", len(content)))
    body = orjson.loads(content[:json_length])
    outputs = {}
    start = json_length
    for output in body["outputs"]:
        name, shape, datatype = output["name"], output["shape"], output["datatype"]
        parameters = output.get("parameters")
        if datatype == "BYTES":  # prediction_id: JSON strings, which kserve keeps as they are
            assert name == "prediction_id" and "binary_data_size" not in (parameters or {})
            outputs[name] = output["data"]
            continue
        assert datatype == "FP64"
        if parameters and "binary_data_size" in parameters:
            end = start + parameters["binary_data_size"]
            outputs[name] = np.frombuffer(content[start:end], "<f8").reshape(shape).tolist()
            start = end
        else:
            outputs[name] = output["data"]
    return {"model_name": body["model_name"], "id": body.get("id"), "outputs": outputs}


def kserve_error(r: requests.Response) -> str:
    """The message kserve's client puts in its HTTPStatusError: json["error"] only for a
    Content-Type of exactly application/json."""
    assert r.status_code // 100 != 2
    assert r.headers["content-type"] == "application/json"
    return r.json()["error"]


@pytest.mark.parametrize("captured", KSERVE["requests"], ids=lambda c: c["label"])
def test_kserves_requests(server, captured):
    X = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    body = base64.b64decode(captured["body_base64"])
    r = requests.request(captured["method"], server.url + captured["path"],
                         headers=dict(captured["headers"]), data=body or None, timeout=30)
    label = captured["label"]
    if label == "v1_is_server_live":
        assert r.json()["status"].lower() == "alive"
    elif label == "v1_is_model_ready":
        assert r.status_code == 200 and r.json()["ready"] is True
    elif label == "v1_infer_instances":
        assert r.json()["predictions"] == reference(server, X)
    elif label in ("v2_is_server_live", "v2_is_server_ready"):
        assert r.json()[label.rsplit("_", 1)[1]] is True
    elif label == "v2_is_model_ready":
        assert r.status_code == 200
    elif label.startswith("v2_infer_bytes"):
        assert r.status_code == 400
        assert "datatype BYTES is not accepted by 'sqft', a numeric input" in kserve_error(r)
    elif label == "v2_infer_dict":
        answer = kserve_infer_response(r)
        assert answer["outputs"]["predict"] == reference(server, X[:1])
    else:
        answer = kserve_infer_response(r)
        sent = orjson.loads(body[:int(dict(captured["headers"]).get(
            "inference-header-content-length", len(body)))])
        assert answer["model_name"] == MODEL and answer["id"] == sent["id"]
        assert answer["outputs"]["predict"] == reference(server, X)


# -- MLflow's documented bodies --------------------------------------------------------------------


def test_mlflows_scoring_bodies(server):
    X = sample(12, seed=7)
    expected = reference(server, X)
    rows = [dict(zip(FEATURES, map(float, row), strict=True)) for row in X]
    csv = ",".join(FEATURES) + "\n" + "".join(",".join(map(repr, map(float, row))) + "\n"
                                              for row in X)
    cases = [
        ({"dataframe_split": {"columns": list(FEATURES), "data": X.tolist()}}, "json"),
        ({"dataframe_records": rows}, "json"),
        ({"instances": rows}, "json"),
        ({"inputs": {f: X[:, j].tolist() for j, f in enumerate(FEATURES)}}, "json"),
        ({"inputs": X.tolist(), "params": {}}, "json"),
        (csv, "text/csv"),
        (csv, None),
        ({"dataframe_records": rows}, None),
    ]
    for payload, kind in cases:
        data = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
        headers = {"json": {"Content-Type": "application/json"}, None: {}}.get(
            kind, {"Content-Type": kind})
        r = requests.post(server.url + "/invocations", data=data, headers=headers, timeout=30)
        assert r.status_code == 200, (kind, r.text)
        assert r.json()["predictions"] == expected
    assert requests.get(server.url + "/ping", timeout=10).status_code == 200
    assert requests.get(server.url + "/version", timeout=10).text
    r = requests.post(server.url + "/invocations", data=b'{"data": [[1, 2, 3, 4]]}',
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST"
    assert "exactly one of the input fields" in r.json()["message"]


# -- bad input of every kind, through gunicorn ----------------------------------------------------


def _binary(X: np.ndarray, **changes) -> tuple[bytes, dict[str, str]]:
    raw = X.tobytes()
    tensor = {"name": "input-0", "shape": list(X.shape), "datatype": "FP64",
              "parameters": {"binary_data_size": len(raw)}}
    tensor.update(changes)
    head = orjson.dumps({"inputs": [tensor]})
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def test_bad_input_is_a_4xx_naming_it_and_the_server_goes_on(server):
    url = server.url + f"/v2/models/{MODEL}/infer"
    X = sample(4)
    body, headers = _binary(X)
    cases = [
        (body[:-5], headers, 400, "binary_data_size is 128 bytes, but only 123"),
        (body, {"Inference-Header-Content-Length": "9999"}, 400, "but the body (decompressed) "
         "has"),
        (body, {"Inference-Header-Content-Length": str(int(headers[
            "Inference-Header-Content-Length"]) - 2)}, 400, "the JSON header (the first"),
        (*_binary(X, shape=[4, 5]), 400, "has shape [4, 5]; send one [n, 4]"),
        (*_binary(X, datatype="BYTES"), 400, "datatype BYTES is not accepted by 'sqft'"),
        (*_binary(X, datatype="FP32"), 400, "shape [4, 4] of FP32 is 64 bytes"),
        (body, {}, 400, "needs the Inference-Header-Content-Length header"),
        (gzip.compress(b" " * (40 << 20)), {"Content-Encoding": "gzip"}, 413,
         "inflates (gzip) to more than the limit of 4194304 bytes"),
        (b"\x1f\x8b not gzip", {"Content-Encoding": "gzip"}, 400, "is not valid gzip data"),
        (body, dict(headers, **{"Content-Encoding": "br"}), 415, "'br' is not supported"),
    ]
    for data, extra, status, message in cases:
        r = requests.post(url, data=data, headers=extra, timeout=30)
        assert r.status_code == status, (message, r.text)
        assert r.headers["Content-Type"] == "application/json"
        assert message in r.json()["error"], r.json()
    # A body that ends before its Content-Length: the worker answers 400 and serves on.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: "
                  f"{len(body) + 1000}\r\n{list(headers)[0]}: {list(headers.values())[0]}"
                  "\r\n\r\n".encode() + body)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    for _ in range(4):  # both workers still answer
        result = requests.post(url, data=body, headers=headers, timeout=10)
        assert result.status_code == 200
        assert result.json()["outputs"][0]["data"] == reference(server, X)
    assert requests.get(server.url + "/health", timeout=10).status_code == 200


# -- a model with text categories and yes/no, trained by the pipeline ------------------------


@pytest.fixture(scope="module")
def mixed_server(tmp_path_factory):
    from test_tabular import house_frame

    from service.training import train

    tmp = tmp_path_factory.mktemp("clients-mixed")
    frame = house_frame(2000, seed=4)
    frame.to_csv(tmp / "houses.csv", index=False)
    train(LocalStore(tmp / "models", MODEL), tmp / "houses.csv", target="price")
    srv = GunicornServer(tmp, workers=1, env={"SGDSERVE_MODEL_DIR": str(tmp / "models")})
    srv.frame = frame
    with srv:
        yield srv


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_sends_categories_as_bytes_and_yes_no_as_bool(mixed_server, binary):
    client = httpclient.InferenceServerClient(mixed_server.url.removeprefix("http://"))
    try:
        meta = client.get_model_metadata(MODEL)
        datatypes = {i["name"]: i["datatype"] for i in meta["inputs"]}
        rows = mixed_server.frame.dropna(subset=["lot", "baths"]).head(25)
        inputs = []
        for name, datatype in datatypes.items():
            column = rows[name]
            if datatype == "BYTES":
                values = np.array(column.fillna("").astype(str).tolist(), dtype=np.object_)
            elif datatype == "BOOL":
                values = (column == "Y").to_numpy()
            else:
                values = column.to_numpy(dtype=np.float64)
            tensor = httpclient.InferInput(name, [len(rows)], datatype)
            tensor.set_data_from_numpy(values, binary_data=binary)
            inputs.append(tensor)
        answer = client.infer(MODEL, inputs).as_numpy("predict")
    finally:
        client.close()
    assert datatypes["hood"] == "BYTES" and datatypes["air"] == "BOOL"
    records = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
               for r in rows.drop(columns=["price"]).to_dict(orient="records")]
    expected = requests.post(mixed_server.url + "/predict", json={"instances": records},
                             timeout=30).json()["predictions"]
    assert answer.tolist() == expected  # bit for bit
