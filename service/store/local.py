"""The model store in a local directory: atomic saves and promotions, sha256 checks, a lock.

Layout (``store.path = Path(root) / name``)::

    <name>/CURRENT                      the active version id, one line, replaced atomically
    <name>/history.jsonl                one line per promotion: time, version, previous (bounded)
    <name>/versions/<id>/model.joblib   LinearModel.to_state(): plain arrays and primitives
    <name>/versions/<id>/manifest.json  id, created_at, sha256 of model.joblib, parent, status, ...
    <name>/versions/<id>/signatures/<key-id>.json   HMAC-SHA256 of both (signing.py), if signed
    <name>/jobs/<job-id>.json           retrain job status (+ jobs/<job-id>/ for uploaded data)
    <name>/.lock                        fcntl.flock lock file; holds the holder's description

A version directory is written under ``versions/.tmp-*`` and renamed into place only when both
files are on disk; ``CURRENT`` is written to a temporary file and swapped in with ``os.replace``.
A process killed at any point therefore leaves either the old or the new state, never a half one.
See docs/model-store.md for what a crash at each step leaves behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..engine.model import LinearModel
from ..errors import CurrentDamagedError, IntegrityError, LockHeldError
from ..util import to_json, utc_iso
from . import files
from .base import (
    ANY,
    MANIFEST_FILE,
    MODEL_FILE,
    Artifact,
    HeldLock,
    LockContext,
    ModelStore,
    Patience,
    check_expected,
    check_key_id,
    check_save_args,
    encode_model,
    iter_version_ids,
    manifest_fields,
    parse_manifest,
)
from .ids import VERSION_RE, is_version_id, new_version_id
from .jobs import JobFiles
from .lock import FileLock, clear_holder
from .signing import SIGNATURES_DIR, Signer

__all__ = ["FAULT_STEPS", "LocalStore"]

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
DELETE_PREFIX = files.TMP_PREFIX + "delete-"
HISTORY_KEPT = 1000  # promotions kept in history.jsonl; pruned when it holds twice as many

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


def check_name(name: object) -> str:
    """A model name: letters, digits, '.', '_' or '-' (it becomes a directory or key prefix)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"model name must be letters, digits, '.', '_' or '-', got {name!r}")
    return name


