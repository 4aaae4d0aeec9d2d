"""The Open Inference Protocol (v2) REST API, beside sgdserve's own.

Clients written for KServe, Triton, MLServer or Seldon speak it: server and model metadata,
health, and ``POST /v2/models/<name>[/versions/<version>]/infer`` with tensors, as JSON or with
the binary tensor data extension. The model name is the store's (``SGDSERVE_MODEL_NAME``,
default ``house-price``); the one version that can be named is the active one (activate another
with ``POST /models/<id>/activate``), by its id, its number among the stored versions, or as
``active`` or ``latest`` (:func:`resolve_version`).

An infer body is read as its clients send it: with no ``Content-Type`` (Triton's sync client),
``application/octet-stream`` (its asyncio client) or a JSON type, gzip or deflate compressed or
not; it is binary when ``Inference-Header-Content-Length`` says so, JSON otherwise. Decoding is
in :mod:`service.http.codecs` (``oip_json``, ``oip_binary``, ``tensors``); prediction is the sum
``/predict`` uses. Errors are the protocol's ``{"error": message}``, with sgdserve's stable
``code`` beside it (``service.http.errors.error_response``). The routes of extensions sgdserve
does not implement (model repository, configuration, statistics, shared memory, trace, logging)
answer 501 saying so, in the same shape.

The answer is the output ``predict`` (``FP64``, shape ``[n]``) and each row's id,
``prediction_id`` (``BYTES``, for ``POST /feedback``). ``parameters.interval`` (a level in
(0, 1)) adds ``interval_lower`` and ``interval_upper``; ``parameters.explain`` (true) adds
``contributions``, ``[n, d]`` with the feature order and the base value in its parameters.
These loop outputs are always JSON data, also in a binary answer. The rows are logged as
columns (``service.http.loop``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from flask import Blueprint, Request, Response, request
from msgspec import UNSET
from werkzeug.datastructures import Headers

from .. import __version__
from ..errors import IntegrityError
from ..store.ids import is_version_id
from .body import read_body, release_after_sending
from .codecs.columns import input_datatypes, predict
from .codecs.oip_binary import HEADER, WSGI_HEADER, encode, split
from .codecs.oip_json import OUTPUT, InferRequest, decode_request, response_body
from .codecs.tensors import decode_tensors
from .errors import APIError, json_response
from .loop import batch_ids_json, check_request_id
from .predict import _options
from .reload import check_ready
from .state import ServiceState, state

bp = Blueprint("v2", __name__, url_prefix="/v2")

PLATFORM = "sgdserve_linear"
EXTENSIONS = ("binary_tensor_data",)  # what GET /v2 lists: only what is implemented
VERSION_ALIASES = ("active", "latest")
_CONTENT_TYPES = frozenset({"", "application/json", "application/octet-stream"})

# Routes of protocol extensions (most of them Triton's) that clients call and sgdserve does not
# implement: each answers 501 naming its extension. The OpenAPI document lists them from here.
UNSUPPORTED = (
    ("model repository", "POST", ("/repository/index", "/repository/models/<name>/load",
                                  "/repository/models/<name>/unload")),
    ("model configuration", "GET", ("/models/<name>/config",
                                    "/models/<name>/versions/<version>/config")),
    ("statistics", "GET", ("/models/stats", "/models/<name>/stats",
                           "/models/<name>/versions/<version>/stats")),
    ("system shared memory", "GET", ("/systemsharedmemory/status",
                                     "/systemsharedmemory/region/<region>/status")),
    ("system shared memory", "POST", ("/systemsharedmemory/region/<region>/register",
                                      "/systemsharedmemory/unregister",
                                      "/systemsharedmemory/region/<region>/unregister")),
    ("CUDA shared memory", "GET", ("/cudasharedmemory/status",
                                   "/cudasharedmemory/region/<region>/status")),
    ("CUDA shared memory", "POST", ("/cudasharedmemory/region/<region>/register",
                                    "/cudasharedmemory/unregister",
                                    "/cudasharedmemory/region/<region>/unregister")),
    ("trace", "GET", ("/trace/setting", "/models/<name>/trace/setting")),
    ("trace", "POST", ("/trace/setting", "/models/<name>/trace/setting")),
    ("logging", "GET", ("/logging",)),
    ("logging", "POST", ("/logging",)),
)


# -- metadata and health -----------------------------------------------------------------------


@bp.get("")
@bp.get("/")
def server_metadata() -> Response:
    return json_response({"name": "sgdserve", "version": __version__,
                          "extensions": list(EXTENSIONS)})


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
    tensors = [{"name": f, "datatype": datatype, "shape": [-1]}
               for f, datatype in zip(model.feature_names, input_datatypes(model), strict=True)]
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
    st.check_name(name)
    served, _ = st.holder.get()
    if version is not None and served is not None:
        _check_version(st, name, version, served)
    return _readiness({"name": name})


def _readiness(body: dict[str, Any]) -> Response:
    try:
        version = check_ready(state().holder)
    except APIError as exc:
        return json_response(dict(body, ready=False, error=exc.message), 503)
    return json_response(dict(body, ready=True), headers={"X-Model-Version": version})


def _unsupported(extension: str) -> Any:
    def view(**_: str) -> Response:
        raise APIError(
            f"the {extension} extension is not supported by sgdserve: it serves one model, "
            f"{state().settings.model_name!r}, at its active version; GET /v2 lists the "
            f"extensions it supports ({', '.join(EXTENSIONS)})",
            status_code=501,
            code="unsupported_extension",
        )
    return view


for _extension, _method, _rules in UNSUPPORTED:
    for _rule in _rules:
        bp.add_url_rule(_rule, f"unsupported_{_method}_{_rule}", _unsupported(_extension),
                        methods=[_method])


# -- inference ---------------------------------------------------------------------------------


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    st = state()
    req = request._get_current_object()
    _check_content_type(req)
    data = read_body(req)
    served, model = _served(st, name, version)
    parsed, raw = _decode(req, data)
    if parsed.model_name is not None and parsed.model_name != name:
        raise APIError(f"'model_name' is {parsed.model_name[:100]!r}, but the path names "
                       f"{name[:100]!r}", code="invalid_input")
    if parsed.model_version is not None:
        _check_version(st, name, parsed.model_version, served)
    binary = _binary_answer(parsed)
    level, explain = _loop_options(model, parsed.parsed)
    names = model.feature_names
    limit = st.settings.max_batch_rows
    columns = decode_tensors(parsed.inputs, raw, names, input_datatypes(model), limit)
    y = predict(model, columns, lambda i: f"row {i}", code="invalid_input")
    n = len(y)
    st.metrics.rows_predicted(n)
    client_id = req.environ.get("HTTP_X_REQUEST_ID")
    client_id = check_request_id(client_id) if client_id is not None else parsed.id
    pid = st.loop.ids.issue(n)
    predictions = orjson.dumps(y, option=orjson.OPT_SERIALIZE_NUMPY)
    extra: list[dict[str, Any]] = [
        {"name": "prediction_id", "shape": [n], "datatype": "BYTES",
         "data": orjson.Fragment(batch_ids_json(pid, n))}]
    logged = None
    if level is not None:
        lower, upper = model.calibration.interval(np.asarray(y, dtype=np.float64), level)
        extra += [
            {"name": "interval_lower", "shape": [n], "datatype": "FP64", "data": lower,
             "parameters": {"level": level}},
            {"name": "interval_upper", "shape": [n], "datatype": "FP64", "data": upper,
             "parameters": {"level": level}}]
        logged = {"level": level, "half_width": model.calibration.half_width(level),
                  "scale": model.calibration.scale}
    if explain:
        explainer = model.explainer()
        encoded = model.encode(columns.values)
        parts = explainer.explain(encoded.values, encoded.codes)
        contributions = np.column_stack([np.broadcast_to(np.asarray(parts[f], np.float64), (n,))
                                         for f in names])
        extra.append({
            "name": "contributions", "shape": [n, len(names)], "datatype": "FP64",
            "data": contributions.ravel(),
            "parameters": {"features": list(names), "base_value": explainer.base_value}})
    body, headers = encode(response_body(name, served, parsed.id), [(OUTPUT, y, binary)],
                           extra)
    items = list(headers.items())
    items += [("X-Model-Version", served), ("X-Prediction-Id", pid),
              ("X-Request-Id", client_id or pid)]
    response = Response(body, headers=Headers(items))
    st.loop.columns(pid, served, dict(zip(names, columns.values, strict=True)), predictions, n,
                    logged, client_id, after=response if columns.rows > 1 else None)
    if columns.rows > 1:  # a large parsed body is freed after the answer has left
        release_after_sending(response, parsed.parsed, data)
    return response


# Outputs a client may ask for by name (parameters.interval and .explain add the last three).
LOOP_OUTPUTS = (OUTPUT, "prediction_id", "interval_lower", "interval_upper", "contributions")


def _loop_options(model: Any, source: Any) -> tuple[float | None, bool]:
    """``parameters.interval`` and ``parameters.explain`` of a request, checked as /predict's."""
    params = source.get("parameters") if type(source) is dict else getattr(source, "parameters",
                                                                           None)
    if not isinstance(params, dict):
        return None, False
    try:
        return _options(model, params.get("interval", UNSET), params.get("explain", UNSET))
    except APIError as exc:
        raise APIError(f"parameters: {exc.message}", code=exc.code) from None


