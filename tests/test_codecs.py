"""service.http.codecs: every wire format to the model's columns, at the codec level.

Categorical inputs do not exist in models yet, but the codecs decode them already: these tests
give an input the datatype BYTES directly (what :func:`input_datatypes` will answer for a
categorical feature) and check that JSON strings, length-prefixed binary BYTES and CSV text
become ``list[str | None]`` columns, and that a numeric input refuses them.
"""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import serialize_byte_tensor

from service.http.codecs import csv_rows, mlflow, oip_json, v1
from service.http.codecs.columns import BYTES, FP64, input_datatypes, predict
from service.http.codecs.oip_binary import encode, split
from service.http.codecs.tensors import (
    BINARY_DTYPES,
    NUMERIC_TYPES,
    decode_tensors,
)
from service.http.errors import APIError

from helpers import hand_model

NAMES = ("sqft", "bedrooms", "bathrooms", "age_years")
NUMERIC = (FP64,) * 4
MIXED = ("sqft", "color")  # a model with one categorical input, once models have them
MIXED_TYPES = (FP64, BYTES)
X = np.array([[1500.0, 3.0, 2.0, 20.0], [900.0, 2.0, 1.0, 45.5]])


def refused(call, *args, status=400):
    with pytest.raises(APIError) as caught:
        call(*args)
    assert caught.value.status_code == status, caught.value.message
    return caught.value.message


def bytes_tensor(values: list[str]) -> bytes:
    """BYTES elements serialized by tritonclient itself, as it sends them."""
    return serialize_byte_tensor(np.array(values, dtype=np.object_)).item()


def test_tritonclients_bytes_layout_is_the_one_decoded():
    # 4-byte little-endian length, then the UTF-8 bytes, element after element
    assert bytes_tensor(["1.0", "héllo"]) == (struct.pack("<I", 3) + b"1.0" +
                                              struct.pack("<I", 6) + "héllo".encode())


def test_a_request_tritonclient_makes_with_a_bytes_input_for_a_categorical_feature():
    sqft = httpclient.InferInput("sqft", [3], "FP64")
    sqft.set_data_from_numpy(np.array([1500.0, 900.0, 2100.5]))
    color = httpclient.InferInput("color", [3, 1], "BYTES")
    color.set_data_from_numpy(np.array([["red"], ["蓝"], [""]], dtype=np.object_))
    for binary in (True, False):
        sqft.set_data_from_numpy(np.array([1500.0, 900.0, 2100.5]), binary_data=binary)
        color.set_data_from_numpy(np.array([["red"], ["蓝"], [""]], dtype=np.object_),
                                  binary_data=binary)
        body, json_size = httpclient.InferenceServerClient.generate_request_body([sqft, color])
        columns = columns_of(body, None if json_size is None else str(json_size), MIXED,
                             MIXED_TYPES)
        assert columns.rows == 3
        assert columns.values[0].tolist() == [1500.0, 900.0, 2100.5]
        assert columns.values[1] == ["red", "蓝", ""]


def binary_request(inputs: list[tuple[str, list[int], str, bytes]], **top) -> tuple[bytes, str]:
    """A binary-extension body and its Inference-Header-Content-Length."""
    header = dict(top, inputs=[
        {"name": name, "shape": shape, "datatype": datatype,
         "parameters": {"binary_data_size": len(raw)}} for name, shape, datatype, raw in inputs])
    head = orjson.dumps(header)
    return head + b"".join(raw for *_, raw in inputs), str(len(head))


def columns_of(body: bytes, length: str | None, names=NAMES, datatypes=NUMERIC, limit=100):
    if length is None:
        head, raw = body, None
    else:
        head, raw = split(body, length)
    request = oip_json.decode_request(head)
    return decode_tensors(request.inputs, raw, names, datatypes, limit)


def test_the_datatype_hook_says_fp64_for_every_feature_of_todays_models():
    assert input_datatypes(hand_model()) == NUMERIC


