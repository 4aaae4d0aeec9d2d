"""Retrain jobs: the store lock handed to a child process that runs the training pipeline.

A request handler takes the store's lock (:func:`acquire_lock`: non-blocking, held means a
:class:`~service.errors.JobConflictError`), writes the job ``queued``, and :func:`start` runs
``python -m service.retrain`` and hands the lock to it. How is the store's business
(:class:`~service.store.HeldLock`): the local store's ``flock`` descriptor is inherited
(``pass_fds``; the lock belongs to the open file description, so the child holds it until it
exits, even when killed); the object store's lease is taken over by the child, which renews it
while it trains (and the parent frees it if the child dies without letting go). Either way a
``sgdserve train`` from a shell, or a second retrain on any worker or replica, is refused until
the job ends. The child runs the one training pipeline with ``lock=False`` and writes
``running`` then ``promoted``, ``rejected`` or ``failed`` to the job file, which any worker can
read.

The HTTP side (parameters, uploads, ``?wait=``) is service/http/retrain.py; this module knows
nothing of HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import JobConflictError, JobError, LockHeldError, StoreError
from .store import HeldLock, JobStatus, ModelStore, Signer, open_location
from .util import utc_iso

log = logging.getLogger("sgdserve.retrain")

DATA_FILE = "data"  # its format is in the job request (csv, parquet or jsonl)
FINISHING_WAIT = 2.0  # seconds a job that wrote its final status may take to exit


# -- the lock --------------------------------------------------------------------------------


def acquire_lock(store: ModelStore, job_id: str) -> HeldLock:
    """Take the store's lock for ``job_id``, to hand to the job's process.

    Raises :class:`JobConflictError` naming the running job (or the holder) when it is held.
    """

    def patience(holder: Mapping[str, Any], waited: float) -> bool:
        return _about_to_finish(store, holder, waited)

    try:
        return store.take_lock(f"retrain job {job_id}", patience=patience, job_id=job_id)
    except LockHeldError as exc:
        raise conflict_error(exc.holder) from None


def _about_to_finish(store: ModelStore, holder: Mapping[str, Any], waited: float) -> bool:
    """Whether a held lock is about to be free, so refusing now would be wrong: a job that has
    written its final status is only exiting, and a client that saw it finish and retrains at
    once must not be told it is still running."""
    job_id = holder.get("job_id")
    if not isinstance(job_id, str) or waited >= FINISHING_WAIT:
        return False
    try:
        return store.jobs.read(job_id).get("status") in JobStatus.final()
    except JobError:
        return False


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


def check_not_locked(store: ModelStore) -> None:
    """Refuse early (before reading an upload) when a training run already holds the lock."""
    started = time.monotonic()
    while (holder := store.is_locked()) is not None:
        if not _about_to_finish(store, holder, time.monotonic() - started):
            raise conflict_error(holder)
        time.sleep(0.01)


def release_unstarted(held: HeldLock) -> None:
    """Let go of a lock taken for a job that will not start after all."""
    held.release()


# -- starting and watching a job -------------------------------------------------------------


_SIGNING_ENV = ("SGDSERVE_SIGNING_KEY", "SGDSERVE_SIGNING_OLD_KEYS")


def start(
    store: ModelStore,
    job_id: str,
    held: HeldLock,
    *,
    on_exit: Callable[[dict[str, Any]], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Run the job in a child process and hand it the lock ``held``.

    A daemon thread reaps the child, frees the lock if the child died holding it, marks the job
    failed if it died without a final status, and passes the final record to ``on_exit``.
    """
    argv = [sys.executable, "-m", "service.retrain", *store.reopen_argv(), "--job", job_id,
            *held.child_argv()]
    # Never the API token; the signing keys are this store's (they may come from overrides).
    env = {k: v for k, v in os.environ.items()
           if k != "SGDSERVE_API_TOKEN" and k not in _SIGNING_ENV}
    if store.signer is not None:
        env["SGDSERVE_SIGNING_KEY"] = store.signer.key
        if store.signer.old_keys:
            env["SGDSERVE_SIGNING_OLD_KEYS"] = ",".join(store.signer.old_keys)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.Popen(argv, pass_fds=held.pass_fds(), stdin=subprocess.DEVNULL,
                                env=env)
    except OSError as exc:
        held.release()
        mark_failed(store, job_id, f"cannot start the training process: {exc}")
        raise
    held.handed_over()
    threading.Thread(
        target=_reap, args=(proc, store, job_id, held, on_exit), name=f"reap-{job_id}",
        daemon=True,
    ).start()
    return proc


def _reap(
    proc: subprocess.Popen[bytes],
    store: ModelStore,
    job_id: str,
    held: HeldLock,
    on_exit: Callable[[dict[str, Any]], None] | None,
) -> None:
    code = proc.wait()
    try:
        held.child_exited()
        record = store.jobs.read(job_id)
        if record.get("status") in JobStatus.active():
            record = mark_failed(
                store, job_id, f"training process exited with status {code} before finishing"
            )
        if on_exit is not None:
            on_exit(record)
    except Exception:  # a daemon thread has no caller to report to
        log.exception("cannot record the end of retrain job %s", job_id)


