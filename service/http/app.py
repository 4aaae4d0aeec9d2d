"""The Flask application factory: settings, per-process state, blueprints, JSON errors.

``create_app()`` reads nothing at import time; the per-process state (store, model holder,
metrics) lives in :mod:`service.http.state`, which the blueprints use, so none imports this
module.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from typing import IO, Any

from flask import Flask, Request, Response, request
from flask.testing import FlaskClient

from ..config import Settings
from . import feedback, mlflow, models, monitoring, ops, predict, retrain, ui, v1, v2
from .errors import register_error_handlers
from .state import EXTENSION, ServiceState


class UploadRequest(Request):
    """A request whose multipart file parts are written into ``upload_dir`` when it is set.

    ``POST /retrain`` sets ``upload_dir`` to the job's directory before parsing the form, so an
    uploaded CSV is streamed straight to the disk it is trained from: no copy, no spool in /tmp.
    """

    upload_dir: str | None = None

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        if self.upload_dir is None:
            return super()._get_file_stream(
                total_content_length, content_type, filename, content_length
            )
        return tempfile.NamedTemporaryFile(  # closed by the handler
            "wb+", dir=self.upload_dir, prefix="upload-", suffix=".part", delete=False
        )


class ServiceFlask(Flask):
    """Flask with the per-request bookkeeping (timing, metrics) inlined.

    Overriding ``full_dispatch_request`` instead of registering before/after-request hooks
    saves their dispatch machinery on every request: measurable on the single-row hot path.
    """

    def full_dispatch_request(self) -> Response:
        started = time.perf_counter()
        response = super().full_dispatch_request()
        req = request._get_current_object()
        rule = req.url_rule
        # Label by URL rule, never by raw path: paths are client input and unbounded.
        endpoint = rule.rule if rule is not None else "unmatched"
        self.extensions[EXTENSION].metrics.observe_request(
            endpoint, req.method, response.status_code, time.perf_counter() - started
        )
        return response


class ServerLikeClient(FlaskClient):
    """Flask's test client, closing each response once it has been read, as a WSGI server
    closes it after sending: the work a view defers until then (``call_on_close``: a batch's
    prediction log line, freeing its parsed body) runs before the call returns, as it does
    before gunicorn takes the next request."""

    def open(self, *args: Any, buffered: bool = True, **kwargs: Any) -> Any:
        return super().open(*args, buffered=buffered, **kwargs)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application; ``test_config`` overrides Settings fields (tests, embedding)."""
    settings = Settings.from_env(**dict(test_config or {}))
    app = ServiceFlask(__name__, static_folder=None)
    app.request_class = UploadRequest
    app.test_client_class = ServerLikeClient
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions[EXTENSION] = ServiceState(settings)

    register_error_handlers(app)
    for blueprint in (predict.bp, feedback.bp, monitoring.bp, retrain.bp, models.bp, ops.bp,
                      v2.bp, v1.bp, mlflow.bp, ui.bp):
        app.register_blueprint(blueprint)
    return app