# -- the Open Inference Protocol: binary tensors ------------------------------------------------


@pytest.mark.parametrize("datatype", sorted(NUMERIC_TYPES))
def test_every_numeric_datatype_in_binary_reads_as_float64(datatype):
    values = X.astype(BINARY_DTYPES[datatype])
    body, length = binary_request([("input-0", [2, 4], datatype, values.tobytes())])
    columns = columns_of(body, length)
    assert columns.rows == 2
    expected = values.astype(np.float64)
    for j in range(4):
        assert columns.values[j].dtype == np.float64
        assert columns.values[j].tolist() == expected[:, j].tolist()


def test_binary_inputs_per_feature_and_mixed_with_json():
    inputs = [(name, [2], "FP64", np.ascontiguousarray(X[:, j]).tobytes())
              for j, name in enumerate(NAMES)]
    body, length = binary_request(inputs)
    assert [c.tolist() for c in columns_of(body, length).values] == X.T.tolist()
    # one input as JSON data among binary ones: its bytes are simply not in the binary part
    header = orjson.loads(body[:int(length)])
    header["inputs"][1] = {"name": "bedrooms", "shape": [2], "datatype": "INT64", "data": [3, 2]}
    raw = b"".join(raw for k, (*_, raw) in enumerate(inputs) if k != 1)
    head = orjson.dumps(header)
    assert [c.tolist() for c in columns_of(head + raw, str(len(head))).values] == X.T.tolist()


def test_bytes_in_binary_and_json_become_string_columns_for_a_categorical_input():
    colors = ["red", "héllo", "", "蓝"]
    sqft = np.array([1.0, 2.0, 3.0, 4.0])
    body, length = binary_request([("sqft", [4], "FP64", sqft.tobytes()),
                                   ("color", [4], BYTES, bytes_tensor(colors))])
    columns = columns_of(body, length, MIXED, MIXED_TYPES)
    assert columns.values[0].tolist() == sqft.tolist() and columns.values[1] == colors
    json_body = orjson.dumps({"inputs": [
        {"name": "sqft", "shape": [4], "datatype": "FP64", "data": sqft.tolist()},
        {"name": "color", "shape": [4, 1], "datatype": BYTES, "data": [[c] for c in colors]}]})
    assert columns_of(json_body, None, MIXED, MIXED_TYPES).values[1] == colors
    # one [n, d] BYTES tensor for a model whose inputs all take BYTES
    matrix = orjson.dumps({"inputs": [{"name": "x", "shape": [2, 2], "datatype": BYTES,
                                       "data": ["a", "b", "c", "d"]}]})
    assert columns_of(matrix, None, ("p", "q"), (BYTES, BYTES)).values == [["a", "c"],
                                                                           ["b", "d"]]