def _check_content_type(req: Request) -> None:
    content_type = req.environ.get("CONTENT_TYPE", "")
    if content_type == "application/json":  # what most JSON clients send: no parsing needed
        return
    mimetype = req.mimetype
    if mimetype not in _CONTENT_TYPES and not mimetype.endswith("+json"):
        raise APIError(
            f"Content-Type {mimetype!r} is not one an inference request is sent with; send "
            "application/json (or none), or application/octet-stream with binary tensor data",
            status_code=415,
            code="unsupported_media_type",
        )


def _decode(req: Request, data: bytes) -> tuple[InferRequest, memoryview | None]:
    """The request's JSON (the whole body, or the binary extension's header) decoded, and the
    bytes after that header (None without the binary extension)."""
    length = req.environ.get(WSGI_HEADER)
    if length is None:
        try:
            return decode_request(data), None
        except APIError as exc:
            if exc.code != "invalid_json" or not _looks_binary(req, data):
                raise
            raise APIError(f"{exc.message}; a body with binary tensor data needs the {HEADER} "
                           "header (the byte length of its JSON part: the binary tensor data "
                           "extension)", code="invalid_json") from None
    head, raw = split(data, length)
    what = f"the JSON header (the first {len(head)} bytes of the body, {HEADER})"
    return decode_request(head, what=what), raw


