"""Retrain jobs: validated parameters, the store lock handed to a child process, job files.

A request handler takes the store's lock (non-blocking: held means 409), writes the job
``queued``, and starts ``python -m service.jobs`` with the locked file descriptor inherited
(``pass_fds``). ``flock`` locks belong to the open file description, so the child holds the
lock until it exits, whichever worker started it, and a ``sgdserve train`` from a shell or a
second retrain in another worker is refused until then. The child runs the one training
pipeline with ``lock=False`` and writes ``running`` then ``promoted``, ``rejected`` or
``failed`` to the job file, which any worker can read.

The lock is taken here rather than with ``ModelStore.lock()`` because that context manager
unlocks the shared description on exit, which would release the child's lock too; the lock
file and the holder record are the same.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import store as store_module
from .errors import JobConflictError, JobError, LockHeldError

log = logging.getLogger("sgdserve.jobs")

ACTIVE_STATUSES = frozenset({"queued", "running"})
FINAL_STATUSES = frozenset({"promoted", "rejected", "failed"})
DATA_FILE = "data.csv"

# The training parameters a retrain accepts, and the SGDRegressor keyword each one sets.
SGD_PARAMS = {
    "epochs": "max_iter",
    "learning_rate": "eta0",
    "batch_size": "batch_size",
    "loss": "loss",
    "penalty": "penalty",
    "alpha": "alpha",
}
LOSSES = ("squared_error", "huber", "epsilon_insensitive", "squared_epsilon_insensitive")
PENALTIES = ("none", "l2", "l1", "elasticnet")
PARAMETERS = ("target", "features", "force", "seed", *SGD_PARAMS)
MAX_EPOCHS = 100_000
MAX_FEATURES = 1000
MAX_WAIT_SECONDS = 60.0
FINISHING_WAIT = 2.0  # seconds a job that wrote its final status may take to exit

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ParameterError(ValueError):
    """A retrain parameter is invalid; ``name`` is the parameter."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


# -- parameters ------------------------------------------------------------------------------


def parse_params(values: Mapping[str, Any], *, typed: bool) -> dict[str, Any]:
    """Validate retrain parameters; ``typed`` for JSON values, else strings from a form or query.

    Returns ``{"target", "features", "force", "seed", "params"}`` where ``params`` holds the
    SGDRegressor keywords that were given.
    """
    for name in values:
        if name not in PARAMETERS:
            raise ParameterError(
                name, f"unknown parameter {name[:50]!r}; expected one of {', '.join(PARAMETERS)}"
            )
    spec: dict[str, Any] = {"target": None, "features": None, "force": False, "seed": 0}
    params: dict[str, Any] = {}
    if "target" in values:
        spec["target"] = _name("target", values["target"])
    if "features" in values:
        spec["features"] = _features(values["features"], typed)
    if "force" in values:
        spec["force"] = _bool("force", values["force"], typed)
    if "seed" in values:
        spec["seed"] = _int("seed", values["seed"], typed, low=0, high=2**32 - 1)
    if "epochs" in values:
        params["max_iter"] = _int("epochs", values["epochs"], typed, low=1, high=MAX_EPOCHS)
    if "batch_size" in values:
        params["batch_size"] = _int("batch_size", values["batch_size"], typed, low=1)
    if "learning_rate" in values:
        params["eta0"] = _float("learning_rate", values["learning_rate"], typed, positive=True)
    if "alpha" in values:
        params["alpha"] = _float("alpha", values["alpha"], typed, positive=False)
    if "loss" in values:
        params["loss"] = _choice("loss", values["loss"], LOSSES)
    if "penalty" in values:
        params["penalty"] = _choice("penalty", values["penalty"], PENALTIES)
    spec["params"] = params
    return spec


