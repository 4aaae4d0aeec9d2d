"""The Open Inference Protocol (v2) REST API, beside sgdserve's own.

Clients written for KServe, Triton, MLServer or Seldon speak it: server and model metadata,
health, and ``POST /v2/models/<name>[/versions/<version>]/infer`` with tensors. The model name is
the store's (``SGDSERVE_MODEL_NAME``, default ``house-price``); the one version that can be named
is the active one (activate another with ``POST /models/<id>/activate``).

An inference request sends the features in one of two layouts:

- one input per feature, named like it, each of shape ``[n]`` or ``[n, 1]`` (columns by name:
  what ``GET /v2/models/<name>`` lists);
- one input of shape ``[n, d]``, any name, the features in that same order (row-major, the
  protocol's flat ``data`` or nested lists).

The answer is the output ``predict``, of shape ``[n]`` and datatype ``FP64``, and each row's
id, ``prediction_id`` (``BYTES``, for ``POST /feedback``). ``parameters.interval`` (a level in
(0, 1)) adds ``interval_lower`` and ``interval_upper``; ``parameters.explain`` (true) adds
``contributions``, ``[n, d]`` with the feature order and the base value in its parameters.
Values of any numeric datatype are read as float64 (integer types must hold integers,
unsigned ones no negative value); ``BOOL`` and ``BYTES`` are refused. Errors are the
protocol's ``{"error": message}``, with sgdserve's stable ``code`` beside it (see
``service.http.errors.error_response``).

Flat numeric ``data`` is decoded by msgspec straight into typed lists and packed into arrays
without a Python pass per value (:func:`service.http.rows.float_array`); anything else (nested data,
wrong types, missing keys) is parsed with orjson and checked key by key, to name what is wrong.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, NamedTuple

import msgspec
import numpy as np
import orjson
from flask import Blueprint, Response, request
from msgspec import UNSET

from .. import __version__
from .body import json_text, parse_json, read_json_body, release_after_sending
from .errors import APIError, json_response
from .loop import batch_ids_json, check_request_id
from .predict import _options
from .reload import check_ready
from .rows import FLOAT_TYPES, NUMERIC_TYPES, UINT_TYPES, float_array
from .state import ServiceState, state

bp = Blueprint("v2", __name__, url_prefix="/v2")

OUTPUT = "predict"
PLATFORM = "sgdserve_linear"
_REQUEST_KEYS = ("id", "parameters", "inputs", "outputs")
_INPUT_KEYS = ("name", "shape", "datatype", "parameters", "data")


# -- metadata and health -----------------------------------------------------------------------


@bp.get("")
@bp.get("/")
def server_metadata() -> Response:
    return json_response({"name": "sgdserve", "version": __version__, "extensions": []})


@bp.get("/health/live")
def server_live() -> Response:
    return json_response({"live": True})


@bp.get("/health/ready")
def server_ready() -> Response:
    return _readiness({})


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None) -> Response:
    served, model = _served(state(), name, version)
    tensors = [{"name": f, "datatype": "FP64", "shape": [-1]} for f in model.feature_names]
    return json_response(
        {
            "name": name,
            "versions": [served],
            "platform": PLATFORM,
            "inputs": tensors,
            "outputs": [{"name": OUTPUT, "datatype": "FP64", "shape": [-1]},
                        {"name": "prediction_id", "datatype": "BYTES", "shape": [-1]}],
        },
        headers={"X-Model-Version": served},
    )


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> Response:
    st = state()
    _check_name(st, name)
    served, _ = st.holder.get()
    if version is not None and served is not None and version != served:
        raise _not_served(name, version, served)
    return _readiness({"name": name})


def _readiness(body: dict[str, Any]) -> Response:
    try:
        version = check_ready(state().holder)
    except APIError as exc:
        return json_response(dict(body, ready=False, error=exc.message), 503)
    return json_response(dict(body, ready=True), headers={"X-Model-Version": version})


# -- inference ---------------------------------------------------------------------------------


class Tensor(NamedTuple):
    name: str
    shape: list[int]
    datatype: str
    values: np.ndarray  # flat, row-major, float64


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    st = state()
    data = read_json_body(request._get_current_object())
    served, model = _served(st, name, version)
    parsed = _decode_fast(data)
    if parsed is None:
        parsed = _decode_general(parse_json(data))
    request_id, tensors, outputs, source = parsed
    for output in outputs:
        if output not in LOOP_OUTPUTS:
            raise _invalid(f"unknown output {output[:50]!r}; this model's outputs are "
                           f"{', '.join(LOOP_OUTPUTS)}", code="unknown_output")
    level, explain = _loop_options(model, source)
    X = _columns(tensors, model.feature_names, st.settings.max_batch_rows)
    y = model.predict_columns(X)
    if not np.isfinite(y).all():
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise _invalid(f"row {i}: the prediction is not finite; feature values are too large")
    n = len(y)
    st.metrics.rows_predicted(n)
    client_id = request.environ.get("HTTP_X_REQUEST_ID")
    client_id = check_request_id(client_id) if client_id is not None else request_id
    pid = st.loop.ids.issue(n)
    body: dict[str, Any] = {"model_name": name, "model_version": served}
    if request_id is not None:
        body["id"] = request_id
    predictions = orjson.dumps(y, option=orjson.OPT_SERIALIZE_NUMPY)
    body["outputs"] = [{"name": OUTPUT, "shape": [n], "datatype": "FP64",
                        "data": orjson.Fragment(predictions)},
                       {"name": "prediction_id", "shape": [n], "datatype": "BYTES",
                        "data": orjson.Fragment(batch_ids_json(pid, n))}]
    logged = None
    if level is not None:
        lower, upper = model.calibration.interval(y, level)
        body["outputs"] += [
            {"name": "interval_lower", "shape": [n], "datatype": "FP64", "data": lower,
             "parameters": {"level": level}},
            {"name": "interval_upper", "shape": [n], "datatype": "FP64", "data": upper,
             "parameters": {"level": level}}]
        logged = {"level": level, "half_width": model.calibration.half_width(level),
                  "scale": model.calibration.scale}
    if explain:
        explainer = model.explainer()
        design = (X, ()) if model.plain else _design(model, X)
        parts = explainer.explain(*design)
        contributions = np.column_stack([np.broadcast_to(np.asarray(parts[f], np.float64), (n,))
                                         for f in model.feature_names])
        body["outputs"].append({
            "name": "contributions", "shape": [n, len(model.feature_names)], "datatype": "FP64",
            "data": contributions.ravel(),
            "parameters": {"features": list(model.feature_names),
                           "base_value": explainer.base_value}})
    headers = {"X-Model-Version": served, "X-Prediction-Id": pid,
               "X-Request-Id": client_id or pid}
    response = json_response(body, headers=headers)
    st.loop.columns(pid, served, dict(zip(model.feature_names, X, strict=True)), predictions, n,
                    logged, client_id)
    release_after_sending(response, source, data)
    return response


# Outputs a client may ask for by name (parameters.interval and .explain add the last three).
LOOP_OUTPUTS = (OUTPUT, "prediction_id", "interval_lower", "interval_upper", "contributions")


def _loop_options(model: Any, source: Any) -> tuple[float | None, bool]:
    """``parameters.interval`` and ``parameters.explain`` of a request, checked as /predict's."""
    params = source.get("parameters") if type(source) is dict else source.parameters
    if not isinstance(params, dict):
        return None, False
    try:
        return _options(model, params.get("interval", UNSET), params.get("explain", UNSET))
    except APIError as exc:
        raise _invalid(f"parameters: {exc.message}", code=exc.code) from None


