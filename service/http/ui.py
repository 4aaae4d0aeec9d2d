"""The page blueprint: ``GET /`` (the browser page) and ``GET /static/<name>`` (its assets).

The page is a Flask template with no inline script or style; one script (static/page.js) reads
everything it shows from the JSON endpoints (``/model``, ``/models``, ``/models/history``) and
writes through ``/predict``, ``/retrain`` and ``/models/<id>/activate``, so nothing here touches
the model or slows ``/predict``. Every answer of this blueprint carries a strict
Content-Security-Policy. Asset URLs carry their digest (``?v=``), so a browser keeps them for a
year and fetches a changed file at once.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, render_template, request, url_for

from ..params import TRAINING_PARAMS, Param
from . import v1
from .caching import conditional, content_tag
from .errors import APIError
from .state import state

bp = Blueprint("ui", __name__, template_folder="templates")

STATIC_DIR = Path(__file__).with_name("static")
ASSET_TYPES = {
    "page.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}

# 'self' only, and nothing inline: a script or style injected into the page does not run.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
}
IMMUTABLE = "public, max-age=31536000, immutable"

# The retrain options shown first; the other HTTP parameters sit under "More options".
MAIN_OPTIONS = ("target", "epochs", "eta0", "learning_rate", "force")


@functools.cache
def _asset(name: str) -> tuple[bytes, str]:
    """An asset's bytes and digest (read once per process: they are package data)."""
    body = (STATIC_DIR / name).read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:16]


def asset_url(name: str) -> str:
    """The URL of an asset, versioned by its digest."""
    return url_for("ui.static_asset", name=name, v=_asset(name)[1])


def _field(p: Param) -> dict[str, Any]:
    """How the page's retrain form shows one training parameter."""
    default = p.default_value
    hint = p.help
    if default is not None and p.kind != "bool":
        hint += f" Default: {default}."
    field: dict[str, Any] = {"name": p.name, "label": p.name.replace("_", " "), "hint": hint,
                             "kind": p.kind, "choices": p.choices}
    if p.kind in ("int", "float"):
        field["step"] = "1" if p.kind == "int" else "any"
        # Open bounds are left to the server, whose message names the bound.
        if p.low is not None and not p.low_open:
            field["min"] = p.low
        if p.high is not None and not p.high_open:
            field["max"] = p.high
    return field


@functools.cache
def _retrain_fields() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    params = [p for p in TRAINING_PARAMS if p.http]
    main = [_field(p) for name in MAIN_OPTIONS for p in params if p.name == name]
    more = [_field(p) for p in params if p.name not in MAIN_OPTIONS]
    return main, more


def _secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def _wants_page() -> bool:
    """Whether ``GET /`` is a browser's (it names text/html) or a protocol client's: KServe's
    V1 client checks liveness there with ``Accept: */*``, and expects its JSON answer."""
    accept = request.headers.get("Accept")
    return accept is None or "text/html" in accept or "application/xhtml" in accept


@bp.get("/")
def page() -> Response:
    """The page: model card, plots, versions with rollback, a prediction form, retraining; or
    KServe V1's liveness answer for a client that does not ask for HTML."""
    if not _wants_page():
        alive = v1.live()
        alive.vary.add("Accept")  # one URL, two answers: caches must key on Accept
        return alive
    main, more = _retrain_fields()
    html = render_template(
        "index.html",
        name=state().settings.model_name,
        asset=asset_url,
        main_options=main,
        more_options=more,
    )
    response = Response(html, content_type="text/html; charset=utf-8")
    response.vary.add("Accept")
    return _secured(conditional(response))


@bp.get("/static/<name>")
def static_asset(name: str) -> Response:
    """One of the page's assets; immutable when asked for by its digest."""
    if name not in ASSET_TYPES:
        raise APIError(f"no asset {name[:80]!r}", status_code=404, code="not_found")
    body, digest = _asset(name)
    response = Response(body, content_type=ASSET_TYPES[name])
    response = conditional(response, content_tag(body))
    if request.args.get("v") == digest and response.status_code == 200:
        response.headers["Cache-Control"] = IMMUTABLE
    return _secured(response)
