"""Per-worker hot reload: each process keeps ``(version, model)`` and follows ``CURRENT``.

Gunicorn workers share nothing, so every worker polls the store on its own, about once per
``interval`` seconds (a little less, at random: a jitter of up to 20 % keeps workers that
started together from polling in step), and when ``CURRENT`` changed it loads that version
(signature and sha256 verified) and swaps one tuple reference.

- A local store is polled by the request that finds the interval over: one ``stat``.
- A remote store (S3) is polled from a thread of the worker's own, by a conditional GET that
  the server answers 304 Not Modified while nothing changed, so no request ever waits on the
  network; only the first request of a worker loads synchronously, to have a model at all.

A poll that fails (the store unreachable, ``CURRENT`` damaged) or a load that fails (a
tampered, unsigned or unreadable version) is logged once while its reason stays the same,
counted in ``/metrics`` each time, and retried at the next poll; the model already loaded keeps
serving, as it does when ``CURRENT`` disappears.
"""

from __future__ import annotations

import logging
import random
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
    def store_poll_failed(self) -> None: ...


_EMPTY: tuple[None, None] = (None, None)
JITTER = 0.2  # a poll comes after (1 - JITTER * U[0, 1)) intervals
_MIN_THREAD_INTERVAL = 0.05  # seconds: a polling thread never spins, even at interval 0


class ModelHolder:
    """The model one process serves, re-checked against the store at most once per interval."""

    def __init__(
        self,
        store: _Store,
        interval: float = 1.0,
        metrics: _Metrics | None = None,
        *,
        clock: Any = time.monotonic,
        background: bool | None = None,
        jitter: float = JITTER,
        rand: Any = random.random,
    ) -> None:
        self.store = store
        self.interval = float(interval)
        self.metrics = metrics
        self._clock = clock
        # Poll from a thread when reads cross a network (store.remote), unless told otherwise.
        self.background = bool(getattr(store, "remote", False)) if background is None \
            else background
        self._jitter = float(jitter)
        self._rand = rand
        # Readers take one reference; a swap replaces it whole, so no reader sees a mix.
        self._pair: tuple[str, LinearModel] | tuple[None, None] = _EMPTY
        self._loaded: tuple[str, LinearModel, dict[str, Any]] | None = None
        self._stamp: Any = object()  # never equal to a real stamp: the first get() checks
        self._next_check = float("-inf")
        self._retry = False  # the last poll or load failed: try again at the next poll
        self._reload_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_error: str | None = None

    def get(self) -> tuple[str, LinearModel] | tuple[None, None]:
        """The ``(version, model)`` to serve this request with; ``(None, None)`` before any."""
        if self.background:
            if self._poller is None:
                self._start_polling()
        elif self._clock() >= self._next_check:
            self.refresh()
        return self._pair

    def _start_polling(self) -> None:
        with self._reload_lock:
            if self._poller is not None:
                return
            self._poller = threading.Thread(target=self._poll, name="model-reload",
                                            daemon=True)
        self.refresh(force=True)  # the first request needs a model: load it now
        self._poller.start()

    def _poll(self) -> None:
        while True:
            wait = max(_MIN_THREAD_INTERVAL, self._next_check - self._clock())
            if self._stop.wait(wait):
                return
            self.refresh()

    def close(self) -> None:
        """Stop the polling thread, if there is one (tests; a worker simply exits)."""
        self._stop.set()

    def loaded(self) -> tuple[str, LinearModel, dict[str, Any]] | None:
        """``(version, model, manifest)`` as last loaded, without re-checking the store."""
        return self._loaded

    def refresh(self, force: bool = False) -> None:
        """Stat ``CURRENT`` and load the version it names if it changed (or if ``force``)."""
        # Under gthread one thread reloads; the others keep serving the current model.
        if not self._reload_lock.acquire(blocking=force):
            return
        try:
            self._next_check = self._clock() + self.interval * (
                1.0 - self._jitter * self._rand())
            try:
                stamp = self.store.current_stamp()
            except (SGDServeError, OSError) as exc:
                self._poll_failed(f"cannot check CURRENT: {exc}")
                return
            if stamp == self._stamp and not force and not self._retry:
                return
            self._stamp = stamp
            self._retry = False
            if stamp is None:
                return  # CURRENT is gone: keep whatever is loaded
            self._load_active()
        finally:
            self._reload_lock.release()

    def _poll_failed(self, reason: str) -> None:
        self._retry = True
        self._note_failure(None, reason)
        if self.metrics is not None:
            self.metrics.store_poll_failed()

    def _load_active(self) -> None:
        try:
            version = self.store.active_version()
        except (SGDServeError, OSError) as exc:
            self._poll_failed(str(exc))
            return
        if version is None:
            return
        if version == self._pair[0]:
            self.last_error = None  # CURRENT names what this worker serves: all is well
            return
        try:
            model, manifest = self.store.load(version)
        except (SGDServeError, OSError) as exc:
            self._retry = True
            self._note_failure(version, str(exc))
            if self.metrics is not None:
                self.metrics.model_load_failed(version)
            return
        previous = self._pair[0]
        self._loaded = (version, model, manifest)
        self._pair = (version, model)
        self.last_error = None
        log.info("serving model version %s (was %s)", version, previous or "none")
        if self.metrics is not None:
            self.metrics.model_loaded(version)

    def _note_failure(self, version: str | None, reason: str) -> None:
        repeated = reason == self.last_error
        self.last_error = reason
        if not repeated:  # a lasting fault (say, an unreachable store) is logged once
            # One line, no traceback: a bad artifact is an operational event, not a crash.
            log.error(
                "model reload failed (version %s): %s; still serving %s; retried at every poll",
                version or "?", reason, self._pair[0] or "none",
            )


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
