"""The versioned model store on disk: atomic save and promote, sha256 checks, a lock, job files.

Layout (``store.path = Path(root) / name``)::

    <name>/CURRENT                      the active version id, one line, replaced atomically
    <name>/history.jsonl                one line per promotion: time, version, previous
    <name>/versions/<id>/model.joblib   LinearModel.to_state(): plain arrays and primitives
    <name>/versions/<id>/manifest.json  id, created_at, sha256 of model.joblib, parent, status, ...
    <name>/jobs/<job-id>.json           retrain job status (+ jobs/<job-id>/ for uploaded data)
    <name>/.lock                        fcntl.flock lock file; holds the holder's description

A version directory is written under ``versions/.tmp-*`` and renamed into place only when both
files are on disk; ``CURRENT`` is written to a temporary file and swapped in with ``os.replace``.
A process killed at any point therefore leaves either the old or the new state, never a half one.
See docs/model-store.md for what a crash at each step leaves behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import platform
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np

from . import __version__
from .errors import (
    IntegrityError,
    JobError,
    JobNotFoundError,
    LockHeldError,
    NoActiveModelError,
    VersionNotFoundError,
)
from .model import LinearModel

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["FAULT_STEPS", "JobNotFoundError", "ModelStore"]

# Version ids: UTC timestamp with microseconds, then a random suffix; they sort in creation order.
_VERSION_RE = re.compile(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}")
_JOB_RE = re.compile(r"job-\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_TS_FORMAT = "%Y%m%dT%H%M%S.%fZ"

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
TMP_PREFIX = ".tmp-"
DELETE_PREFIX = ".tmp-delete-"
TMP_MAX_AGE = 3600.0  # an unfinished save older than this is abandoned
JOB_MAX_AGE = 86400.0
JOBS_KEPT = 100
ACTIVE_JOB_STATUSES = frozenset({"queued", "running"})

# Every step at which ``_fault`` is called, in order; tests crash the store at each one.
FAULT_STEPS: tuple[str, ...] = (
    "save:tmp-created",
    "save:model-written",
    "save:tmp-written",
    "save:renamed",
    "save:done",
    "activate:verified",
    "activate:tmp-written",
    "activate:replaced",
    "activate:synced",
    "activate:history-written",
    "prune:renamed",
    "prune:removed",
    "job:tmp-written",
    "job:replaced",
)


class ModelStore:
    """Versions of one model under ``root/name``; safe to share between processes."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        name: str = "house-price",
        keep: int = 20,
        *,
        _fault: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(f"model name must be letters, digits, '.', '_' or '-', got {name!r}")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1, got {keep!r}")
        self.root = Path(root)
        self.name = name
        self.keep = keep
        self.path = self.root / name
        self._fault = _fault

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelStore:
        """The store that ``settings`` (model_dir, model_name, keep_versions) points at."""
        return cls(settings.model_dir, settings.model_name, keep=settings.keep_versions)

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r}, name={self.name!r}, keep={self.keep})"

    # -- paths ---------------------------------------------------------------------------

    @property
    def versions_dir(self) -> Path:
        return self.path / "versions"

    @property
    def jobs_dir(self) -> Path:
        return self.path / "jobs"

    @property
    def current_file(self) -> Path:
        return self.path / "CURRENT"

    @property
    def history_file(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    def version_dir(self, version_id: str) -> Path:
        """Directory of a version; the id is validated first (no path traversal)."""
        return self.versions_dir / self._check_id(version_id)

    def _step(self, name: str) -> None:
        if self._fault is not None:
            self._fault(name)

    def _not_found(self, version_id: object) -> VersionNotFoundError:
        shown = version_id[:80] if isinstance(version_id, str) else version_id
        return VersionNotFoundError(f"version {shown!r} not found in {self.path}")

    def _check_id(self, version_id: object) -> str:
        if not isinstance(version_id, str) or not _VERSION_RE.fullmatch(version_id):
            raise self._not_found(version_id)
        return version_id

    # -- saving ----------------------------------------------------------------------------

    def save(
        self,
        model: LinearModel,
        manifest: Mapping[str, Any],
        *,
        parent: str | None,
        status: str = "candidate",
    ) -> str:
        """Write a new version (not yet active) and return its id."""
        if not isinstance(model, LinearModel):
            raise TypeError(f"model must be a LinearModel, got {type(model).__name__}")
        if not isinstance(manifest, Mapping):
            raise TypeError(f"manifest must be a mapping, got {type(manifest).__name__}")
        if parent is not None:
            self._check_id(parent)
        if not isinstance(status, str) or not status:
            raise ValueError(f"status must be a non-empty string, got {status!r}")

        buffer = io.BytesIO()
        joblib.dump(model.to_state(), buffer)
        model_bytes = buffer.getvalue()

        sha256 = hashlib.sha256(model_bytes).hexdigest()
        fields = _to_json(dict(manifest), "manifest")

        self.versions_dir.mkdir(parents=True, exist_ok=True)
        while True:
            version_id = self._new_version_id()
            tmp = self.versions_dir / f"{TMP_PREFIX}{version_id}-{secrets.token_hex(4)}"
            tmp.mkdir()
            try:
                self._step("save:tmp-created")
                full = dict(fields)
                full.update(
                    id=version_id,
                    created_at=_utc_iso(timespec="milliseconds"),
                    sha256=sha256,
                    parent=parent,
                    status=status,
                    features=list(model.feature_names),
                    target=model.target,
                    library_versions=_library_versions(),
                )
                _write_file(tmp / MODEL_FILE, model_bytes)
                self._step("save:model-written")
                _write_file(tmp / MANIFEST_FILE, _dumps(full))
                _fsync_dir(tmp)
                self._step("save:tmp-written")
                # rename(2) of a directory onto an existing non-empty one fails: never overwrites.
                tmp.rename(self.versions_dir / version_id)
            except OSError as exc:
                _rmtree(tmp)
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue  # another process took the same id in the same microsecond
                raise
            except BaseException:
                _rmtree(tmp)  # a failed save leaves nothing behind (a killed one: see prune)
                raise
            self._step("save:renamed")
            _fsync_dir(self.versions_dir)
            self._step("save:done")
            return version_id

    def _new_version_id(self) -> str:
        """A fresh id greater than every id present, even if the clock went back."""
        now = dt.datetime.now(dt.UTC)
        latest = max(self._known_ids(), default=None)
        if latest is not None:
            last = dt.datetime.strptime(latest.split("-")[0], _TS_FORMAT).replace(tzinfo=dt.UTC)
            if now <= last:
                now = last + dt.timedelta(microseconds=1)
        return f"{now.strftime(_TS_FORMAT)}-{secrets.token_hex(3)}"

    def _known_ids(self) -> Iterator[str]:
        for entry in _listdir(self.versions_dir):
            candidate = entry
            if entry.startswith(TMP_PREFIX) and not entry.startswith(DELETE_PREFIX):
                candidate = entry[len(TMP_PREFIX) :].rsplit("-", 1)[0]
            if _VERSION_RE.fullmatch(candidate):
                yield candidate
        with contextlib.suppress(IntegrityError):
            active = self.active_version()
            if active is not None:
                yield active

    def set_status(self, version_id: str, status: str) -> dict[str, Any]:
        """Rewrite the ``status`` field of a version's manifest atomically; returns the manifest."""
        if not isinstance(status, str) or not status:
            raise ValueError(f"status must be a non-empty string, got {status!r}")
        manifest = self.get(version_id)
        manifest["status"] = status
        directory = self.version_dir(version_id)
        _atomic_write(directory / MANIFEST_FILE, _dumps(manifest))
        return manifest

    # -- reading ---------------------------------------------------------------------------

    def get(self, version_id: str) -> dict[str, Any]:
        """The manifest of a version."""
        directory = self.version_dir(version_id)
        return self._read_manifest(version_id, directory)

    def _read_manifest(self, version_id: str, directory: Path) -> dict[str, Any]:
        try:
            raw = (directory / MANIFEST_FILE).read_bytes()
        except FileNotFoundError:
            if not directory.is_dir():
                raise self._not_found(version_id) from None
            raise IntegrityError(f"version {version_id!r}: {MANIFEST_FILE} is missing") from None
        except OSError as exc:
            raise IntegrityError(
                f"version {version_id!r}: cannot read {MANIFEST_FILE}: {exc.strerror}"
            ) from None
        try:
            manifest = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise IntegrityError(
                f"version {version_id!r}: {MANIFEST_FILE} is not valid JSON ({exc})"
            ) from None
        if not isinstance(manifest, dict):
            raise IntegrityError(f"version {version_id!r}: {MANIFEST_FILE} is not an object")
        if manifest.get("id") != version_id:
            raise IntegrityError(
                f"version {version_id!r}: {MANIFEST_FILE} names id {manifest.get('id')!r}"
            )
        sha256 = manifest.get("sha256")
        if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
            raise IntegrityError(f"version {version_id!r}: manifest has no valid sha256")
        return manifest

    def load(self, version_id: str) -> tuple[LinearModel, dict[str, Any]]:
        """The model and manifest of a version, after checking model.joblib against its sha256."""
        directory = self.version_dir(version_id)
        manifest = self._read_manifest(version_id, directory)
        expected = manifest["sha256"]
        try:
            data = (directory / MODEL_FILE).read_bytes()
        except FileNotFoundError:
            if not directory.is_dir():
                raise self._not_found(version_id) from None
            raise IntegrityError(f"version {version_id!r}: {MODEL_FILE} is missing") from None
        except OSError as exc:
            raise IntegrityError(
                f"version {version_id!r}: cannot read {MODEL_FILE}: {exc.strerror}"
            ) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise IntegrityError(
                f"version {version_id!r}: {MODEL_FILE} sha256 {actual[:12]}... does not match "
                f"manifest {expected[:12]}... ({len(data)} bytes; tampered or truncated)"
            )
        # Unpickle only the bytes just verified, so a file swapped after hashing is never loaded.
        try:
            state = joblib.load(io.BytesIO(data))
        except Exception as exc:  # any unpickling failure means a bad artifact
            raise IntegrityError(
                f"version {version_id!r}: {MODEL_FILE} cannot be loaded ({type(exc).__name__})"
            ) from None
        try:
            model = LinearModel.from_state(state)
        except (TypeError, ValueError) as exc:
            raise IntegrityError(f"version {version_id!r}: bad model state: {exc}") from None
        return model, manifest

    def active_version(self) -> str | None:
        """The id in ``CURRENT``, or None when nothing has been promoted."""
        try:
            text = self.current_file.read_text(encoding="utf-8", errors="replace").strip()
        except FileNotFoundError:
            return None
        if not _VERSION_RE.fullmatch(text):
            raise IntegrityError(f"{self.current_file} holds an invalid version id {text[:80]!r}")
        return text

    def current_stamp(self) -> tuple[int, int, int] | None:
        """A cheap value that changes whenever ``CURRENT`` is replaced (None when absent)."""
        try:
            st = os.stat(self.current_file)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def active(self) -> tuple[str, LinearModel, dict[str, Any]]:
        """The active version's id, model and manifest."""
        version_id = self.active_version()
        if version_id is None:
            raise NoActiveModelError(
                f"no active model in {self.path}; train one with "
                "`sgdserve train --data FILE --target COL`"
            )
        try:
            model, manifest = self.load(version_id)
        except VersionNotFoundError:
            raise IntegrityError(
                f"CURRENT names version {version_id!r}, which is missing from {self.path}"
            ) from None
        return version_id, model, manifest

    def list(self) -> list[dict[str, Any]]:
        """Manifests of every version sorted by id; unreadable ones have status "corrupt"."""
        result = []
        for version_id in self._version_ids():
            try:
                result.append(self.get(version_id))
            except VersionNotFoundError:
                continue  # pruned while we listed
            except IntegrityError as exc:
                result.append({"id": version_id, "status": "corrupt", "error": str(exc)})
        return result

    def _version_ids(self) -> list[str]:
        return sorted(e for e in _listdir(self.versions_dir) if _VERSION_RE.fullmatch(e))

    # -- promoting -------------------------------------------------------------------------

    def activate(self, version_id: str) -> str | None:
        """Make a version the active one after checking it loads; returns the previous id.

        Rollback is activating an older id. Callers serialise promotions with :meth:`lock`.
        """
        self.load(version_id)  # raises before anything is written
        self._step("activate:verified")
        try:
            previous = self.active_version()
        except IntegrityError:
            previous = None
        _atomic_write(
            self.current_file,
            (version_id + "\n").encode(),
            after_tmp=lambda: self._step("activate:tmp-written"),
            after_replace=lambda: self._step("activate:replaced"),
        )
        self._step("activate:synced")
        entry = {
            "time": _utc_iso(),
            "version": version_id,
            "previous": previous,
            "pid": os.getpid(),
        }
        fd = os.open(self.history_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # One write(2) of one short line under O_APPEND: concurrent appends do not interleave.
            os.write(fd, _dumps(entry, indent=None) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        self._step("activate:history-written")
        return previous

    def history(self) -> list[dict[str, Any]]:
        """Every promotion recorded in ``history.jsonl``, oldest first (torn lines skipped)."""
        try:
            lines = self.history_file.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        return [entry for entry in map(_parse_line, lines) if entry is not None]

    def last_promotion(self) -> dict[str, Any] | None:
        """The latest promotion (time, version, previous), or None when there was none."""
        try:
            with open(self.history_file, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 65536))
                lines = f.read().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            entry = _parse_line(line)
            if entry is not None:
                return entry
        return None

    # -- retention -------------------------------------------------------------------------

    def prune(self) -> list[str]:
        """Delete versions beyond the newest ``keep`` (never the active one or its parent).

        Also removes abandoned temporary directories and old job files. Returns deleted ids.
        """
        protected: set[str] = set()
        with contextlib.suppress(IntegrityError):
            active = self.active_version()
            if active is not None:
                protected.add(active)
                with contextlib.suppress(IntegrityError, VersionNotFoundError):
                    parent = self.get(active).get("parent")
                    if isinstance(parent, str):
                        protected.add(parent)
        ids = self._version_ids()
        doomed = [v for v in ids[: max(0, len(ids) - self.keep)] if v not in protected]
        removed = []
        for version_id in doomed:
            # Rename first so no reader ever sees a half-deleted version.
            grave = self.versions_dir / f"{DELETE_PREFIX}{version_id}-{secrets.token_hex(4)}"
            try:
                (self.versions_dir / version_id).rename(grave)
            except FileNotFoundError:
                continue  # another process pruned it
            try:
                _fsync_dir(self.versions_dir)
                self._step("prune:renamed")
            finally:
                _rmtree(grave)
            self._step("prune:removed")
            removed.append(version_id)
        now = time.time()
        for entry in _listdir(self.versions_dir):
            if entry.startswith(DELETE_PREFIX):
                _rmtree(self.versions_dir / entry)
            elif (
                entry.startswith(TMP_PREFIX) and _age(self.versions_dir / entry, now) > TMP_MAX_AGE
            ):
                _rmtree(self.versions_dir / entry)
        for entry in _listdir(self.path):  # e.g. a CURRENT temp file of a killed activate()
            if entry.startswith(TMP_PREFIX) and _age(self.path / entry, now) > TMP_MAX_AGE:
                _rmtree(self.path / entry)
        self.prune_jobs()
        return removed

    # -- the lock --------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, wait: bool | float = False, owner: str = "") -> Iterator[dict[str, Any]]:
        """Hold the store's exclusive lock; yields the holder description written into it.

        ``wait=False`` fails fast with :class:`LockHeldError` naming the holder, ``True`` blocks,
        a number waits up to that many seconds. Not re-entrant: a second ``lock()`` in the same
        process fails like any other holder.
        """
        if wait is not True and wait is not False:
            wait = float(wait)
            if not wait >= 0:
                raise ValueError(f"wait must be True, False or seconds >= 0, got {wait!r}")
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._acquire(fd, wait)
            try:
                yield write_holder(fd, owner)
            finally:
                # Clear the description first so a stale holder is never reported.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _acquire(self, fd: int, wait: bool | float) -> None:
        if wait is True:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return
        timeout = 0.0 if wait is False else float(wait)
        start = time.monotonic()
        # A holder that has not yet written its description (or an is_locked() probe) is
        # given a moment before we report the lock as held by an unknown process.
        grace = 0.25
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                holder = self._read_holder()
                if holder is None and elapsed < grace:
                    time.sleep(0.01)
                    continue
                message = _held_message(holder)
                if timeout > 0:
                    message += f" (waited {timeout:g} s)"
                raise LockHeldError(message)
            time.sleep(min(0.02, max(0.0, timeout - elapsed)))

    def is_locked(self) -> dict[str, Any] | None:
        """The holder's description (pid, owner, host, since) when the lock is held, else None."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            # A shared probe does not conflict with other probes; released at once.
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
        finally:
            os.close(fd)
        for _ in range(25):
            holder = self._read_holder()
            if holder is not None:
                return holder
            time.sleep(0.01)
        return {"pid": None, "owner": "", "host": None, "since": None}

    def _read_holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.lock_file.read_bytes())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) and "pid" in holder else None

    # -- jobs ------------------------------------------------------------------------------

    def new_job_id(self) -> str:
        """A fresh job id; ids sort by creation time."""
        now = dt.datetime.now(dt.UTC)
        return f"job-{now.strftime(_TS_FORMAT)}-{secrets.token_hex(3)}"

    def _check_job_id(self, job_id: object) -> str:
        if not isinstance(job_id, str) or not _JOB_RE.fullmatch(job_id):
            shown = job_id[:80] if isinstance(job_id, str) else job_id
            raise JobNotFoundError(f"job {shown!r} not found in {self.path}")
        return job_id

    def job_dir(self, job_id: str) -> Path:
        """The job's private directory (created), e.g. for its uploaded data."""
        directory = self.jobs_dir / self._check_job_id(job_id)
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def write_job(self, job_id: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a job's status file atomically; adds ``id`` and ``updated_at``."""
        self._check_job_id(job_id)
        if not isinstance(status, Mapping):
            raise TypeError(f"job status must be a mapping, got {type(status).__name__}")
        record = _to_json(dict(status), "job status")
        record.update(id=job_id, updated_at=_utc_iso(timespec="milliseconds"))
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(
            self.jobs_dir / f"{job_id}.json",
            _dumps(record),
            after_tmp=lambda: self._step("job:tmp-written"),
            after_replace=lambda: self._step("job:replaced"),
        )
        return record

    def read_job(self, job_id: str) -> dict[str, Any]:
        """A job's last written status."""
        self._check_job_id(job_id)
        try:
            raw = (self.jobs_dir / f"{job_id}.json").read_bytes()
        except FileNotFoundError:
            raise JobNotFoundError(f"job {job_id!r} not found in {self.path}") from None
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise JobError(f"job {job_id!r}: status file is not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise JobError(f"job {job_id!r}: status file is not an object")
        return record

    def list_jobs(self) -> list[dict[str, Any]]:
        """Every job's status sorted by id; unreadable ones have status "corrupt"."""
        jobs = []
        for job_id in self._job_ids():
            try:
                jobs.append(self.read_job(job_id))
            except JobNotFoundError:
                continue
            except JobError as exc:
                jobs.append({"id": job_id, "status": "corrupt", "error": str(exc)})
        return jobs

    def _job_ids(self) -> list[str]:
        return sorted(
            e[: -len(".json")]
            for e in _listdir(self.jobs_dir)
            if e.endswith(".json") and _JOB_RE.fullmatch(e[: -len(".json")])
        )

    def prune_jobs(self) -> list[str]:
        """Remove jobs older than a day, and finished jobs beyond the newest 100."""
        now = time.time()
        ids = set(self._job_ids())
        ids.update(e for e in _listdir(self.jobs_dir) if _JOB_RE.fullmatch(e))  # dirs alone
        ordered = sorted(ids)
        recent = set(ordered[-JOBS_KEPT:])
        removed = []
        for job_id in ordered:
            status_file = self.jobs_dir / f"{job_id}.json"
            directory = self.jobs_dir / job_id
            age = _age(status_file if status_file.exists() else directory, now)
            if age <= JOB_MAX_AGE:
                if job_id in recent:
                    continue
                with contextlib.suppress(JobError):
                    if self.read_job(job_id).get("status") in ACTIVE_JOB_STATUSES:
                        continue
            # Status file first: a job without one reads as not found, never as half-deleted.
            with contextlib.suppress(FileNotFoundError):
                status_file.unlink()
            _rmtree(directory)
            removed.append(job_id)
        for entry in _listdir(self.jobs_dir):
            if entry.startswith(TMP_PREFIX) and _age(self.jobs_dir / entry, now) > TMP_MAX_AGE:
                _rmtree(self.jobs_dir / entry)
        return removed


# -- helpers -------------------------------------------------------------------------------


def write_holder(fd: int, owner: str, **extra: Any) -> dict[str, Any]:
    """Describe the holder (pid, owner, host, since, plus ``extra``) in the locked file ``fd``.

    The one place the record's shape is made: ``ModelStore.lock`` and the retrain jobs, which
    take the same lock on a descriptor they hand to a child process, both write it here.
    """
    holder = {
        "pid": os.getpid(),
        "owner": owner,
        "host": socket.gethostname(),
        "since": _utc_iso(),
        **extra,
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, _dumps(holder, indent=None), 0)
    return holder


def _held_message(holder: Mapping[str, Any] | None) -> str:
    if not holder:
        return "model store is locked by another process"
    text = f"model store is locked by pid {holder.get('pid')}"
    host = holder.get("host")
    if host and host != socket.gethostname():
        text += f" on {host}"
    if holder.get("owner"):
        text += f" ({holder['owner']})"
    if holder.get("since"):
        text += f" since {holder['since']}"
    return text


def _utc_iso(timespec: str = "seconds") -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def _library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "joblib": joblib.__version__,
        "sgdserve": __version__,
    }


def _to_json(value: Any, where: str) -> Any:
    """Reduce to strict JSON values: numpy to Python, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): _to_json(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _to_json(value.tolist(), where)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"{where} is not JSON-serialisable: {type(value).__name__}")


def _dumps(value: Any, indent: int | None = 2) -> bytes:
    text = json.dumps(value, indent=indent, sort_keys=indent is not None, allow_nan=False)
    return text.encode() + (b"\n" if indent is not None else b"")


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (must not exist), write ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(
    path: Path,
    data: bytes,
    *,
    after_tmp: Callable[[], None] | None = None,
    after_replace: Callable[[], None] | None = None,
) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new bytes, never a mix."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}")
    try:
        _write_file(tmp, data)
        if after_tmp is not None:
            after_tmp()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if after_replace is not None:
        after_replace()
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _rmtree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
