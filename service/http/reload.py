"""Per-worker hot reload: each process keeps ``(version, model)`` and follows ``CURRENT``.

Gunicorn workers share nothing, so every worker polls the store on its own: at most once per
``interval`` seconds a request stats ``CURRENT`` and, when it changed, the worker loads that
version (sha256 verified) and swaps one tuple reference. A load that fails is logged once and
counted; the model already loaded keeps serving, as it does when ``CURRENT`` disappears.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

import numpy as np

from ..engine.model import LinearModel
from ..errors import SGDServeError
from .errors import NO_MODEL_MESSAGE, APIError

log = logging.getLogger("sgdserve.reload")


class _Store(Protocol):
    def current_stamp(self) -> Any: ...
    def active_version(self) -> str | None: ...
    def load(self, version_id: str) -> tuple[LinearModel, dict[str, Any]]: ...


class _Metrics(Protocol):
    def model_loaded(self, version: str) -> None: ...
    def model_load_failed(self, version: str) -> None: ...


_EMPTY: tuple[None, None] = (None, None)


class ModelHolder:
    """The model one process serves, re-checked against the store at most once per interval."""

    def __init__(
        self,
        store: _Store,
        interval: float = 1.0,
        metrics: _Metrics | None = None,
        *,
        clock: Any = time.monotonic,
    ) -> None:
        self.store = store
        self.interval = float(interval)
        self.metrics = metrics
        self._clock = clock
        # Readers take one reference; a swap replaces it whole, so no reader sees a mix.
        self._pair: tuple[str, LinearModel] | tuple[None, None] = _EMPTY
        self._loaded: tuple[str, LinearModel, dict[str, Any]] | None = None
        self._stamp: Any = object()  # never equal to a real stamp: the first get() checks
        self._next_check = float("-inf")
        self._failed: tuple[Any, str] | None = None  # (stamp, version) that failed to load
        self._reload_lock = threading.Lock()
        self.last_error: str | None = None

    def get(self) -> tuple[str, LinearModel] | tuple[None, None]:
        """The ``(version, model)`` to serve this request with; ``(None, None)`` before any."""
        if self._clock() >= self._next_check:
            self.refresh()
        return self._pair

    def loaded(self) -> tuple[str, LinearModel, dict[str, Any]] | None:
        """``(version, model, manifest)`` as last loaded, without re-checking the store."""
        return self._loaded

    def refresh(self, force: bool = False) -> None:
        """Stat ``CURRENT`` and load the version it names if it changed (or if ``force``)."""
        # Under gthread one thread reloads; the others keep serving the current model.
        if not self._reload_lock.acquire(blocking=force):
            return
        try:
            self._next_check = self._clock() + self.interval
            try:
                stamp = self.store.current_stamp()
            except OSError as exc:
                self._note_failure(None, f"cannot stat CURRENT: {exc}")
                return
            if stamp == self._stamp and not force:
                return
            self._stamp = stamp
            if stamp is None:
                return  # CURRENT is gone: keep whatever is loaded
            self._load_active(stamp, force)
        finally:
            self._reload_lock.release()

    def _load_active(self, stamp: Any, force: bool) -> None:
        try:
            version = self.store.active_version()
        except (SGDServeError, OSError) as exc:
            self._note_failure(None, str(exc))
            return
        if version is None or version == self._pair[0]:
            return
        if not force and self._failed == (stamp, version):
            return  # already logged; retried when CURRENT changes again
        try:
            model, manifest = self.store.load(version)
        except (SGDServeError, OSError) as exc:
            self._failed = (stamp, version)
            self._note_failure(version, str(exc))
            return
        previous = self._pair[0]
        self._loaded = (version, model, manifest)
        self._pair = (version, model)
        self._failed = None
        self.last_error = None
        log.info("serving model version %s (was %s)", version, previous or "none")
        if self.metrics is not None:
            self.metrics.model_loaded(version)

    def _note_failure(self, version: str | None, reason: str) -> None:
        repeated = reason == self.last_error
        self.last_error = reason
        if not repeated:  # a lasting fault (say, an unreadable directory) is logged once
            # One line, no traceback: a bad artifact is an operational event, not a crash.
            log.error(
                "model reload failed (version %s): %s; still serving %s",
                version or "?", reason, self._pair[0] or "none",
            )
        if self.metrics is not None and version is not None:
            self.metrics.model_load_failed(version)


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
