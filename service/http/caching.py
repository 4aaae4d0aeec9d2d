"""Conditional GETs: an entity tag on a response, and 304 Not Modified when the client has it.

The page reads its data from ``/model``, ``/models`` and ``/models/history``; with ``ETag`` and
``Cache-Control: no-cache`` a browser revalidates on every visit and is sent the body only when
it changed (for ``/model``, when the served version did: its tag is the version id).
"""

from __future__ import annotations

import hashlib

from flask import Response, request

# Stored, but revalidated before every use: the active version can change at any time.
REVALIDATE = "no-cache"


def quoted(tag: str) -> str:
    """``tag`` as a strong entity tag (in double quotes)."""
    return f'"{tag}"'


def content_tag(body: bytes) -> str:
    """A strong entity tag derived from a response body."""
    return quoted(hashlib.sha256(body).hexdigest()[:32])


def client_has(etag: str) -> bool:
    """Whether the request's ``If-None-Match`` names ``etag`` (or ``*``)."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    # A weak comparison, as RFC 9110 asks for If-None-Match.
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags


def not_modified(etag: str, headers: dict[str, str] | None = None) -> Response:
    """The 304 answer for ``etag``: no body, the same validators."""
    response = Response(status=304)
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = REVALIDATE
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def conditional(response: Response, etag: str | None = None) -> Response:
    """``response`` with an ETag (``etag``, or one from its body) and ``Cache-Control:
    no-cache``; a 304 instead when the request already holds that tag."""
    if etag is None:
        etag = content_tag(response.get_data())
    if client_has(etag):
        return not_modified(etag)
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = REVALIDATE
    return response
