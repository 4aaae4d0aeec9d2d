"""The models blueprint: ``GET /model`` (the one served), ``GET /models`` (every version) and
``POST /models/<id>/activate`` (rollback).

Activation takes an expected-current precondition: ``If-Match: <version>`` (quoted as an
entity tag or not) activates only if that version is still the active one, so a rollback
decided on a stale view cannot replace a promotion that came in between (409 naming what is
active now).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, request

from .. import retrain as jobs
from ..errors import IntegrityError, LockHeldError
from ..store import ANY
from ..store.ids import is_version_id
from .auth import require_token
from .errors import APIError, json_response
from .state import state

bp = Blueprint("models", __name__)


@bp.get("/model")
def model_info() -> Response:
    """The model this worker serves: manifest, features, coefficients, metrics."""
    st = state()
    version, model = st.served()
    loaded = st.holder.loaded()  # the manifest of the version just returned, unless swapped
    manifest = loaded[2] if loaded is not None and loaded[0] == version else {}
    return json_response(
        {
            "model_version": version,
            "target": model.target,
            "features": list(model.feature_names),
            "schema": model.describe_features(),
            "coefficients": model.coefficients(),
            "intercept": float(model.intercept),
            "metrics": manifest.get("metrics"),
            "manifest": manifest,
        },
        headers={"X-Model-Version": version},
    )


@bp.get("/models")
def models_list() -> Response:
    """Every version in the store, marking the active one (and saying so when ``CURRENT`` is
    damaged: the versions are listed, none as active)."""
    store = state().store
    body: dict[str, Any] = {}
    try:
        active = store.active_version()
    except IntegrityError as exc:
        active = None
        body["current_error"] = str(exc)
    body.update(active=active, models=[_summary(m, active) for m in store.list()])
    return json_response(body)


def _summary(manifest: Mapping[str, Any], active: str | None) -> dict[str, Any]:
    keys = ("id", "created_at", "status", "parent", "target", "features", "metrics", "error")
    summary = {k: manifest[k] for k in keys if k in manifest}
    summary["active"] = manifest.get("id") == active
    return summary


@bp.post("/models/<version_id>/activate")
def models_activate(version_id: str) -> Response:
    """Make a stored version the active one (rollback); every worker follows within a second."""
    st = state()
    require_token(st)
    expected = _if_match()
    store = st.store
    store.get(version_id)  # 404 before anything else
    try:
        with store.lock(wait=False, owner=f"POST /models/{version_id}/activate"):
            previous = store.activate(version_id, expected_current=expected)
    except LockHeldError as exc:
        raise jobs.conflict_error(exc.holder) from None
    st.holder.refresh(force=True)
    version, _ = st.holder.get()
    return json_response(
        {"active": version_id, "previous": previous, "model_version": version},
        headers={"X-Model-Version": version} if version is not None else None,
    )


def _if_match() -> Any:
    """The version an ``If-Match`` header expects to be active, or ANY without one (or ``*``)."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return ANY
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if len(values) != 1:
        raise APIError("If-Match must name one version", code="invalid_precondition")
    value = values[0].removeprefix("W/").strip('"')
    if not is_version_id(value):
        raise APIError(
            f"If-Match must be a version id (as GET /models lists), got {value[:80]!r}",
            code="invalid_precondition",
        )
    return value