def _looks_binary(req: Request, data: bytes) -> bool:
    if req.mimetype == "application/octet-stream":
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _binary_answer(parsed: InferRequest) -> bool:
    """Whether the one output is answered as binary data, after checking the outputs asked."""
    binary = parsed.binary_output
    seen = False
    for output in parsed.outputs:
        if output.name != OUTPUT:
            if output.name in LOOP_OUTPUTS:  # always answered (the last three when asked)
                continue
            raise APIError(f"unknown output {output.name[:50]!r}; this model's outputs are "
                           f"{', '.join(LOOP_OUTPUTS)}", code="unknown_output")
        if seen:
            raise APIError(f"output {OUTPUT!r} is requested twice", code="invalid_input")
        seen = True
        if output.binary is not None:
            binary = output.binary
    return binary


# -- names and versions ------------------------------------------------------------------------



def _served(st: ServiceState, name: str, version: str | None) -> tuple[str, Any]:
    """The (version, model) this worker serves, checked against the name and version asked."""
    st.check_name(name)
    served, model = st.served()
    if version is not None and version != served:
        _check_version(st, name, version, served)
    return served, model


def _check_version(st: ServiceState, name: str, version: str, served: str) -> None:
    """A 404 unless ``version`` names the version this worker serves."""
    if version == served:
        return
    resolved = resolve_version(st, version, served)
    if resolved != served:
        named = version if resolved == version else f"{version} ({resolved})"
        raise APIError(
            f"model {name!r} version {named[:120]!r} is not being served; the active version "
            f"is {served} (POST /models/<id>/activate serves another)",
            status_code=404,
            code="version_not_found",
        )


def resolve_version(st: ServiceState, version: str, served: str) -> str:
    """The version id that ``version`` names: an id, a number (1 is the oldest of the versions
    the store keeps, in the order ``GET /models`` lists them), ``active`` (the one served) or
    ``latest`` (the newest stored); a 404 saying what to use for anything else."""
    if is_version_id(version):
        return version
    if version == "active":
        return served
    try:
        ids = st.store.version_ids()
    except IntegrityError:
        ids = []
    if version == "latest" and ids:
        return ids[-1]
    if version.isdigit() and version.isascii() and len(version) < 10:
        number = int(version)
        if 1 <= number <= len(ids):
            return ids[number - 1]
        raise APIError(
            f"version {version} does not exist: the store keeps {len(ids)} versions, numbered 1 "
            f"(the oldest) to {len(ids)} as GET /models lists them; the active one is {served}",
            status_code=404,
            code="version_not_found",
        )
    raise APIError(
        f"version {version[:100]!r} is not one this server knows; name it by its id (the "
        f"active one is {served}), by its number among the stored versions (1 is the oldest, "
        f"as GET /models lists them), or as {' or '.join(map(repr, VERSION_ALIASES))}",
        status_code=404,
        code="version_not_found",
    )
