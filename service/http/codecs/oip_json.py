"""The Open Inference Protocol's JSON inference request and response.

The request is the JSON object of the protocol's REST API; with the binary tensor extension it is
the JSON header in front of the raw tensors, and inputs say ``parameters.binary_data_size``
instead of giving ``data`` (:mod:`.oip_binary` cuts the body in two). Keys the protocol allows
or its clients add are accepted: ``id``, ``model_name`` and ``model_version`` (KServe's client
sends both), ``parameters`` (Triton's client merges ``priority``, ``timeout`` and its own into
it, and asks for binary outputs with ``binary_data_output``), and per output ``parameters``
(``binary_data``). Unknown keys are refused, at the top and inside every input and output.

A request whose inputs all have flat numeric ``data`` (or binary data) is decoded by msgspec
straight into typed lists, packed into arrays with no Python pass per value
(:func:`service.http.rows.float_array`). Anything else (nested data, strings, wrong types,
missing keys) is parsed with orjson and checked key by key, to name what is wrong; tests hold
the two paths to the same answers.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

import msgspec
import numpy as np
import orjson

from ..body import json_type
from ..errors import APIError
from ..rows import float_array
from .tensors import NUMERIC_TYPES, InputHeader

__all__ = ["InferRequest", "OUTPUT", "RequestedOutput", "decode_request", "response_body"]

OUTPUT = "predict"  # the one output of every model served here
_REQUEST_KEYS = ("id", "model_name", "model_version", "parameters", "inputs", "outputs")
_INPUT_KEYS = ("name", "shape", "datatype", "parameters", "data")
_OUTPUT_KEYS = ("name", "parameters")


class RequestedOutput(NamedTuple):
    name: str
    binary: bool | None  # parameters.binary_data; None: as the request's binary_data_output


class InferRequest(NamedTuple):
    id: str | None
    model_name: str | None
    model_version: str | None
    inputs: list[InputHeader]
    outputs: list[RequestedOutput]
    binary_output: bool  # parameters.binary_data_output: outputs not asked otherwise are binary
    parsed: Any  # the decoded body: the caller holds it until the answer is sent


def invalid(message: str) -> APIError:
    return APIError(message, code="invalid_input")


# -- the fast path -----------------------------------------------------------------------------


class _Input(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    name: str
    shape: list[Annotated[int, msgspec.Meta(ge=0)]]
    datatype: str
    data: list[float] | msgspec.UnsetType = msgspec.UNSET
    parameters: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class _Output(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    name: str
    parameters: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class _Request(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    # UNSET, not None, as the defaults: a null is refused (by name, on the general path).
    inputs: list[_Input]
    id: str | msgspec.UnsetType = msgspec.UNSET
    model_name: str | msgspec.UnsetType = msgspec.UNSET
    model_version: str | msgspec.UnsetType = msgspec.UNSET
    parameters: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    outputs: list[_Output] | msgspec.UnsetType = msgspec.UNSET


_request_decoder = msgspec.json.Decoder(_Request)


def _floats(values: list[float]) -> np.ndarray:
    """Floats as a float64 array, bit for bit: packed through MessagePack for a long list (no
    Python pass per value), plainly for a short one (where packing costs more)."""
    return float_array(values) if len(values) > 64 else np.array(values, dtype=np.float64)


def _unset(value: Any) -> Any:
    return None if value is msgspec.UNSET else value


def decode_fast(data: bytes | memoryview) -> InferRequest | None:
    """The request, if msgspec takes it whole and every input with ``data`` has flat numbers of
    a numeric datatype; else None (the general path decides, and names any problem)."""
    try:
        req = _request_decoder.decode(data)
    except msgspec.MsgspecError:
        return None
    inputs = []
    for k, item in enumerate(req.inputs):
        if item.data is not msgspec.UNSET and item.datatype not in NUMERIC_TYPES:
            return None
        size = _binary_size(_unset(item.parameters), k)
        if (item.data is msgspec.UNSET) == (size is None):
            return None  # neither data nor binary data, or both: named by the general path
        values = None if item.data is msgspec.UNSET else _floats(item.data)
        inputs.append(InputHeader(item.name, item.shape, item.datatype, values, size))
    outputs = [] if req.outputs is msgspec.UNSET else [
        RequestedOutput(o.name, _binary_data(_unset(o.parameters), k))
        for k, o in enumerate(req.outputs)]
    return InferRequest(_unset(req.id), _unset(req.model_name), _unset(req.model_version),
                        inputs, outputs, _binary_output(_unset(req.parameters)), req)


# -- parameters: one check for both paths ------------------------------------------------------


def _binary_size(parameters: dict[str, Any] | None, k: int) -> int | None:
    if not parameters:
        return None
    if "shared_memory_region" in parameters:
        raise invalid(f"inputs[{k}]: the shared-memory extension is not supported; send the "
                      "values as 'data' or as binary data (parameters.binary_data_size)")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise invalid(f"inputs[{k}]: parameters.binary_data_size must be a non-negative "
                      "integer (the input's bytes after the JSON header)")
    return size


def _binary_data(parameters: dict[str, Any] | None, k: int) -> bool | None:
    if not parameters:
        return None
    if "classification" in parameters:
        raise invalid(f"outputs[{k}]: the classification extension is not supported; this "
                      "model's output is a regression value")
    if "shared_memory_region" in parameters:
        raise invalid(f"outputs[{k}]: the shared-memory extension is not supported")
    binary = parameters.get("binary_data")
    if binary is not None and type(binary) is not bool:
        raise invalid(f"outputs[{k}]: parameters.binary_data must be true or false")
    return binary


def _binary_output(parameters: dict[str, Any] | None) -> bool:
    if not parameters:
        return False
    binary = parameters.get("binary_data_output", False)
    if type(binary) is not bool:
        raise invalid("parameters.binary_data_output must be true or false")
    return binary


# -- the general path --------------------------------------------------------------------------


def decode_request(data: bytes | memoryview, *, what: str = "request body",
                   hint: str = "") -> InferRequest:
    """The inference request in ``data`` (the whole body, or the binary extension's JSON
    header), or a 400 naming the first problem."""
    fast = decode_fast(data)
    if fast is not None:
        return fast
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise APIError(f"{what} is not valid JSON: {exc}{hint}", code="invalid_json") from None
    return decode_general(body)


def decode_general(body: Any) -> InferRequest:
    """Check a parsed request key by key, naming the first problem."""
    if type(body) is not dict:
        raise invalid("request body must be a JSON object with 'inputs' (a list of tensors), "
                      f"got {json_type(body)}")
    for key in body:
        if key not in _REQUEST_KEYS:
            raise invalid(f"unknown key {key[:50]!r}; an inference request has "
                          f"{', '.join(_REQUEST_KEYS)}")
    for key in ("id", "model_name", "model_version"):
        if key in body and type(body[key]) is not str:
            raise invalid(f"{key!r} must be a string")
    parameters = body.get("parameters")
    if "parameters" in body and type(parameters) is not dict:
        raise invalid("'parameters' must be an object")
    inputs = body.get("inputs")
    if type(inputs) is not list:
        raise invalid("'inputs' must be a list of input tensors"
                      if "inputs" in body else "'inputs' is missing")
    headers = [_input(item, k) for k, item in enumerate(inputs)]
    outputs = body.get("outputs", [])
    if type(outputs) is not list:
        raise invalid("'outputs' must be a list of objects with a 'name'")
    requested = []
    for k, item in enumerate(outputs):
        if type(item) is not dict or type(item.get("name")) is not str:
            raise invalid(f"outputs[{k}] must be an object with a 'name' string")
        extra = [key for key in item if key not in _OUTPUT_KEYS]
        if extra:
            raise invalid(f"outputs[{k}]: unknown key {extra[0][:50]!r}")
        if "parameters" in item and type(item["parameters"]) is not dict:
            raise invalid(f"outputs[{k}]: 'parameters' must be an object")
        requested.append(RequestedOutput(item["name"], _binary_data(item.get("parameters"), k)))
    return InferRequest(body.get("id"), body.get("model_name"), body.get("model_version"),
                        headers, requested, _binary_output(parameters), body)


def _input(item: Any, k: int) -> InputHeader:
    where = f"inputs[{k}]"
    if type(item) is not dict:
        raise invalid(f"{where} must be an object with name, shape, datatype and data")
    for key in ("name", "shape", "datatype"):
        if key not in item:
            raise invalid(f"{where}: {key!r} is missing")
    for key in item:
        if key not in _INPUT_KEYS:
            raise invalid(f"{where}: unknown key {key[:50]!r}")
    name, shape, datatype = item["name"], item["shape"], item["datatype"]
    if type(name) is not str:
        raise invalid(f"{where}: 'name' must be a string")
    where = f"{where} ({name[:50]!r})"
    if type(shape) is not list or any(type(s) is not int or s < 0 for s in shape):
        raise invalid(f"{where}: 'shape' must be a list of non-negative integers")
    if type(datatype) is not str:
        raise invalid(f"{where}: 'datatype' must be a string such as \"FP64\"")
    parameters = item.get("parameters")
    if "parameters" in item and type(parameters) is not dict:
        raise invalid(f"{where}: 'parameters' must be an object")
    size = _binary_size(parameters, k)
    if "data" not in item and size is None:
        raise invalid(f"inputs[{k}]: 'data' is missing (or parameters.binary_data_size, for "
                      "binary tensor data)")
    if "data" in item and size is not None:
        raise invalid(f"{where}: give 'data' or parameters.binary_data_size, not both")
    data = item.get("data")
    if "data" in item and type(data) is list and any(type(v) is list for v in data) \
            and len(shape) not in (1, 2):
        # Refused before following the nesting down (orjson parses 1024 levels).
        raise invalid(f"{where}: shape {shape[:10]} has {len(shape)} dimensions; an input has "
                      "1 ([n]) or 2 ([n, 1], [n, d])")
    return InputHeader(name, shape, datatype, data if "data" in item else None, size)


# -- the response ------------------------------------------------------------------------------


def response_body(model_name: str, version: str, request_id: str | None) -> dict[str, Any]:
    """The response's fields before its outputs (KServe's client needs ``model_name``)."""
    body: dict[str, Any] = {"model_name": model_name, "model_version": version}
    if request_id is not None:
        body["id"] = request_id
    return body
