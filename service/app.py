"""The Flask application factory: settings, per-process state, blueprints, JSON errors.

``create_app()`` reads nothing at import time. Each process (each gunicorn worker) opens the
model store lazily on its first request and keeps one :class:`~service.reload.ModelHolder`;
state created before a fork is dropped in the child, so a preloaded app never shares a holder.
"""

from __future__ import annotations

import os
import tempfile
import time
import weakref
from collections.abc import Mapping
from typing import IO, Any

from flask import Flask, Request, Response, current_app, request

from .config import Settings
from .http_errors import register_error_handlers
from .reload import ModelHolder

EXTENSION = "sgdserve"

_STATES: weakref.WeakSet[ServiceState] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for state in list(_STATES):
        state.reset()


os.register_at_fork(after_in_child=_after_fork_in_child)


class ServiceState:
    """What one process needs to serve: settings, and lazily the store, holder and metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Any = None
        self._holder: ModelHolder | None = None
        self._metrics: Any = None
        _STATES.add(self)

    def reset(self) -> None:
        """Forget per-process objects (after a fork: the child builds its own)."""
        self._store = None
        self._holder = None
        self._metrics = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from .store import ModelStore

            self._store = ModelStore.from_settings(self.settings)
        return self._store

    @property
    def metrics(self) -> Any:
        if self._metrics is None:
            from .metrics import Metrics

            self._metrics = Metrics(self.settings.metrics_dir)
        return self._metrics

    @property
    def holder(self) -> ModelHolder:
        holder = self._holder
        if holder is None:
            holder = ModelHolder(self.store, self.settings.reload_interval, self.metrics)
            self._holder = holder
        return holder

    def job_finished(self, record: Mapping[str, Any]) -> None:
        """Count a retrain job that a child of this process ran (called by its reaper thread)."""
        outcome = record.get("status")
        if outcome in ("promoted", "rejected", "failed"):
            self.metrics.retrain_job(outcome)
        if outcome == "promoted":
            self.holder.refresh(force=True)


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


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the application; ``test_config`` overrides Settings fields (tests, embedding)."""
    settings = Settings.from_env(**dict(test_config or {}))
    app = ServiceFlask(__name__, static_folder=None)
    app.request_class = UploadRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions[EXTENSION] = ServiceState(settings)

    register_error_handlers(app)

    from . import api, ops, v2

    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(v2.bp)
    return app


def state() -> ServiceState:
    """The ServiceState of the current app."""
    return current_app.extensions[EXTENSION]
