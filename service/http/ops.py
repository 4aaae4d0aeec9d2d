"""The operations blueprint: /health, /ready, /metrics, /openapi.json."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response

from .errors import json_response
from .openapi import document
from .reload import check_ready
from .retrain import wait_limit
from .rows import ignored_columns
from .state import state

bp = Blueprint("ops", __name__)


@bp.get("/health")
def health() -> Response:
    """Alive: answers whenever the process can serve a request, model or not."""
    return json_response({"status": "ok"})


@bp.get("/ready")
def ready() -> Response:
    """Ready only when a model is loaded and predicts a finite value for its mean row.

    A store problem found since (a damaged ``CURRENT``, a version that failed to load) is named
    too: this worker still serves, but an operator should know."""
    holder = state().holder
    version = check_ready(holder)
    body = {"status": "ready", "model_version": version}
    if holder.last_error:
        body["store_error"] = holder.last_error
    return json_response(body, headers={"X-Model-Version": version})


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
    fields = ignored = None
    if model is not None:
        fields = tuple((f.name, f.kind) for f in model.schema.features)
        ignored = ignored_columns(model)
    return json_response(
        document(st.settings.max_batch_rows, wait_limit(st.settings), fields, ignored or ())
    )
