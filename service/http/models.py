"""The models blueprint: ``GET /model`` (the one served), ``GET /models`` (every version),
``GET /models/history`` (which version was live when) and ``POST /models/<id>/activate``
(rollback).

The read endpoints answer conditional GETs (service/http/caching.py): ``/model`` is tagged with
the version id it describes, the lists with a digest of their body.

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
from .caching import client_has, conditional, not_modified, quoted
from .errors import APIError, json_response
from .state import state

bp = Blueprint("models", __name__)


@bp.get("/model")
def model_info() -> Response:
    """The model this worker serves: manifest, features, coefficients, metrics."""
    st = state()
    version, model = st.served()
    etag = quoted(version)  # a version is never rewritten: its id tags its description
    headers = {"X-Model-Version": version}
    loaded = st.holder.loaded()  # the manifest of the version just returned, unless swapped
    manifest = loaded[2] if loaded is not None and loaded[0] == version else {}
    if manifest and client_has(etag):
        return not_modified(etag, headers)
    response = json_response(
        {
            "name": st.settings.model_name,
            "model_version": version,
            "target": model.target,
            "features": list(model.feature_names),
            "schema": model.describe_features(),
            "coefficients": model.coefficients(),
            "intercept": float(model.intercept),
            # With the log transform the weights above are in log(target) units.
            **model.describe_transform(),
            # One standard deviation of the target in training: turns a weight in target units
            # into the standardised scale of the schema's "standardized" (the page's bars).
            "target_scale": float(model.y_scale),
            "metrics": manifest.get("metrics"),
            "manifest": manifest,
        },
        headers=headers,
    )
    # An answer without its manifest (swapped mid-request) is complete only once: not tagged.
    return conditional(response, etag) if manifest else response


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
    return conditional(json_response(body))


@bp.get("/models/history")
def models_history() -> Response:
    """Every promotion, oldest first: when a version became the active one and what it
    replaced (rollbacks included), so a reader can tell which version was live when."""
    entries = [
        {"time": e.get("time"), "version": e.get("version"), "previous": e.get("previous")}
        for e in state().store.history()
    ]
    return conditional(json_response({"history": entries}))


def _summary(manifest: Mapping[str, Any], active: str | None) -> dict[str, Any]:
    keys = ("id", "created_at", "status", "parent", "target", "features", "metrics", "gate",
            "error")
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
