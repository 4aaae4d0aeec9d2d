"""One JSON error shape for every failure the HTTP layer answers.

Every non-2xx response body is ``{"error": {"code": "...", "message": "..."}}`` (some add keys,
e.g. ``job_id``). :class:`APIError` carries that shape; Werkzeug's ``HTTPException`` (404, 405,
413, ...) and the store's exceptions are mapped onto it here, in one place. An unexpected
exception is logged once and answered with a JSON 500: it always means a bug.

The compatibility protocols answer in the shape their clients read, from the same
:class:`APIError`: under ``/v2`` (the Open Inference Protocol) and ``/v1`` (KServe V1),
``{"error": message, "code": code}``, the message where Triton's and KServe's clients look for
it; on MLflow's routes, sgdserve's shape with MLflow's ``error_code`` and ``message`` beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from ..errors import (
    CurrentChangedError,
    DataError,
    IntegrityError,
    JobConflictError,
    JobError,
    LockHeldError,
    LockLostError,
    NoActiveModelError,
    SignatureError,
    StoreUnavailableError,
    VersionNotFoundError,
)

log = logging.getLogger("sgdserve.http")

NO_MODEL_MESSAGE = (
    "no model has been trained yet; train one with "
    "`sgdserve train --data FILE --target COL` or POST /retrain"
)

# Codes for Werkzeug's exceptions, so clients can switch on a stable string.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    411: "length_required",
    413: "body_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "unprocessable_entity",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}


class APIError(Exception):
    """An error answered as JSON with ``status_code`` and a stable ``code``."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The response body: ``{"error": {"code", "message", ...extra}}``."""
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response encoded with orjson (numpy scalars and arrays allowed)."""
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    # One Headers built from a list is the cheapest way to add a header (hot path).
    items = [("Content-Type", "application/json")]
    if headers:
        items.extend(headers.items())
    return Response(body, status=status, headers=Headers(items))


# MLflow's error codes for ours, on its routes (what `mlflow models serve` would say).
_MLFLOW_PATHS = frozenset({"/invocations", "/ping", "/version"})
_MLFLOW_CODES = {"invalid_features": "INVALID_PARAMETER_VALUE", "empty_batch":
                 "INVALID_PARAMETER_VALUE", "too_many_rows": "INVALID_PARAMETER_VALUE",
                 "not_found": "ENDPOINT_NOT_FOUND"}


def _protocol(path: str) -> str | None:
    """The compatibility protocol whose error shape a path answers in, if any."""
    if path.startswith("/v2/") or path == "/v2":
        return "v2"
    if path.startswith("/v1/"):
        return "v1"
    if path in _MLFLOW_PATHS:
        return "mlflow"
    return None


def _mlflow_code(error: APIError) -> str:
    if error.code in _MLFLOW_CODES:
        return _MLFLOW_CODES[error.code]
    if error.status_code == 503:
        return "TEMPORARILY_UNAVAILABLE"
    return "INTERNAL_ERROR" if error.status_code >= 500 else "BAD_REQUEST"


def error_response(error: APIError) -> Response:
    """The JSON response for ``error``: ``{"error": {"code", "message"}}``, or the shape of the
    protocol whose path was asked (the module docstring)."""
    protocol = _protocol(request.path)
    if protocol is None:
        return json_response(error.to_dict(), error.status_code, error.headers)
    if protocol == "mlflow":
        body: dict[str, Any] = error.to_dict()
        body["error_code"] = _mlflow_code(error)
        body["message"] = error.message
    else:
        body = {"error": error.message, "code": error.code, **error.extra}
    return json_response(body, error.status_code, error.headers)


def from_exception(exc: Exception) -> APIError | None:
    """The APIError for one of sgdserve's own exceptions, or None if it is not one."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, JobConflictError):
        extra = {"job_id": exc.job_id} if exc.job_id else {}
        return APIError(str(exc), status_code=409, code="retrain_in_progress", **extra)
    if isinstance(exc, CurrentChangedError):
        return APIError(str(exc), status_code=409, code="current_changed", current=exc.current)
    if isinstance(exc, LockHeldError):
        return APIError(str(exc), status_code=409, code="store_locked")
    if isinstance(exc, VersionNotFoundError):
        return APIError(str(exc), status_code=404, code="version_not_found")
    if isinstance(exc, NoActiveModelError):
        return APIError(NO_MODEL_MESSAGE, status_code=503, code="no_model")
    if isinstance(exc, SignatureError):
        return APIError(str(exc), status_code=422, code="signature_error")
    if isinstance(exc, IntegrityError):
        return APIError(str(exc), status_code=422, code="integrity_error")
    if isinstance(exc, LockLostError):
        return APIError(str(exc), status_code=409, code="store_locked")
    if isinstance(exc, StoreUnavailableError):  # the object store: unreachable, or refused us
        return APIError(str(exc), status_code=503, code="store_unavailable")
    if isinstance(exc, DataError):
        return APIError(str(exc), status_code=400, code="invalid_data")
    if isinstance(exc, JobError) and isinstance(exc, KeyError):
        return APIError(str(exc), status_code=404, code="job_not_found")
    return None


_ROUTES = {
    "v2": "the Open Inference Protocol as sgdserve serves it: /v2, /v2/health/live, "
    "/v2/health/ready, /v2/models/<name>[/versions/<version>][/ready | /infer]",
    "v1": "KServe V1 as sgdserve serves it: /v1/models, /v1/models/<name>, "
    "/v1/models/<name>:predict",
}


def _handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    description = exc.description or exc.name
    protocol = _protocol(request.path)
    if status == 404 and protocol in _ROUTES:
        # Say which protocol the path is not part of, not Werkzeug's stock sentence.
        description = (f"no route {request.method} {request.path[:100]} in {_ROUTES[protocol]} "
                       "(GET /openapi.json describes every route)")
    error = APIError(
        description,
        status_code=status,
        code=_HTTP_CODES.get(status, exc.name.lower().replace(" ", "_")),
    )
    # Keep headers Werkzeug computed, e.g. Allow on a 405.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            error.headers[name] = value
    return error_response(error)


def _handle_exception(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):  # Flask routes these here only if registered so
        return _handle_http_exception(exc)
    mapped = from_exception(exc)
    if mapped is not None:
        return error_response(mapped)
    # One line plus traceback; headers (and so the token) are never logged.
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(
        APIError("internal server error", status_code=500, code="internal_error")
    )


def register_error_handlers(app: Flask) -> None:
    """Answer every error of ``app`` in the JSON error shape."""
    app.register_error_handler(APIError, error_response)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_exception)
