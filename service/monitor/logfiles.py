"""Append-only JSON-lines files, one set per process, rotated by size, bounded in total.

Each process (a gunicorn worker) writes its own files, so writers never share a file and need
no lock between them:

    <log dir>/<kind>-<host>-<pid>-<nonce>-<seq>.jsonl        kind: predictions | feedback

A line is written with one ``write(2)`` on an ``O_APPEND`` descriptor, after the answer is
built (a batch's after it has been sent). A writer never raises: a failed open or write (a
read-only directory, a full disk) is counted and reported once per reason through
``on_error``, the request goes on, opening is retried after a pause, and the next line after a
short write starts on a fresh line, so the torn one stays a line of its own.

Bounded disk: a file is closed and the next one begun when it would pass ``segment_bytes``
(``max_bytes / 16``, between 64 KiB and 64 MiB). At each rotation the writer deletes the oldest
closed files of any writer until the closed files fit in ``max_bytes`` less one segment for
every file still being written (a writer's newest file, if its process is alive here or it
changed in the last minute), so the directory stays within ``max_bytes`` while at most 16
processes write. A file still being written is never deleted.

The reader (:func:`read_lines`) parses every line and skips, and counts, any that does not
parse: the torn last line of a writer killed mid-write, or one still being written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson

__all__ = ["KINDS", "LogStats", "LogWriter", "list_files", "read_files", "read_lines",
           "read_typed", "segment_bytes"]

KINDS = ("predictions", "feedback")
SUFFIX = ".jsonl"
_NAME = re.compile(r"^(?P<kind>[a-z]+)-(?P<host>.+)-(?P<pid>\d+)-(?P<nonce>[0-9a-f]{8})-"
                   r"(?P<seq>\d{6})\.jsonl$")
_RETRY_OPEN_S = 5.0  # after a failed open, the next attempt comes this much later
_LIVE_S = 60.0  # a file changed this recently may still be written by another host's process
MIN_SEGMENT, MAX_SEGMENT = 64 * 1024, 64 * 1024 * 1024

ErrorHook = Callable[[str, str, OSError], None]  # (kind, what failed, the error)


def segment_bytes(max_bytes: int) -> int:
    """The size at which a writer closes its file and starts the next one."""
    return max(MIN_SEGMENT, min(MAX_SEGMENT, max_bytes // 16))


def _host() -> str:
    # Safe in a file name: replicas sharing a volume are told apart by it.
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:63] or "host"


class LogWriter:
    """This process's append-only, rotated file of one kind of record."""

    def __init__(self, directory: Path, kind: str, max_bytes: int,
                 on_error: ErrorHook | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.directory = Path(directory)
        self.kind = kind
        self.max_bytes = int(max_bytes)
        self.segment = segment_bytes(self.max_bytes)
        self.on_error = on_error
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = -1
        self._size = 0
        self._seq = 0
        self._prefix = ""
        self._retry_at = 0.0
        self._torn = False  # the last write was short: begin the next one on a new line
        self.failures = 0

    # -- the hot path -------------------------------------------------------------------------

    def write(self, line: bytes) -> bool:
        """Append one record (JSON ending in a newline); False when it could not be written."""
        with self._lock:
            fd = self._fd
            if fd is None or self._pid != os.getpid():
                fd = self._open()
                if fd is None:
                    return False
            if self._size + len(line) > self.segment and self._size > 0:
                fd = self._rotate()
                if fd is None:
                    return False
            if self._torn:
                line = b"\n" + line
            try:
                written = os.write(fd, line)
            except OSError as exc:
                self._failed("write", exc)
                self._torn = True
                return False
            self._size += written
            if written != len(line):  # a full disk takes part of a line
                self._failed("write", OSError(errno.ENOSPC, "short write (disk full?)"))
                self._torn = True
                return False
            self._torn = False
            return True

    # -- files --------------------------------------------------------------------------------

    def _open(self) -> int | None:
        if self._pid != os.getpid():  # a forked child: its own files, from a clean slate
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)  # the parent's descriptor; the parent keeps its own
            self._fd = None
            self._pid = os.getpid()
            self._prefix = f"{self.kind}-{_host()}-{self._pid}-{os.urandom(4).hex()}-"
            self._seq = 0
            self._size = 0
            self._retry_at = 0.0
        if time.monotonic() < self._retry_at:
            return None
        path = self.directory / f"{self._prefix}{self._seq:06d}{SUFFIX}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self._failed("open", exc)
            self._retry_at = time.monotonic() + _RETRY_OPEN_S
            return None
        self._fd = fd
        self._size = os.fstat(fd).st_size
        return fd

    def _rotate(self) -> int | None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._seq += 1
        self._size = 0
        fd = self._open()
        if fd is not None:
            try:
                prune(self.directory, self.max_bytes, own=self._prefix)
            except OSError as exc:  # pruning is a courtesy; never the reason a write fails
                self._failed("prune", exc)
        return fd

    def _failed(self, what: str, exc: OSError) -> None:
        self.failures += 1
        if self.on_error is not None:
            self.on_error(self.kind, what, exc)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class LogFile:
    """One log file, as its name and ``stat`` describe it."""

    path: Path
    kind: str
    writer: str  # kind-host-pid-nonce: one process's files
    host: str
    pid: int
    seq: int
    size: int
    mtime: float


