"""File operations of the local store that never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"
TMP_MAX_AGE = 3600.0  # seconds: an unfinished write older than this was abandoned


def dumps(value: Any, indent: int | None = 2) -> bytes:
    """Strict JSON bytes (NaN refused); indented documents end with a newline, lines do not."""
    text = json.dumps(value, indent=indent, sort_keys=indent is not None, allow_nan=False)
    return text.encode() + (b"\n" if indent is not None else b"")


def parse_line(line: bytes) -> dict[str, Any] | None:
    """One JSON-lines record, or None for a torn or foreign line."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist), write ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path,
    data: bytes,
    *,
    after_tmp: Callable[[], None] | None = None,
    after_replace: Callable[[], None] | None = None,
) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new bytes, never a mix."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}")
    try:
        write_new_file(tmp, data)
        if after_tmp is not None:
            after_tmp()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if after_replace is not None:
        after_replace()
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def age(path: Path, now: float) -> float:
    """Seconds since ``path`` was modified (0 when it is gone)."""
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def rmtree(path: Path) -> None:
    """Remove a file or a directory tree; a missing one is not an error."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