def _design(model: Any, X: np.ndarray) -> tuple[Any, Any]:
    encoded = model.encode(list(X))
    return encoded.values, encoded.codes


def _check_name(st: ServiceState, name: str) -> None:
    if name != st.settings.model_name:
        raise APIError(
            f"model {name[:100]!r} is not served here; this server serves "
            f"{st.settings.model_name!r}",
            status_code=404,
            code="model_not_found",
        )


def _served(st: ServiceState, name: str, version: str | None) -> tuple[str, Any]:
    """The (version, model) this worker serves, checked against the name and version asked."""
    _check_name(st, name)
    served, model = st.served()
    if version is not None and version != served:
        raise _not_served(name, version, served)
    return served, model


def _not_served(name: str, version: str, served: str) -> APIError:
    return APIError(
        f"model {name!r} version {version[:100]!r} is not being served; the active version is "
        f"{served} (POST /models/<id>/activate serves another)",
        status_code=404,
        code="version_not_found",
    )


def _invalid(message: str, code: str = "invalid_input") -> APIError:
    return APIError(message, code=code)


# -- decoding: the fast path for flat numeric data, the general one for everything else ------


class _Input(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    name: str
    shape: list[Annotated[int, msgspec.Meta(ge=0)]]
    datatype: str
    data: list[float]
    parameters: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class _Output(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    name: str
    parameters: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class _Request(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    # UNSET, not None, as the defaults: a null is refused (by name, on the general path).
    inputs: list[_Input]
    id: str | msgspec.UnsetType = msgspec.UNSET
    parameters: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    outputs: list[_Output] | msgspec.UnsetType = msgspec.UNSET


_request_decoder = msgspec.json.Decoder(_Request)

# (id, inputs, requested outputs, the decoded body: held until the answer is sent)
Parsed = tuple[str | None, list[Tensor], list[str], Any]


def _decode_fast(data: bytes) -> Parsed | None:
    """A request whose every input has flat numeric data, else None."""
    try:
        req = _request_decoder.decode(data)
    except msgspec.MsgspecError:
        return None
    tensors = [Tensor(i.name, i.shape, i.datatype, float_array(i.data)) for i in req.inputs]
    outputs = [] if req.outputs is msgspec.UNSET else [o.name for o in req.outputs]
    return (None if req.id is msgspec.UNSET else req.id), tensors, outputs, req


def _decode_general(body: Any) -> Parsed:
    """Check a parsed request key by key, naming the first problem."""
    if type(body) is not dict:
        raise _invalid("request body must be a JSON object with 'inputs' (a list of tensors)")
    for key in body:
        if key not in _REQUEST_KEYS:
            raise _invalid(f"unknown key {key[:50]!r}; an inference request has "
                           f"{', '.join(_REQUEST_KEYS)}")
    request_id = body.get("id")
    if "id" in body and type(request_id) is not str:
        raise _invalid("'id' must be a string")
    if "parameters" in body and type(body["parameters"]) is not dict:
        raise _invalid("'parameters' must be an object")
    inputs = body.get("inputs")
    if type(inputs) is not list:
        raise _invalid("'inputs' must be a list of input tensors"
                       if "inputs" in body else "'inputs' is missing")
    tensors = [_tensor(item, k) for k, item in enumerate(inputs)]
    outputs = body.get("outputs", [])
    if type(outputs) is not list:
        raise _invalid("'outputs' must be a list of objects with a 'name'")
    names = []
    for k, item in enumerate(outputs):
        if type(item) is not dict or type(item.get("name")) is not str:
            raise _invalid(f"outputs[{k}] must be an object with a 'name' string")
        extra = [key for key in item if key not in ("name", "parameters")]
        if extra:
            raise _invalid(f"outputs[{k}]: unknown key {extra[0][:50]!r}")
        names.append(item["name"])
    return request_id, tensors, names, body


def _tensor(item: Any, k: int) -> Tensor:
    where = f"inputs[{k}]"
    if type(item) is not dict:
        raise _invalid(f"{where} must be an object with name, shape, datatype and data")
    for key in ("name", "shape", "datatype", "data"):
        if key not in item:
            raise _invalid(f"{where}: {key!r} is missing")
    for key in item:
        if key not in _INPUT_KEYS:
            raise _invalid(f"{where}: unknown key {key[:50]!r}")
    name, shape, datatype = item["name"], item["shape"], item["datatype"]
    if type(name) is not str:
        raise _invalid(f"{where}: 'name' must be a string")
    where = f"{where} ({name[:50]!r})"
    if type(shape) is not list or any(type(s) is not int or s < 0 for s in shape):
        raise _invalid(f"{where}: 'shape' must be a list of non-negative integers")
    if type(datatype) is not str:
        raise _invalid(f"{where}: 'datatype' must be a string such as \"FP64\"")
    if "parameters" in item and type(item["parameters"]) is not dict:
        raise _invalid(f"{where}: 'parameters' must be an object")
    data = item["data"]
    if type(data) is not list:
        raise _invalid(f"{where}: 'data' must be a list of numbers (flat, or nested as the "
                       "shape)")
    nested = any(type(v) is list for v in data)
    if nested and len(shape) not in (1, 2):
        raise _invalid(_dimensions(where, shape))  # before following the nesting down
    flat: list[float] = []
    _flatten(data, shape if nested else None, flat, where, "data")
    return Tensor(name, shape, datatype, np.array(flat, dtype=np.float64))


def _flatten(data: list[Any], shape: list[int] | None, out: list[float], where: str,
             path: str) -> None:
    """Append the numbers of ``data`` to ``out``; nested lists must follow ``shape``."""
    if shape is not None:
        if not shape or len(data) != shape[0]:
            raise _invalid(f"{where}: {path} has {len(data)} items where shape {shape} needs "
                           f"{shape[0] if shape else 'none'}; nest data as the shape, or send "
                           "it flat")
        if len(shape) > 1:
            for i, sub in enumerate(data):
                if type(sub) is not list:
                    raise _invalid(f"{where}: {path}[{i}] must be a list (nested as the shape)")
                _flatten(sub, shape[1:], out, where, f"{path}[{i}]")
            return
    for i, value in enumerate(data):
        if type(value) not in (int, float):
            raise _invalid(f"{where}: {path}[{i}] must be a number, got {json_text(value)}")
        try:
            out.append(float(value))
        except OverflowError:
            raise _invalid(f"{where}: {path}[{i}] is out of range for a float") from None


# -- tensors to the model's columns ------------------------------------------------------------


def _columns(tensors: list[Tensor], names: tuple[str, ...], limit: int) -> np.ndarray:
    """The features as a d x n matrix in ``names`` order, from either layout."""
    if not tensors:
        raise _invalid("'inputs' is empty; send one input per feature or one [n, d] input")
    for k, t in enumerate(tensors):
        _check_values(t, k)
    d = len(names)
    if len(tensors) == 1 and (d > 1 or tensors[0].name not in names):
        t = tensors[0]
        if len(t.shape) != 2 or t.shape[1] != d:
            raise _invalid(
                f"input {t.name[:50]!r} has shape {t.shape}; send one [n, {d}] input with the "
                f"features in the order {', '.join(names)}, or one input per feature"
            )
        n = _rows(t.shape[0], limit)
        return np.ascontiguousarray(t.values.reshape(n, d).T)
    seen: dict[str, Tensor] = {}
    for t in tensors:
        if t.name not in names:
            raise _invalid(
                f"unknown input {t.name[:50]!r}; this model's inputs are {', '.join(names)} "
                f"(or one [n, {d}] input)"
            )
        if t.name in seen:
            raise _invalid(f"input {t.name!r} is given twice")
        if len(t.shape) not in (1, 2) or len(t.shape) == 2 and t.shape[1] != 1:
            raise _invalid(f"input {t.name!r} has shape {t.shape}; a feature's input has "
                           "shape [n] or [n, 1]")
        seen[t.name] = t
    missing = [name for name in names if name not in seen]
    if missing:
        raise _invalid(f"no input for feature {missing[0]!r}; send one input per feature "
                       f"({', '.join(names)}) or one [n, {d}] input")
    n = seen[names[0]].shape[0]
    for name in names:
        if seen[name].shape[0] != n:
            raise _invalid(f"input {name!r} has {seen[name].shape[0]} rows where "
                           f"{names[0]!r} has {n}; every feature needs one value per row")
    _rows(n, limit)
    X = np.empty((d, n))
    for j, name in enumerate(names):
        X[j] = seen[name].values
    return X


def _dimensions(where: str, shape: list[int]) -> str:
    return (f"{where}: shape {shape[:10]} has {len(shape)} dimensions; an input has 1 ([n]) "
            "or 2 ([n, 1], [n, d])")


def _check_values(t: Tensor, k: int) -> None:
    where = f"inputs[{k}] ({t.name[:50]!r})"
    if len(t.shape) not in (1, 2):
        raise _invalid(_dimensions(where, t.shape))
    if t.datatype not in NUMERIC_TYPES:
        raise _invalid(f"{where}: datatype {t.datatype[:20]!r} is not supported; send numbers "
                       "as FP64 (or another numeric type)")
    size = math.prod(t.shape)
    if size != t.values.size:
        raise _invalid(f"{where}: shape {t.shape} holds {size} values, data has "
                       f"{t.values.size}")
    if t.datatype not in FLOAT_TYPES:
        bad = np.flatnonzero(t.values != np.trunc(t.values))
        if bad.size:
            value = float(t.values[bad[0]])
            raise _invalid(f"{where}: data[{bad[0]}] is {value!r}, not an integer as "
                           f"{t.datatype} says")
        if t.datatype in UINT_TYPES and (t.values < 0).any():
            i = int(np.flatnonzero(t.values < 0)[0])
            raise _invalid(f"{where}: data[{i}] is negative, but {t.datatype} is unsigned")


def _rows(n: int, limit: int) -> int:
    if n == 0:
        raise APIError("the batch is empty; send at least one row", code="empty_batch")
    if n > limit:
        raise APIError(f"the batch has {n} rows; the limit is {limit} (SGDSERVE_MAX_BATCH_ROWS)",
                       code="too_many_rows")
    return n