def _name(param: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(param, f"{param} must be a non-empty string, got {_show(value)}")
    if len(value) > 200:
        raise ParameterError(param, f"{param} must be at most 200 characters")
    return value.strip()


def _features(value: Any, typed: bool) -> list[str]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ParameterError(
                    "features", f"features is not a valid JSON list: {_show(value)}"
                ) from None
        else:
            value = [part.strip() for part in text.split(",")]
    if not isinstance(value, list) or not value:
        raise ParameterError(
            "features", f"features must be a non-empty list of column names, got {_show(value)}"
        )
    if len(value) > MAX_FEATURES:
        raise ParameterError("features", f"features must name at most {MAX_FEATURES} columns")
    names = [_name("features", v) for v in value]
    if len(set(names)) != len(names):
        raise ParameterError("features", f"features must be unique, got {_show(names)}")
    return names


def _bool(param: str, value: Any, typed: bool) -> bool:
    if isinstance(value, bool):
        return value
    if not typed and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ParameterError(param, f"{param} must be true or false, got {_show(value)}")


def _int(param: str, value: Any, typed: bool, *, low: int, high: int | None = None) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif not typed and isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = int(value.strip())
    if number is None:
        raise ParameterError(param, f"{param} must be an integer, got {_show(value)}")
    if number < low or (high is not None and number > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ParameterError(param, f"{param} must be {bound}, got {number}")
    return number


def _float(param: str, value: Any, typed: bool, *, positive: bool) -> float:
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif not typed and isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise ParameterError(param, f"{param} must be a finite number, got {_show(value)}")
    if positive and number <= 0:
        raise ParameterError(param, f"{param} must be > 0, got {number:g}")
    if not positive and number < 0:
        raise ParameterError(param, f"{param} must be >= 0, got {number:g}")
    return number


def _choice(param: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ParameterError(
            param, f"{param} must be one of {', '.join(choices)}, got {_show(value)}"
        )
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def wait_limit(settings: Any) -> float:
    """The longest ``?wait=``: a sync worker blocks meanwhile, so stay inside its timeout."""
    if settings.timeout > 0:
        return max(0.0, min(MAX_WAIT_SECONDS, settings.timeout - 5.0))
    return MAX_WAIT_SECONDS


def parse_wait(raw: str | None, limit: float) -> float:
    """Seconds to wait for a job (``?wait=``), between 0 and ``limit``."""
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= limit:  # also refuses NaN
        raise ParameterError("wait", f"wait must be between 0 and {limit:g} seconds, got {raw!r}")
    return seconds


# -- the lock --------------------------------------------------------------------------------


def acquire_lock(store: Any, job_id: str) -> int:
    """Take the store's lock for ``job_id``; returns the locked file descriptor.

    Raises :class:`JobConflictError` naming the running job (or the holder) when it is held.
    """
    store.path.mkdir(parents=True, exist_ok=True)
    fd = os.open(store.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = store.is_locked()
                if holder is not None and not _worth_waiting(store, holder, started):
                    raise conflict_error(holder) from None
                time.sleep(0.01)
        write_holder(fd, job_id)
    except BaseException:
        os.close(fd)  # closing the only descriptor releases the lock
        raise
    return fd


def _worth_waiting(store: Any, holder: Mapping[str, Any], started: float) -> bool:
    """Whether a held lock is about to be free, so refusing now would be wrong."""
    waited = time.monotonic() - started
    if holder.get("pid") is None:
        # An is_locked() probe by another worker, or a holder still writing its record.
        return waited < 0.25
    job_id = holder.get("job_id")
    if isinstance(job_id, str) and waited < FINISHING_WAIT:
        # A job that has written its final status is only exiting: a client that saw it
        # finish and retrains at once must not be told it is still running.
        try:
            return store.read_job(job_id).get("status") in FINAL_STATUSES
        except JobError:
            return False
    return False


def write_holder(fd: int, job_id: str) -> None:
    """Describe the holder in the lock file, as ``ModelStore.lock`` does, plus the job id."""
    store_module.write_holder(fd, f"retrain job {job_id}", job_id=job_id)


def clear_holder(fd: int) -> None:
    """Empty the holder description before the lock goes, so a stale one is never reported."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)


def conflict_error(holder: Mapping[str, Any] | None) -> JobConflictError:
    """The 409 error for a lock held by ``holder`` (a retrain job, or another process)."""
    holder = holder or {}
    job_id = holder.get("job_id")
    if isinstance(job_id, str):
        return JobConflictError(f"retrain job {job_id} is running", job_id=job_id)
    who = f"pid {holder['pid']}" if holder.get("pid") is not None else "another process"
    if holder.get("owner"):
        who += f" ({holder['owner']})"
    return JobConflictError(f"a training run is in progress: the model store is locked by {who}")


def check_not_locked(store: Any) -> None:
    """Refuse early (before reading an upload) when a training run already holds the lock."""
    started = time.monotonic()
    while (holder := store.is_locked()) is not None:
        if not _worth_waiting(store, holder, started):
            raise conflict_error(holder)
        time.sleep(0.01)


# -- starting and watching a job -------------------------------------------------------------


def start(
    store: Any,
    job_id: str,
    fd: int,
    *,
    on_exit: Callable[[dict[str, Any]], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Run the job in a child process that inherits the locked ``fd``; closes ours.

    A daemon thread reaps the child, marks the job failed if it died without a final status,
    and passes the final record to ``on_exit``.
    """
    root = str(Path(store.root).absolute())
    argv = [
        sys.executable, "-m", "service.jobs",
        "--root", root, "--name", store.name, "--keep", str(store.keep),
        "--job", job_id, "--lock-fd", str(fd),
    ]
    env = {k: v for k, v in os.environ.items() if k != "SGDSERVE_API_TOKEN"}
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.Popen(argv, pass_fds=(fd,), stdin=subprocess.DEVNULL, env=env)
    except OSError as exc:
        clear_holder(fd)
        mark_failed(store, job_id, f"cannot start the training process: {exc}")
        raise
    finally:
        os.close(fd)  # the child's copy keeps the lock
    threading.Thread(
        target=_reap, args=(proc, store, job_id, on_exit), name=f"reap-{job_id}", daemon=True
    ).start()
    return proc


def _reap(
    proc: subprocess.Popen[bytes],
    store: Any,
    job_id: str,
    on_exit: Callable[[dict[str, Any]], None] | None,
) -> None:
    code = proc.wait()
    try:
        record = store.read_job(job_id)
        if record.get("status") in ACTIVE_STATUSES:
            record = mark_failed(
                store, job_id, f"training process exited with status {code} before finishing"
            )
        if on_exit is not None:
            on_exit(record)
    except Exception:  # a daemon thread has no caller to report to
        log.exception("cannot record the end of retrain job %s", job_id)


def mark_failed(store: Any, job_id: str, reason: str) -> dict[str, Any]:
    """Record that a job failed without a result from training."""
    try:
        record = store.read_job(job_id)
    except JobError:
        record = {}
    record.update(status="failed", reason=reason, finished_at=_now())
    return store.write_job(job_id, record)


def read_status(store: Any, job_id: str) -> dict[str, Any]:
    """A job's status; a queued or running job whose process is gone is reported failed."""
    record = store.read_job(job_id)
    if record.get("status") in ACTIVE_STATUSES:
        holder = store.is_locked()
        if holder is None or holder.get("job_id") != job_id:
            # The child writes its final status before it exits, and holds the lock until then.
            record = store.read_job(job_id)
            if record.get("status") in ACTIVE_STATUSES:
                record = mark_failed(store, job_id, "training process ended without a result")
    return record


def wait_for(store: Any, job_id: str, seconds: float) -> dict[str, Any]:
    """Poll a job's file until it is final or ``seconds`` have passed; returns the last status."""
    deadline = time.monotonic() + seconds
    pause = 0.02
    while True:
        record = store.read_job(job_id)
        if record.get("status") not in ACTIVE_STATUSES:
            return record
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return read_status(store, job_id)
        time.sleep(min(pause, remaining))
        pause = min(pause * 1.5, 0.25)


def remove_job_dir(directory: Path) -> None:
    """Delete a job's private directory (uploads of a refused or finished job)."""
    shutil.rmtree(directory, ignore_errors=True)


# -- the child process -----------------------------------------------------------------------


def run(store: Any, job_id: str, fd: int) -> int:
    """Train for ``job_id`` while holding the inherited lock ``fd``; returns an exit status."""
    from . import training  # numerics are imported only in the child

    write_holder(fd, job_id)  # the holder is now this process
    record = store.read_job(job_id)
    spec = record.get("request", {})
    directory = store.job_dir(job_id)
    record.update(status="running", started_at=_now(), pid=os.getpid())
    store.write_job(job_id, record)
    try:
        result = training.train(
            store,
            directory / DATA_FILE,
            target=spec["target"],
            features=spec.get("features"),
            params=spec.get("params") or None,
            force=bool(spec.get("force")),
            tolerance=float(spec.get("tolerance", 0.01)),
            seed=int(spec.get("seed", 0)),
            source=spec.get("source"),
            owner=f"retrain job {job_id}",
            lock=False,
        )
    except Exception as exc:  # any failure ends the job with its reason, never silently
        record.update(
            status="failed",
            reason=_one_line(exc),
            error=type(exc).__name__,
            finished_at=_now(),
        )
        store.write_job(job_id, record)
        log.warning("retrain job %s failed: %s", job_id, record["reason"])
        return 1
    finally:
        remove_job_dir(directory)  # the manifest keeps the data's fingerprint
    record.update(result.to_dict(), finished_at=_now())  # status: promoted or rejected
    store.write_job(job_id, record)
    clear_holder(fd)
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process: ``python -m service.jobs --job ID --lock-fd FD ...``."""
    parser = argparse.ArgumentParser(prog="python -m service.jobs", description=main.__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--keep", type=int, default=20)
    parser.add_argument("--job", required=True)
    parser.add_argument("--lock-fd", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    from .store import ModelStore

    store = ModelStore(args.root, args.name, keep=args.keep)
    try:
        fcntl.flock(args.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: a no-op check
    except (BlockingIOError, OSError):
        mark_failed(store, args.job, "the training process did not inherit the store lock")
        return 2
    try:
        return run(store, args.job, args.lock_fd)
    except LockHeldError as exc:
        mark_failed(store, args.job, str(exc))
        return 2
    finally:
        clear_holder(args.lock_fd)
        os.close(args.lock_fd)


if __name__ == "__main__":
    sys.exit(main())