def test_a_numeric_input_refuses_bytes_and_a_categorical_one_refuses_numbers():
    body, length = binary_request([("input-0", [1, 4], BYTES,
                                    bytes_tensor(["1", "2", "3", "4"]))])
    assert "inputs[0] ('input-0'): datatype BYTES is not accepted by 'sqft', a numeric input " \
           "(FP64): send numbers" in refused(columns_of, body, length)
    json_body = orjson.dumps({"inputs": [
        {"name": "sqft", "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "color", "shape": [1], "datatype": "INT32", "data": [3]}]})
    assert "inputs[1] ('color'): datatype INT32 is not accepted by 'color', a categorical " \
           "input (BYTES): send its values as strings" in refused(
               columns_of, json_body, None, MIXED, MIXED_TYPES)


@pytest.mark.parametrize(("raw", "shape", "message"), [
    (b"\x03\x00\x00\x00ab", [1], "BYTES element 0 says 3 bytes, but only 2 of the input's 6"),
    (b"\x01\x00\x00\x00a\x01\x00\x00", [2], "BYTES element 1: its 4-byte length runs past"),
    (b"\x01\x00\x00\x00ab", [1], "1 bytes are left after the 1 BYTES elements of shape [1]"),
    (b"\x01\x00\x00\x00\xff", [1], "BYTES element 0 is not valid UTF-8 (invalid start byte"),
    (b"\x00" * 7, [2], "shape [2] holds 2 BYTES elements, which need at least 8 bytes"),
])
def test_malformed_binary_bytes_are_named(raw, shape, message):
    body, length = binary_request([("sqft", shape, "FP64", b"\0" * 8 * shape[0]),
                                   ("color", shape, BYTES, raw)])
    assert message in refused(columns_of, body, length, MIXED, MIXED_TYPES)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b, n: (b[:-1], n), "binary_data_size is 64 bytes, but only 63 bytes of the body"),
    (lambda b, n: (b + b"\0", n), "1 bytes of the body follow the binary data of every input"),
    (lambda b, n: (b, str(int(n) + 1)), "is not valid JSON"),
    (lambda b, n: (b, str(len(b) + 1)),
     "Inference-Header-Content-Length is 165, but the body (decompressed) has 164"),
    (lambda b, n: (b, "0"), "Inference-Header-Content-Length is 0"),
    (lambda b, n: (b, "-5"), "must be the byte length of the JSON header, got '-5'"),
    (lambda b, n: (b, "1e3"), "must be the byte length of the JSON header, got '1e3'"),
])
def test_binary_bodies_that_disagree_with_their_header(mutate, message):
    body, length = binary_request([("input-0", [2, 4], "FP64", X.tobytes())])
    assert message in refused(columns_of, *mutate(body, length))


def test_sizes_are_checked_before_anything_is_read():
    # A shape of 10**15 values with a few bytes: refused from the header alone.
    body, length = binary_request([("input-0", [10**15, 4], "FP64", b"\0" * 32)])
    assert "has 1000000000000000 rows; the limit is 100" in refused(columns_of, body, length)
    body, length = binary_request([("input-0", [2, 4], "FP32", X.tobytes())])
    assert "binary_data_size is 64 bytes, but shape [2, 4] of FP32 is 32 bytes (8 x 4)" in \
        refused(columns_of, body, length)
    body, length = binary_request([("input-0", [2, 4], "FP64", X.tobytes())])
    head = orjson.loads(body[:int(length)])
    del head["inputs"][0]["parameters"]
    head = orjson.dumps(head)
    assert "'data' is missing (or parameters.binary_data_size" in refused(
        columns_of, head + X.tobytes(), str(len(head)))
    assert "binary_data_size is given, but the request has no Inference-Header-Content-Length"\
        in refused(columns_of, body[:int(length)], None)


def test_non_finite_binary_values_are_refused():
    values = X.copy()
    values[1, 2] = np.nan
    body, length = binary_request([("input-0", [2, 4], "FP64", values.tobytes())])
    assert "inputs[0] ('input-0'): data[6] is nan; feature values must be finite" in refused(
        columns_of, body, length)


def test_binary_responses():
    y = np.array([1.5, -2.25])
    body, headers = encode({"model_name": "m", "model_version": "v"}, [("predict", y, True)])
    n = int(headers["Inference-Header-Content-Length"])
    assert headers["Content-Type"] == "application/octet-stream"
    assert orjson.loads(body[:n])["outputs"] == [
        {"name": "predict", "shape": [2], "datatype": "FP64",
         "parameters": {"binary_data_size": 16}}]
    assert np.frombuffer(body[n:], "<f8").tolist() == y.tolist()
    body, headers = encode({"model_name": "m"}, [("predict", y, False)])
    assert headers == {"Content-Type": "application/json"}
    assert orjson.loads(body)["outputs"][0]["data"] == y.tolist()


# -- KServe V1 -----------------------------------------------------------------------------------


def test_v1_lists_objects_and_bare_values():
    lists = orjson.dumps({"instances": X.tolist()})
    objects = orjson.dumps({"instances": [dict(zip(NAMES, r, strict=True)) for r in X.tolist()]})
    for body in (lists, objects, orjson.dumps({"inputs": X.tolist()})):
        columns, _ = v1.decode(body, NAMES, NUMERIC, 100)
        assert [c.tolist() for c in columns.values] == X.T.tolist()
    columns, _ = v1.decode(b'{"instances": [1, 2.5]}', ("sqft",), (FP64,), 100)
    assert columns.values[0].tolist() == [1.0, 2.5]
    columns, _ = v1.decode(orjson.dumps({"instances": [[1.0, "red"], [2.0, None]]}), MIXED,
                           MIXED_TYPES, 100)
    assert columns.values[1] == ["red", None]


@pytest.mark.parametrize(("body", "message"), [
    ([], "request body must be a JSON object with 'instances'"),
    ({}, "request body must have 'instances' (or 'inputs')"),
    ({"instances": [], "inputs": []}, "give 'instances' or 'inputs', not both"),
    ({"instances": [[1, 2, 3, 4]], "signature_name": "x"}, "unknown key 'signature_name'"),
    ({"instances": {"sqft": 1}}, "'instances' must be a list of rows, got an object"),
    ({"instances": []}, "'instances' is empty"),
    ({"instances": [[1, 2, 3, 4]] * 101}, "'instances' has 101 rows; the limit is 100"),
    ({"instances": [[1, 2, 3, 4], [1, 2, 3]]}, "instances[1] has 3 values; the model has 4"),
    ({"instances": [[1, 2, 3, 4], 5]}, "instances[1] must be a list of 4 values in the order"),
    ({"instances": [[1, 2, True, 4]]}, "instances[0][2] ('bathrooms') must be a number, got "
     "true"),
    ({"instances": [[1, 2, "3", 4]]}, "instances[0][2] ('bathrooms') must be a number"),
    (b'{"instances": [[1, 2, 1e400, 4]]}', "is not valid JSON"),
    (b'{"instances": [[1, 2, ' + str(2**1100).encode() + b', 4]]}',
     "request body is not valid JSON: number is infinity"),
    ({"instances": [dict(zip(NAMES, [1, 2, 3, 4], strict=True)), {"sqft": 1}]},
     "instances[1]: feature 'bedrooms' is missing"),
    ({"instances": [dict(zip(NAMES, [1, 2, 3, 4], strict=True), pool=1)]},
     "instances[0]: unknown feature 'pool'"),
    ({"instances": [dict(zip(NAMES, [1, 2, 3, "x"], strict=True)),
                    dict(zip(NAMES, [1, 2, 3, None], strict=True))]},
     "instances[0]: feature 'age_years' must be a number or null, got \"x\""),
])
def test_v1_bad_bodies(body, message):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    assert message in refused(v1.decode, data, NAMES, NUMERIC, 100)


def test_v1_null_is_an_empty_value_the_model_imputes():
    model = hand_model()
    body = orjson.dumps({"instances": [[1500, 3, 2, None], [1500, 3, 2, 20]]})
    columns, _ = v1.decode(body, NAMES, NUMERIC, 100)
    assert columns.values[3] == [None, 20.0]
    imputed = [1500.0, 3.0, 2.0, float(model.x_mean[3])]
    got = predict(model, columns, lambda i: f"instances[{i}]")
    assert got.tolist() == [model.predict_columns(imputed), model.predict_columns(
        [1500.0, 3.0, 2.0, 20.0])]


def test_v1_categorical_values_must_be_strings():
    body = orjson.dumps({"instances": [[1.0, 3]]})
    assert "instances[0][1] ('color') must be a string (a category) or null, got 3" in refused(
        v1.decode, body, MIXED, MIXED_TYPES, 100)


# -- MLflow --------------------------------------------------------------------------------------


ROWS = [dict(zip(NAMES, r, strict=True)) for r in X.tolist()]


@pytest.mark.parametrize("body", [
    {"dataframe_split": {"columns": list(NAMES), "data": X.tolist()}},
    {"dataframe_split": {"columns": list(reversed(NAMES)), "data": X[:, ::-1].tolist(),
                         "index": [7, 8]}},
    {"dataframe_split": {"data": X.tolist()}},
    {"dataframe_records": ROWS},
    {"instances": ROWS},
    {"instances": X.tolist()},
    {"inputs": {name: X[:, j].tolist() for j, name in enumerate(NAMES)}},
    {"inputs": X.tolist()},
    {"inputs": ROWS, "params": {"a": 1}, "anything": "else"},
])
def test_mlflow_formats(body):
    columns, _ = mlflow.decode_json(orjson.dumps(body), NAMES, NUMERIC, 100)
    assert [c.tolist() for c in columns.values] == X.T.tolist()


@pytest.mark.parametrize(("body", "message"), [
    (b"[1]", "The input must be a JSON dictionary with exactly one of the input fields "
     "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}. Received a list."),
    (b"5", "Received a number."),
    (b'{"data": 1}', "Received dictionary with input fields: []."),
    (b'{"instances": [], "inputs": []}', "input fields: ['instances', 'inputs']."),
    (b'{"columns": ["sqft"], "data": [[1]]}', "MLflow 2.0 moved pandas 'split' bodies"),
    (b'{"dataframe_records": [}', "Invalid input. Ensure that input is a valid JSON formatted"),
    (b'{"dataframe_records": {"a": 1}}', "'dataframe_records' must be a list of rows"),
    (b'{"dataframe_records": [{"sqft": 1}]}', "dataframe_records[0]: feature 'bedrooms' is "
     "missing"),
    (b'{"dataframe_records": [{"sqft": "abc", "bedrooms": 2, "bathrooms": 3, "age_years": 4}]}',
     "dataframe_records[0]: feature 'sqft' must be a number, got \"abc\""),
    (b'{"dataframe_split": {"columns": ["sqft"], "data": [[1]]}}',
     "'dataframe_split.columns' lacks feature 'bedrooms'"),
    (b'{"dataframe_split": {"columns": ["sqft", "bedrooms", "bathrooms", "age_years", "x"], '
     b'"data": [[1, 2, 3, 4, 5]]}}', "names an unknown feature 'x'"),
    (b'{"dataframe_split": {"columns": ["sqft", "bedrooms", "bathrooms", "age_years"], '
     b'"data": [[1, 2]]}}', "dataframe_split.data[0] has 2 values; the model has 4"),
    (b'{"dataframe_split": {"data": [[1, 2, 3, 4]], "index": [1, 2]}}',
     "'dataframe_split.index' must be a list of one label per row (1)"),
    (b'{"dataframe_split": {"data": [[1, 2, 3, 4]], "orient": "x"}}', "unknown key 'orient'"),
    (b'{"dataframe_split": {"columns": ["sqft"]}}', "'dataframe_split.data' is missing"),
    (b'{"instances": [[1, 2, 3, 4], [1]]}', "instances[1] has 1 values"),
    (b'{"inputs": {"sqft": [1], "bedrooms": [1, 2], "bathrooms": [1], "age_years": [1]}}',
     "inputs['bedrooms'] has 2 values where 'sqft' has 1"),
    (b'{"inputs": {"sqft": [1], "bedrooms": [2], "bathrooms": [3], "age_years": [true]}}',
     "inputs['age_years'][0] must be a number, got true"),
    (b'{"inputs": "x"}', "'inputs' must be a list of rows or an object of columns"),
    (b'{"inputs": [[1, 2, 3, 4]], "params": []}', "'params' must be an object"),
    (b'{"inputs": []}', "'inputs' is empty"),
])
def test_mlflow_bad_bodies(body, message):
    assert message in refused(mlflow.decode_json, body, NAMES, NUMERIC, 100)


# -- CSV -----------------------------------------------------------------------------------------


def test_csv_rows_any_column_order():
    text = "age_years,sqft,bedrooms,bathrooms\r\n20,1500,3,2\n\n45.5,900,2,1\n"
    columns = csv_rows.decode_csv(text.encode(), NAMES, NUMERIC, 100)
    assert [c.tolist() for c in columns.values] == X.T.tolist()
    bom = "\ufeffsqft,color\n1,red\n2,\n3,\"blue, dark\"\n".encode()
    columns = csv_rows.decode_csv(bom, MIXED, MIXED_TYPES, 100)
    assert columns.values[1] == ["red", None, "blue, dark"]


@pytest.mark.parametrize(("text", "message"), [
    (b"", "the CSV body is empty; send a header line"),
    (b"sqft,bedrooms,bathrooms\n1,2,3\n", "CSV header: column 'age_years' is missing"),
    (b"sqft,bedrooms,bathrooms,age_years,pool\n", "CSV header: unknown column 'pool'"),
    (b"sqft,bedrooms,bathrooms,age_years,sqft\n", "CSV header: column 'sqft' is given twice"),
    (b"sqft,bedrooms,bathrooms,age_years\n", "the CSV body is empty; send at least one row"),
    (b"sqft,bedrooms,bathrooms,age_years\n1,2,3\n", "line 2: 3 fields, but the header has 4"),
    (b"sqft,bedrooms,bathrooms,age_years\n1,2,3,4\n1,x,3,4\n",
     "line 3, column 'bedrooms': 'x' is not a number"),
    (b"sqft,bedrooms,bathrooms,age_years\n1,,3,4\n1,x,3,4\n",
     "line 3, column 'bedrooms': 'x' is not a number"),
    (b"sqft,bedrooms,bathrooms,age_years\n1,nan,3,4\n", "line 2, column 'bedrooms': 'nan' is "
     "not finite"),
    (b"sqft,bedrooms,bathrooms,age_years\n1,2,3,\xff\n", "the CSV body is not UTF-8"),
    (b"sqft,bedrooms,bathrooms,age_years\n" + b"1,2,3,4\n" * 101, "the CSV body has 101 rows"),
])
def test_csv_bad_bodies(text, message):
    assert message in refused(csv_rows.decode_csv, text, NAMES, NUMERIC, 100)


def test_csv_empty_cell_is_missing_and_imputed():
    model = hand_model()
    text = b"sqft,bedrooms,bathrooms,age_years\n1500,,2,20\n1500,3,2,20\n"
    columns = csv_rows.decode_csv(text, NAMES, NUMERIC, 100)
    assert columns.values[1] == [None, 3.0]
    got = predict(model, columns, lambda i: f"line {i + 2}")
    assert got.tolist() == [model.predict_columns([1500.0, float(model.x_mean[1]), 2.0, 20.0]),
                            model.predict_columns([1500.0, 3.0, 2.0, 20.0])]


# -- one prediction step -------------------------------------------------------------------------


def test_predict_is_the_models_sum_and_names_the_first_overflowing_row():
    model = hand_model(7.0, coef=[2.0, 3.0, 4.0, 5.0])
    body = orjson.dumps({"instances": X.tolist()})
    columns, _ = v1.decode(body, NAMES, NUMERIC, 100)
    assert predict(model, columns, str).tolist() == model.predict_columns(list(X.T)).tolist()
    big = orjson.dumps({"instances": [[1, 2, 3, 4], [1e308, 2, 3, 4]]})
    columns, _ = v1.decode(big, NAMES, NUMERIC, 100)
    with pytest.raises(APIError, match="instances\\[1\\]: the prediction is not finite"):
        predict(model, columns, lambda i: f"instances[{i}]")

