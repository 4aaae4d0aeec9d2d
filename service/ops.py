"""The operations blueprint: /health, /ready, /metrics, /openapi.json."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from flask import Blueprint, Response

from . import jobs
from .app import state
from .http_errors import NO_MODEL_MESSAGE, APIError, json_response
from .openapi import document

bp = Blueprint("ops", __name__)


@bp.get("/health")
def health() -> Response:
    """Alive: answers whenever the process can serve a request, model or not."""
    return json_response({"status": "ok"})


@bp.get("/ready")
def ready() -> Response:
    """Ready only when a model is loaded and predicts a finite value for its mean row."""
    version = check_ready(state().holder)
    return json_response(
        {"status": "ready", "model_version": version}, headers={"X-Model-Version": version}
    )


def check_ready(holder: Any) -> str:
    """The version served, if a model is loaded and a smoke prediction on its mean row is
    finite; otherwise a 503 APIError with the reason (shared by /ready and /v2/health/ready)."""
    version, model = holder.get()
    if model is None:
        message = NO_MODEL_MESSAGE
        if holder.last_error:
            message = f"no model loaded: {holder.last_error}"
        raise APIError(message, status_code=503, code="no_model")
    try:
        with np.errstate(all="ignore"):  # an overflow is reported below, not warned about
            value = model.predict(model.x_mean[np.newaxis, :])[0]
    except Exception as exc:  # any failure of the smoke test means not ready, with the reason
        raise APIError(
            f"smoke prediction with model {version} failed: {exc}",
            status_code=503,
            code="smoke_test_failed",
        ) from None
    if not np.isfinite(value):
        raise APIError(
            f"smoke prediction with model {version} is not finite ({value})",
            status_code=503,
            code="smoke_test_failed",
        )
    return version


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, summed over every worker."""
    st = state()
    # Promotions happen in other processes too (CLI, scheduler): read the time from the store.
    last = st.store.last_promotion()
    if last and isinstance(last.get("time"), str):
        try:
            when = dt.datetime.fromisoformat(last["time"].replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            st.metrics.promotion(when.timestamp())
    body, content_type = st.metrics.render()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document of this service."""
    st = state()
    # Describe the features of the model this worker serves, so clients and fuzzers send them.
    _, model = st.holder.get()
    features = model.feature_names if model is not None else None
    return json_response(
        document(st.settings.max_batch_rows, jobs.wait_limit(st.settings), features)
    )
