"""The bearer token that guards the write endpoints (retrain, activate)."""

from __future__ import annotations

import hmac

from flask import request

from .errors import APIError
from .state import ServiceState


def require_token(st: ServiceState) -> None:
    """Refuse a write request without the configured bearer token (403 when none is set)."""
    token = st.settings.api_token
    if not token:
        raise APIError(
            "write endpoints are disabled: set SGDSERVE_API_TOKEN to enable them",
            status_code=403,
            code="writes_disabled",
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest takes the same time wherever the strings differ: no timing oracle.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise APIError(
            "missing or invalid bearer token (send Authorization: Bearer <SGDSERVE_API_TOKEN>)",
            status_code=401,
            code="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="sgdserve"'},
        )
