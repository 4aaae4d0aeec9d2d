"""MLflow's scoring protocol, for clients of ``mlflow models serve``: ``POST /invocations``,
``GET /ping``, ``GET /version``.

``/invocations`` takes a JSON body (``dataframe_split``, ``dataframe_records``, ``instances``
or ``inputs``: :mod:`service.http.codecs.mlflow`) or a ``text/csv`` one
(:mod:`service.http.codecs.csv_rows`) and answers ``{"predictions": [...], "model_version"}``.
Content types are MLflow's: ``application/json`` and ``text/csv``, with no parameter but
``charset=utf-8``. A body sent with no ``Content-Type`` (which crashes MLflow's own server) is
read as JSON if it starts like a JSON object, else as CSV. Errors are sgdserve's shape with
MLflow's ``error_code`` and ``message`` beside it (``service.http.errors``).
"""

from __future__ import annotations

from flask import Blueprint, Request, Response, request

from .. import __version__
from .body import read_body
from .codecs.columns import input_datatypes
from .codecs.csv_rows import decode_csv
from .codecs.mlflow import decode_json
from .errors import APIError, json_response
from .reload import check_ready
from .state import state
from .v1 import predictions_response

bp = Blueprint("mlflow", __name__)

PATHS = ("/invocations", "/ping", "/version")
_TYPES = ("application/json", "text/csv")


@bp.post("/invocations")
def invocations() -> Response:
    st = state()
    req = request._get_current_object()
    kind = _content_kind(req)
    data = read_body(req)
    version, model = st.served()
    if kind is None:
        kind = "application/json" if data.lstrip()[:1] in (b"{", b"[") else "text/csv"
    inputs = (model.feature_names, input_datatypes(model), st.settings.max_batch_rows)
    parsed = None
    if kind == "text/csv":
        columns = decode_csv(data, *inputs)
    else:
        columns, parsed = decode_json(data, *inputs)
    return predictions_response(st, version, model, columns, (parsed, data),
                                lambda i: f"row {i}")


def _content_kind(req: Request) -> str | None:
    """``application/json`` or ``text/csv``, None when the request has no Content-Type; 415
    for anything else, in MLflow's words."""
    content_type = req.environ.get("CONTENT_TYPE", "")
    if content_type == "application/json":
        return content_type
    if not content_type:
        return None
    mimetype = req.mimetype
    if mimetype not in _TYPES:
        raise APIError(
            "This predictor only supports the following content types: Types: "
            f"{list(_TYPES)}. Got {mimetype[:60]!r}.",
            status_code=415,
            code="unsupported_media_type",
        )
    params = req.mimetype_params
    unknown = [key for key in params if key != "charset"]
    if unknown:
        raise APIError(
            f"Unrecognized content type parameters: {', '.join(unknown)}. MLflow 2.0 replaced "
            "them by the body's keys (dataframe_split, dataframe_records, instances, inputs).",
            status_code=415,
            code="unsupported_media_type",
        )
    if params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        raise APIError("The scoring server only supports UTF-8", status_code=415,
                       code="unsupported_media_type")
    return mimetype


@bp.get("/ping")
def ping() -> Response:
    """Ready to score (MLflow's and SageMaker's health check): 200 with a loaded model."""
    version = check_ready(state().holder)
    return json_response({"status": "ready", "model_version": version},
                         headers={"X-Model-Version": version})


@bp.get("/version")
def version() -> Response:
    """The server's version, as bare text (as MLflow answers it)."""
    return Response(__version__, content_type="text/plain; charset=utf-8")