def mark_failed(store: ModelStore, job_id: str, reason: str) -> dict[str, Any]:
    """Record that a job failed without a result from training."""
    try:
        record = store.jobs.read(job_id)
    except JobError:
        record = {}
    record.update(status=JobStatus.FAILED, reason=reason, finished_at=utc_iso())
    return store.jobs.write(job_id, record)


def read_status(store: ModelStore, job_id: str) -> dict[str, Any]:
    """A job's status; a queued or running job whose process is gone is reported failed, and a
    promoted one that is no longer active says which version replaced it."""
    record = store.jobs.read(job_id)
    if record.get("status") in JobStatus.active():
        holder = store.is_locked()
        if holder is None or holder.get("job_id") != job_id:
            # The child writes its final status before it exits, and holds the lock until then.
            record = store.jobs.read(job_id)
            if record.get("status") in JobStatus.active():
                record = mark_failed(store, job_id, "training process ended without a result")
    if record.get("status") == JobStatus.PROMOTED:
        with contextlib.suppress(Exception):  # a damaged CURRENT is reported elsewhere
            active = store.active_version()
            if active != record.get("version"):
                record = dict(record, superseded_by=active)
    return record


def wait_for(store: ModelStore, job_id: str, seconds: float) -> dict[str, Any]:
    """Poll a job's file until it is final or ``seconds`` have passed; returns the last status."""
    deadline = time.monotonic() + seconds
    pause = 0.02
    while True:
        record = store.jobs.read(job_id)
        if record.get("status") not in JobStatus.active():
            return read_status(store, job_id)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return read_status(store, job_id)
        time.sleep(min(pause, remaining))
        pause = min(pause * 1.5, 0.25)


def remove_job_dir(directory: Path) -> None:
    """Delete a job's private directory (uploads of a refused or finished job)."""
    shutil.rmtree(directory, ignore_errors=True)


# -- the child process -----------------------------------------------------------------------


def run(store: ModelStore, job_id: str) -> int:
    """Train for ``job_id`` (the caller holds the handed-over lock); returns an exit status."""
    from .params import TrainingSpec
    from .training import train  # numerics are imported only in the child

    record = store.jobs.read(job_id)
    spec = TrainingSpec.from_dict(record.get("request", {}))
    directory = store.jobs.directory(job_id)
    record.update(status=JobStatus.RUNNING, started_at=utc_iso(), pid=os.getpid())
    store.jobs.write(job_id, record)
    try:
        result = train(
            store,
            directory / DATA_FILE,
            target=spec.target,
            features=spec.features,
            params=spec.sgd or None,
            encoding=spec.encoding or None,
            data_format=spec.format,
            force=spec.force,
            tolerance=spec.tolerance if spec.tolerance is not None else 0.01,
            holdout_fraction=spec.holdout_fraction,
            seed=spec.seed,
            source=record.get("request", {}).get("source"),
            owner=f"retrain job {job_id}",
            lock=False,
        )
    except Exception as exc:  # any failure ends the job with its reason, never silently
        record.update(
            status=JobStatus.FAILED,
            reason=_one_line(exc),
            error=type(exc).__name__,
            finished_at=utc_iso(),
        )
        store.jobs.write(job_id, record)
        log.warning("retrain job %s failed: %s", job_id, record["reason"])
        return 1
    finally:
        remove_job_dir(directory)  # the manifest keeps the data's fingerprint
    record.update(result.to_dict(), finished_at=utc_iso())  # status: promoted or rejected
    store.jobs.write(job_id, record)  # before the lock goes: see read_status
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process:
    ``python -m service.retrain --model-dir DIR --name N --job ID --lock HANDLE``."""
    parser = argparse.ArgumentParser(prog="python -m service.retrain", description=main.__doc__)
    parser.add_argument("--model-dir", required=True, help="a directory or an s3:// URL")
    parser.add_argument("--name", required=True)
    parser.add_argument("--keep", type=int, default=20)
    parser.add_argument("--job", required=True)
    parser.add_argument("--lock", required=True, help="the lock handed over (HeldLock)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    settings = Settings.from_env(model_dir=args.model_dir, model_name=args.name)
    signer = Signer.from_keys(settings.signing_key, settings.old_keys())
    store = open_location(settings.model_dir, args.name, args.keep, signer=signer)
    owner = f"retrain job {args.job}"
    try:
        with store.adopt_lock(args.lock, owner, job_id=args.job):
            return run(store, args.job)
    except (LockHeldError, StoreError) as exc:
        with contextlib.suppress(StoreError, JobError):
            mark_failed(store, args.job, str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