class LocalStore(ModelStore):
    """Versions of one model under ``root/name``; safe to share between processes."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        name: str = "house-price",
        keep: int = 20,
        *,
        signer: Signer | None = None,
        _fault: Callable[[str], None] | None = None,
    ) -> None:
        check_name(name)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1, got {keep!r}")
        self.root = Path(root)
        self.name = name
        self.keep = keep
        self.path = self.root / name
        self.signer = signer
        self._fault = _fault
        self.trainer_lock = FileLock(self.lock_file)
        self.jobs = JobFiles(self.path / "jobs", str(self.path), step=self._step)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r}, name={self.name!r}, keep={self.keep})"

    @property
    def location(self) -> str:
        return str(self.path)

    # -- paths ---------------------------------------------------------------------------

    @property
    def versions_dir(self) -> Path:
        return self.path / "versions"

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

    # -- saving ----------------------------------------------------------------------------

    def save(
        self,
        model: LinearModel,
        manifest: Mapping[str, Any],
        *,
        parent: str | None,
        status: str = "candidate",
    ) -> str:
        check_save_args(self, model, manifest, parent, status)
        model_bytes, sha256 = encode_model(model)
        fields = to_json(dict(manifest), "manifest")

        self.versions_dir.mkdir(parents=True, exist_ok=True)
        while True:
            version_id = new_version_id(self._known_ids())
            tmp = self.versions_dir / f"{files.TMP_PREFIX}{version_id}-{secrets.token_hex(4)}"
            tmp.mkdir()
            try:
                self._step("save:tmp-created")
                full = dict(fields)
                full.update(manifest_fields(model, version_id, utc_iso(), sha256, parent,
                                            status))
                files.write_new_file(tmp / MODEL_FILE, model_bytes)
                self._step("save:model-written")
                manifest_bytes = files.dumps(full)
                files.write_new_file(tmp / MANIFEST_FILE, manifest_bytes)
                signature = self._signature_for(version_id, model_bytes, manifest_bytes)
                if signature is not None:
                    (tmp / SIGNATURES_DIR).mkdir()
                    files.write_new_file(tmp / SIGNATURES_DIR / f"{signature[0]}.json",
                                         signature[1])
                    files.fsync_dir(tmp / SIGNATURES_DIR)
                files.fsync_dir(tmp)
                self._step("save:tmp-written")
                # rename(2) of a directory onto an existing non-empty one fails: never overwrites.
                tmp.rename(self.versions_dir / version_id)
            except OSError as exc:
                files.rmtree(tmp)
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue  # another process took the same id in the same microsecond
                raise
            except BaseException:
                files.rmtree(tmp)  # a failed save leaves nothing behind (a killed one: prune)
                raise
            self._step("save:renamed")
            files.fsync_dir(self.versions_dir)
            self._step("save:done")
            return version_id

    def _known_ids(self) -> Iterator[str]:
        for entry in files.listdir(self.versions_dir):
            candidate = entry
            if entry.startswith(files.TMP_PREFIX) and not entry.startswith(DELETE_PREFIX):
                candidate = entry[len(files.TMP_PREFIX) :].rsplit("-", 1)[0]
            if VERSION_RE.fullmatch(candidate):
                yield candidate
        with contextlib.suppress(IntegrityError):
            active = self.active_version()
            if active is not None:
                yield active

    # -- reading ---------------------------------------------------------------------------

    def get(self, version_id: str) -> dict[str, Any]:
        directory = self.version_dir(version_id)
        return self._read_manifest(version_id, directory)

    def _read_manifest(self, version_id: str, directory: Path) -> dict[str, Any]:
        return parse_manifest(version_id, self._read_file(version_id, directory, MANIFEST_FILE))

    def _read_file(self, version_id: str, directory: Path, name: str) -> bytes:
        """One file of a version: not found if the version is gone, an integrity error if
        only the file is."""
        try:
            return (directory / name).read_bytes()
        except FileNotFoundError:
            if not directory.is_dir():
                raise self._not_found(version_id) from None
            raise IntegrityError(f"version {version_id!r}: {name} is missing") from None
        except OSError as exc:
            raise IntegrityError(
                f"version {version_id!r}: cannot read {name}: {exc.strerror}"
            ) from None

    def read_artifact(self, version_id: str) -> Artifact:
        directory = self.version_dir(version_id)
        raw = self._read_file(version_id, directory, MANIFEST_FILE)
        manifest = parse_manifest(version_id, raw)
        return Artifact(manifest, raw, self._read_file(version_id, directory, MODEL_FILE))

    def read_signature(self, version_id: str, key_id: str) -> bytes | None:
        path = self.version_dir(version_id) / SIGNATURES_DIR / f"{check_key_id(key_id)}.json"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def write_signature(self, version_id: str, key_id: str, data: bytes) -> bool:
        directory = self.version_dir(version_id)
        if not (directory / MANIFEST_FILE).is_file():
            raise self._not_found(version_id)
        signatures = directory / SIGNATURES_DIR
        signatures.mkdir(exist_ok=True)
        tmp = signatures / f"{files.TMP_PREFIX}{secrets.token_hex(4)}"
        files.write_new_file(tmp, data)
        try:
            # link(2) never replaces an existing file: a signature, once there, is never edited.
            os.link(tmp, signatures / f"{check_key_id(key_id)}.json")
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        files.fsync_dir(signatures)
        return True

    def version_ids(self) -> list[str]:
        return iter_version_ids(files.listdir(self.versions_dir))

    def active_version(self) -> str | None:
        try:
            text = self.current_file.read_text(encoding="utf-8", errors="replace").strip()
        except FileNotFoundError:
            return None
        if not is_version_id(text):
            raise CurrentDamagedError(
                f"{self.current_file} is damaged: it holds {text[:80]!r}, not a version id; "
                "repair it with `sgdserve models activate ID` (or `sgdserve train --force`)"
            )
        return text

    def current_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.current_file)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    # -- promoting -------------------------------------------------------------------------

    def activate(self, version_id: str, *, expected_current: Any = ANY) -> str | None:
        """Make a version the active one after checking it loads; returns the previous id.

        Rollback is activating an older id. Callers serialise promotions with :meth:`lock`,
        so the precondition is checked and ``CURRENT`` replaced with no other writer between.
        A damaged ``CURRENT`` is replaced (this is how it is repaired) unless a precondition
        names a version.
        """
        self.load(version_id)  # raises before anything is written
        self._step("activate:verified")
        try:
            previous = self.active_version()
        except CurrentDamagedError:
            if expected_current is not ANY:
                raise
            previous = None
        check_expected(expected_current, previous)
        files.atomic_write(
            self.current_file,
            (version_id + "\n").encode(),
            after_tmp=lambda: self._step("activate:tmp-written"),
            after_replace=lambda: self._step("activate:replaced"),
        )
        self._step("activate:synced")
        entry = {"time": utc_iso(), "version": version_id, "previous": previous,
                 "pid": os.getpid()}
        fd = os.open(self.history_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # One write(2) of one short line under O_APPEND: concurrent appends do not interleave.
            os.write(fd, files.dumps(entry, indent=None) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        self._step("activate:history-written")
        return previous

    def history(self) -> list[dict[str, Any]]:
        try:
            lines = self.history_file.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        return [entry for entry in map(files.parse_line, lines) if entry is not None]

    def last_promotion(self) -> dict[str, Any] | None:
        # Only the end of the file: /metrics asks for this on every scrape.
        try:
            with open(self.history_file, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 65536))
                lines = f.read().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            entry = files.parse_line(line)
            if entry is not None:
                return entry
        return None

    # -- retention -------------------------------------------------------------------------

    def prune(self) -> list[str]:
        """Delete versions beyond the newest ``keep`` (never the active one or its parent).

        Also removes abandoned temporary directories, old job files and old history lines.
        Returns the deleted ids. Call it holding the lock.
        """
        protected = self.protected_versions()
        ids = self.version_ids()
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
                files.fsync_dir(self.versions_dir)
                self._step("prune:renamed")
            finally:
                files.rmtree(grave)
            self._step("prune:removed")
            removed.append(version_id)
        now = time.time()
        for entry in files.listdir(self.versions_dir):
            path = self.versions_dir / entry
            if entry.startswith(DELETE_PREFIX):
                files.rmtree(path)
            elif entry.startswith(files.TMP_PREFIX) and files.age(path, now) > files.TMP_MAX_AGE:
                files.rmtree(path)
        for entry in files.listdir(self.path):  # e.g. a CURRENT temp file of a killed activate()
            path = self.path / entry
            if entry.startswith(files.TMP_PREFIX) and files.age(path, now) > files.TMP_MAX_AGE:
                files.rmtree(path)
        self._prune_history()
        self.jobs.prune()
        return removed

    def _prune_history(self) -> None:
        """Keep the newest :data:`HISTORY_KEPT` promotions once the file holds twice as many."""
        try:
            lines = self.history_file.read_bytes().splitlines()
        except FileNotFoundError:
            return
        if len(lines) <= 2 * HISTORY_KEPT:
            return
        files.atomic_write(self.history_file, b"".join(
            line + b"\n" for line in lines[-HISTORY_KEPT:]))

    # -- the lock --------------------------------------------------------------------------

    def lock(self, wait: bool | float = False, owner: str = "") -> LockContext:
        """Hold the store's exclusive lock; not re-entrant (a second ``lock()`` in the same
        process fails like any other holder)."""
        return self.trainer_lock.held(wait, owner)

    def is_locked(self) -> dict[str, Any] | None:
        return self.trainer_lock.is_locked()

    def take_lock(self, owner: str, *, patience: Patience | None = None,
                  **extra: Any) -> HeldLock:
        fd = self.trainer_lock.acquire(False, owner, patience=patience, **extra)
        return _InheritedFlock(fd, self.trainer_lock.read_holder() or {})

    @contextlib.contextmanager
    def adopt_lock(self, handle: str, owner: str, **extra: Any) -> Iterator[dict[str, Any]]:
        kind, _, value = handle.partition(":")
        if kind != "fd" or not value.isdigit():
            raise LockHeldError(f"not a local store lock handle: {handle!r}")
        fd = int(value)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: a no-op check
        except OSError:
            raise LockHeldError("the training process did not inherit the store lock") from None
        try:
            yield self.trainer_lock.write_holder(fd, owner, **extra)  # now this pid
        finally:
            clear_holder(fd)
            os.close(fd)

    def reopen_argv(self) -> list[str]:
        return ["--model-dir", str(Path(self.root).absolute()), "--name", self.name,
                "--keep", str(self.keep)]


class _InheritedFlock(HeldLock):
    """A locked descriptor that a child process inherits (``flock`` belongs to the open file
    description, so the child holds the lock until it exits, even when it is killed)."""

    def __init__(self, fd: int, holder: dict[str, Any]) -> None:
        self.fd = fd
        self.holder = holder

    def child_argv(self) -> list[str]:
        return ["--lock", f"fd:{self.fd}"]

    def pass_fds(self) -> tuple[int, ...]:
        return (self.fd,)

    def handed_over(self) -> None:
        os.close(self.fd)  # the child's copy keeps the lock

    def release(self) -> None:
        clear_holder(self.fd)
        os.close(self.fd)