def list_files(directory: Path, kind: str | None = None) -> list[LogFile]:
    """The log files in ``directory`` (of one kind, or all), oldest first."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None or (kind is not None and match["kind"] != kind):
            continue
        try:
            st = entry.stat()
        except FileNotFoundError:  # pruned meanwhile
            continue
        writer = entry.name[: match.start("seq") - 1]
        found.append(LogFile(Path(entry.path), match["kind"], writer, match["host"],
                             int(match["pid"]), int(match["seq"]), st.st_size, st.st_mtime))
    found.sort(key=lambda f: (f.mtime, f.writer, f.seq))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def prune(directory: Path, max_bytes: int, own: str = "") -> list[Path]:
    """Delete the oldest closed files until the directory fits ``max_bytes`` (see the module
    docstring); returns what was deleted."""
    files = list_files(directory)
    newest: dict[str, LogFile] = {}
    for f in files:
        if f.writer not in newest or f.seq > newest[f.writer].seq:
            newest[f.writer] = f
    host, now = _host(), time.time()
    live = set()
    for writer, f in newest.items():
        if (own and (writer + "-").startswith(own)) or now - f.mtime < _LIVE_S or (
                f.host == host and _alive(f.pid)):
            live.add(f.path)
    budget = max_bytes - segment_bytes(max_bytes) * len(live)
    closed = [f for f in files if f.path not in live]
    total = sum(f.size for f in closed)
    deleted = []
    for f in closed:  # oldest first
        if total <= budget:
            break
        try:
            os.remove(f.path)
        except FileNotFoundError:  # another writer pruned it first
            pass
        total -= f.size
        deleted.append(f.path)
    return deleted


@dataclass
class LogStats:
    """What reading the logs met: files, lines, and lines skipped as torn."""

    files: int = 0
    lines: int = 0
    torn_lines: int = 0
    bytes: int = 0
    torn_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "lines": self.lines, "torn_lines": self.torn_lines,
                "bytes": self.bytes}


def read_files(directory: Path, kind: str, stats: LogStats | None = None,
               since_mtime: float | None = None) -> Iterator[list[dict[str, Any]]]:
    """The records of ``kind`` in ``directory``, one list per file (oldest first); a line that
    does not parse as a JSON object is skipped and counted in ``stats``. Files last changed
    before ``since_mtime`` are not read (they hold nothing newer).

    A file is parsed in one pass of ``orjson.loads`` over its lines; a file with a torn line is
    parsed again line by line, to skip just that line."""
    stats = stats if stats is not None else LogStats()
    loads = orjson.loads
    for f, data in _contents(directory, kind, stats, since_mtime):
        lines = [raw for raw in data.split(b"\n") if raw]
        try:
            records = [loads(raw) for raw in lines]
        except orjson.JSONDecodeError:
            records = None
        if records is not None and all(type(r) is dict for r in records):
            stats.lines += len(records)
            yield records
            continue
        records = []
        for raw in lines:
            try:
                record = loads(raw)
            except orjson.JSONDecodeError:
                record = None
            if type(record) is not dict:
                stats.torn_lines += 1
                continue
            records.append(record)
        stats.lines += len(records)
        stats.torn_files.append(f.path.name)
        yield records


def read_typed(directory: Path, kind: str, decoder: Any, stats: LogStats | None = None,
               since_mtime: float | None = None) -> Iterator[list[Any]]:
    """The records of ``kind`` decoded by a typed ``msgspec.json.Decoder``, one list per file:
    a whole file in one C call (``decode_lines``, twice as fast as a call per line into dicts),
    or line by line for a file with a torn line or a record of the wrong shape, which is
    skipped and counted in ``stats``."""
    stats = stats if stats is not None else LogStats()
    for f, data in _contents(directory, kind, stats, since_mtime):
        try:
            records = decoder.decode_lines(data)
        except msgspec.MsgspecError:
            records = []
            for raw in data.split(b"\n"):
                if not raw:
                    continue
                try:
                    records.append(decoder.decode(raw))
                except msgspec.MsgspecError:
                    stats.torn_lines += 1
            stats.torn_files.append(f.path.name)
        stats.lines += len(records)
        yield records


def _contents(directory: Path, kind: str, stats: LogStats, since_mtime: float | None
              ) -> Iterator[tuple[Any, bytes]]:
    """Each log file of ``kind`` with its bytes (counted in ``stats``), skipping files last
    changed before ``since_mtime`` and files pruned since they were listed."""
    for f in list_files(directory, kind):
        if since_mtime is not None and f.mtime < since_mtime:
            continue
        try:
            data = f.path.read_bytes()
        except FileNotFoundError:  # pruned meanwhile
            continue
        stats.files += 1
        stats.bytes += len(data)
        yield f, data


def read_lines(directory: Path, kind: str, stats: LogStats | None = None,
               since_mtime: float | None = None) -> Iterator[dict[str, Any]]:
    """Every record of ``kind`` in ``directory``, one by one (see :func:`read_files`)."""
    for records in read_files(directory, kind, stats, since_mtime):
        yield from records
