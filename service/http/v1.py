"""KServe's V1 protocol: what KServe's scikit-learn server answers, for clients moving from it.

``GET /`` (liveness, ``{"status": "alive"}``), ``GET /v1/models`` (``{"models": [name]}``),
``GET /v1/models/<name>`` (``{"name", "ready"}``, 503 while not ready) and ``POST
/v1/models/<name>:predict`` with ``{"instances": [...]}`` (rows as lists in the model's feature
order, or objects by feature name) answering ``{"predictions": [...], "model_version"}``.
Decoding is :mod:`service.http.codecs.v1`; errors are ``{"error": message}`` (KServe's shape)
with sgdserve's ``code`` beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from .body import read_json_body, release_after_sending
from .codecs import v1
from .codecs.columns import input_datatypes, predict
from .errors import APIError, json_response
from .reload import check_ready
from .state import state

bp = Blueprint("v1", __name__)


def live() -> Response:
    """Liveness, as KServe's model server answers it (its client's ``is_server_live``): the
    answer of ``GET /`` to a client that does not ask for HTML (service/http/ui.py)."""
    return json_response({"status": "alive"})


@bp.get("/v1/models")
def models() -> Response:
    return json_response({"models": [state().settings.model_name]})


@bp.get("/v1/models/<name>")
def model_ready(name: str) -> Response:
    st = state()
    st.check_name(name)
    try:
        version = check_ready(st.holder)
    except APIError as exc:
        return json_response({"name": name, "ready": False, "error": exc.message}, 503)
    return json_response({"name": name, "ready": True}, headers={"X-Model-Version": version})


@bp.post("/v1/models/<name>:predict")
def predict_v1(name: str) -> Response:
    st = state()
    data = read_json_body(request._get_current_object(), untyped=True)
    st.check_name(name)
    version, model = st.served()
    columns, parsed = v1.decode(data, model.feature_names, input_datatypes(model),
                                st.settings.max_batch_rows)
    return predictions_response(st, version, model, columns, (parsed, data),
                                lambda i: f"instances[{i}]")


def predictions_response(st: Any, version: str, model: Any, columns: Any, body: tuple[Any, ...],
                         where: Callable[[int], str]) -> Response:
    """``{"predictions": [...], "model_version": ...}``, the answer of KServe V1 and of
    MLflow's scoring protocol; a large parsed ``body`` is freed after the answer has left."""
    y = predict(model, columns, where)
    st.metrics.rows_predicted(len(y))
    response = json_response({"predictions": y, "model_version": version},
                             headers={"X-Model-Version": version})
    if columns.rows > 1:
        release_after_sending(response, *body)
    return response


@bp.post("/v1/models/<name>:explain")
def explain(name: str) -> Response:
    raise APIError("explanations (:explain) are not supported; :predict answers predictions",
                   status_code=501, code="unsupported_extension")
