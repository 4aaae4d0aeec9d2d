"""Retrain job files: one JSON status file per job, readable by every worker and replica.

    <name>/jobs/<job-id>.json    the job's last status, replaced atomically
    <name>/jobs/<job-id>/        the job's private directory (its uploaded data)

:class:`JobFiles` keeps both in a directory; a backend whose status records live elsewhere (the
object store) overrides the five ``_record`` methods and keeps the private directories on local
disk, where the job's child process, on the same host, reads them.

A job moves ``queued -> running -> promoted | rejected | failed``: :class:`JobStatus` is the one
list of those names.
"""

from __future__ import annotations

import contextlib
import enum
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import JobError, JobNotFoundError
from ..util import to_json, utc_iso
from . import files
from .ids import JOB_RE, new_job_id

__all__ = ["JOB_MAX_AGE", "JOBS_KEPT", "JobFiles", "JobStatus"]

JOB_MAX_AGE = 86400.0  # seconds: older jobs are pruned
JOBS_KEPT = 100  # finished jobs kept within that age


class JobStatus(enum.StrEnum):
    """Where a retrain job is: waiting, training, or finished one of three ways."""

    QUEUED = "queued"
    RUNNING = "running"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    FAILED = "failed"

    @classmethod
    def active(cls) -> frozenset[str]:
        """Statuses of a job that has not finished."""
        return _ACTIVE

    @classmethod
    def final(cls) -> frozenset[str]:
        """Statuses of a finished job: its outcome."""
        return _FINAL


_ACTIVE = frozenset({JobStatus.QUEUED.value, JobStatus.RUNNING.value})
_FINAL = frozenset({JobStatus.PROMOTED.value, JobStatus.REJECTED.value, JobStatus.FAILED.value})


class JobFiles:
    """The job files of one model, under ``directory``."""

    def __init__(self, directory: Path, where: str,
                 step: Callable[[str], None] | None = None) -> None:
        self.dir = Path(directory)
        self._where = where  # named in "not found" messages
        self._step = step or (lambda name: None)

    def new_id(self) -> str:
        return new_job_id()

    def _check(self, job_id: object) -> str:
        if not isinstance(job_id, str) or not JOB_RE.fullmatch(job_id):
            shown = job_id[:80] if isinstance(job_id, str) else job_id
            raise JobNotFoundError(f"job {shown!r} not found in {self._where}")
        return job_id

    def directory(self, job_id: str) -> Path:
        """The job's private directory (created), e.g. for its uploaded data."""
        path = self.dir / self._check(job_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- where the status records are kept (overridden by the object store) ------------------

    def _write_record(self, job_id: str, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        files.atomic_write(
            self.dir / f"{job_id}.json",
            data,
            after_tmp=lambda: self._step("job:tmp-written"),
            after_replace=lambda: self._step("job:replaced"),
        )

    def _read_record(self, job_id: str) -> bytes | None:
        try:
            return (self.dir / f"{job_id}.json").read_bytes()
        except FileNotFoundError:
            return None

    def _record_ids(self) -> list[str]:
        return [e[: -len(".json")] for e in files.listdir(self.dir)
                if e.endswith(".json") and JOB_RE.fullmatch(e[: -len(".json")])]

    def _record_ages(self, now: float) -> dict[str, float]:
        """Seconds since each status record was written."""
        return {job_id: files.age(self.dir / f"{job_id}.json", now)
                for job_id in self._record_ids()}

    def _remove_record(self, job_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / f"{job_id}.json").unlink()

    # -- the job API ---------------------------------------------------------------------------

    def write(self, job_id: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a job's status file atomically; adds ``id`` and ``updated_at``."""
        self._check(job_id)
        if not isinstance(status, Mapping):
            raise TypeError(f"job status must be a mapping, got {type(status).__name__}")
        record = to_json(dict(status), "job status")
        record.update(id=job_id, updated_at=utc_iso())
        self._write_record(job_id, files.dumps(record))
        return record

    def read(self, job_id: str) -> dict[str, Any]:
        """A job's last written status."""
        self._check(job_id)
        raw = self._read_record(job_id)
        if raw is None:
            raise JobNotFoundError(f"job {job_id!r} not found in {self._where}")
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise JobError(f"job {job_id!r}: status file is not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise JobError(f"job {job_id!r}: status file is not an object")
        return record

    def list(self) -> list[dict[str, Any]]:
        """Every job's status sorted by id; an unreadable one is listed with its ``error``."""
        jobs = []
        for job_id in self._ids():
            try:
                jobs.append(self.read(job_id))
            except JobNotFoundError:
                continue
            except JobError as exc:
                jobs.append({"id": job_id, "status": "corrupt", "error": str(exc)})
        return jobs

    def _ids(self) -> list[str]:
        return sorted(self._record_ids())

    def prune(self) -> list[str]:
        """Remove jobs older than a day, and finished jobs beyond the newest 100."""
        now = time.time()
        ages = self._record_ages(now)
        ids = set(ages)
        ids.update(e for e in files.listdir(self.dir) if JOB_RE.fullmatch(e))  # dirs alone
        ordered = sorted(ids)
        recent = set(ordered[-JOBS_KEPT:])
        removed = []
        for job_id in ordered:
            directory = self.dir / job_id
            age = ages[job_id] if job_id in ages else files.age(directory, now)
            if age <= JOB_MAX_AGE:
                if job_id in recent:
                    continue
                with contextlib.suppress(JobError):
                    if self.read(job_id).get("status") in JobStatus.active():
                        continue
            # Status file first: a job without one reads as not found, never as half-deleted.
            self._remove_record(job_id)
            files.rmtree(directory)
            removed.append(job_id)
        for entry in files.listdir(self.dir):
            path = self.dir / entry
            if entry.startswith(files.TMP_PREFIX) and files.age(path, now) > files.TMP_MAX_AGE:
                files.rmtree(path)
        return removed
