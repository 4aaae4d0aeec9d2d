"""Per-process state of the service: settings, and lazily the store, model holder and metrics.

Each process (each gunicorn worker) opens the model store on its first request and keeps one
:class:`~service.http.reload.ModelHolder`; state created before a fork is dropped in the child,
so a preloaded app never shares a holder. Blueprints reach it with :func:`state`.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any

from flask import current_app

from ..config import Settings
from ..monitor.report import read_report
from ..store import JobStatus, ModelStore, open_store
from .errors import NO_MODEL_MESSAGE, APIError
from .loop import Loop
from .metrics import Metrics
from .reload import ModelHolder

EXTENSION = "sgdserve"

_STATES: weakref.WeakSet[ServiceState] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for st in list(_STATES):
        st.reset()


os.register_at_fork(after_in_child=_after_fork_in_child)


class ServiceState:
    """What one process needs to serve: settings, and lazily the store, holder and metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: ModelStore | None = None
        self._holder: ModelHolder | None = None
        self._metrics: Metrics | None = None
        self._loop: Loop | None = None
        _STATES.add(self)

    def reset(self) -> None:
        """Forget per-process objects (after a fork: the child builds its own)."""
        self._store = None
        self._holder = None
        self._metrics = None
        self._loop = None

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    @property
    def metrics(self) -> Metrics:
        if self._metrics is None:
            logs = self.settings.logs_path
            self._metrics = Metrics(self.settings.metrics_dir, monitoring=lambda: read_report(logs))
        return self._metrics

    @property
    def loop(self) -> Loop:
        """Prediction ids and the prediction and feedback logs of this process."""
        if self._loop is None:
            self._loop = Loop(self.settings, self.metrics)
        return self._loop

    @property
    def holder(self) -> ModelHolder:
        holder = self._holder
        if holder is None:
            holder = ModelHolder(self.store, self.settings.reload_interval, self.metrics)
            self._holder = holder
        return holder

    def served(self) -> tuple[str, Any]:
        """The ``(version, model)`` to answer with, or a 503 when there is none yet."""
        version, model = self.holder.get()
        if model is None:
            raise APIError(NO_MODEL_MESSAGE, status_code=503, code="no_model")
        return version, model

    def check_name(self, name: str) -> None:
        """A 404 unless ``name`` is the model this server serves (the protocols' paths)."""
        if name != self.settings.model_name:
            raise APIError(
                f"model {name[:100]!r} is not served here; this server serves "
                f"{self.settings.model_name!r}",
                status_code=404,
                code="model_not_found",
            )

    def job_finished(self, record: Mapping[str, Any]) -> None:
        """Count a retrain job that a child of this process ran (called by its reaper thread)."""
        outcome = record.get("status")
        if outcome in JobStatus.final():
            self.metrics.retrain_job(outcome)
        if outcome == JobStatus.PROMOTED:
            self.holder.refresh(force=True)


def state() -> ServiceState:
    """The ServiceState of the current app."""
    return current_app.extensions[EXTENSION]
