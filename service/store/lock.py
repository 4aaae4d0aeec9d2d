"""The local store's lock: one trainer or promoter at a time, across processes.

The lock is ``fcntl.flock`` on ``<name>/.lock``; the file holds a description of the holder
(pid, owner, host, since, and a job id for a retrain job) so a refusal can say who holds it.
``flock`` belongs to the open file description: a descriptor inherited by a child process
(``pass_fds``) keeps the lock until the child exits, which is how a retrain job started by one
gunicorn worker holds the lock while it trains (service/retrain.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import LockHeldError
from ..util import utc_iso
from .files import dumps

__all__ = ["FileLock"]

# A holder that has not yet written its description (or another process's is_locked() probe)
# is given this long before the lock is reported as held by an unknown process.
_GRACE = 0.25

# (holder, seconds waited) -> whether to keep trying although the wait is over.
Patience = Callable[[Mapping[str, Any], float], bool]


class FileLock:
    """An exclusive ``flock`` on ``path`` whose file describes the holder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def acquire(self, wait: bool | float = False, owner: str = "",
                patience: Patience | None = None, **extra: Any) -> int:
        """Take the lock; returns the locked descriptor (close it, or :meth:`release`, to let go).

        ``wait=False`` fails fast, ``True`` blocks, a number waits up to that many seconds.
        ``patience`` may keep trying a little longer for a holder about to let go. A refusal is
        a :class:`LockHeldError` naming the holder (also in its ``holder`` attribute).
        """
        if wait is not True and wait is not False:
            wait = float(wait)
            if not wait >= 0:
                raise ValueError(f"wait must be True, False or seconds >= 0, got {wait!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._take(fd, wait, patience)
            self.write_holder(fd, owner, **extra)
        except BaseException:
            os.close(fd)  # closing the only descriptor releases the lock
            raise
        return fd

    def _take(self, fd: int, wait: bool | float, patience: Patience | None) -> None:
        if wait is True:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return
        timeout = 0.0 if wait is False else float(wait)
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            elapsed = time.monotonic() - start
            if elapsed < timeout:
                time.sleep(min(0.02, timeout - elapsed))
                continue
            holder = self.read_holder()
            if holder is None and elapsed < _GRACE:
                time.sleep(0.01)
                continue
            if holder is not None and patience is not None and patience(holder, elapsed):
                time.sleep(0.01)
                continue
            message = held_message(holder)
            if timeout > 0:
                message += f" (waited {timeout:g} s)"
            raise LockHeldError(message, holder=holder)

    @staticmethod
    def release(fd: int) -> None:
        """Clear the holder description, unlock and close ``fd``."""
        clear_holder(fd)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @contextlib.contextmanager
    def held(self, wait: bool | float = False, owner: str = "") -> Iterator[dict[str, Any]]:
        """Hold the lock for a ``with`` block; yields the holder description."""
        fd = self.acquire(wait, owner)
        try:
            yield self.read_holder() or {}
        finally:
            self.release(fd)

    @staticmethod
    def write_holder(fd: int, owner: str, **extra: Any) -> dict[str, Any]:
        """Describe the holder (pid, owner, host, since, plus ``extra``) in the locked file.

        The one place the record's shape is made; a retrain job's child process rewrites it
        with its own pid when it takes over the inherited descriptor.
        """
        holder = {
            "pid": os.getpid(),
            "owner": owner,
            "host": socket.gethostname(),
            "since": utc_iso(),
            **extra,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, dumps(holder, indent=None), 0)
        return holder

    def is_locked(self) -> dict[str, Any] | None:
        """The holder's description (pid, owner, host, since) when the lock is held, else None."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
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
        deadline = time.monotonic() + _GRACE
        while True:
            holder = self.read_holder()
            if holder is not None or time.monotonic() >= deadline:
                return holder or {"pid": None, "owner": "", "host": None, "since": None}
            time.sleep(0.01)
            if not self._held():  # a holder clears its record just before it lets go
                return None

    def _held(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also releases the probe's shared lock
        return False

    def read_holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) and "pid" in holder else None


def clear_holder(fd: int) -> None:
    """Empty the holder description before the lock goes, so a stale one is never reported."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)


def held_message(holder: Mapping[str, Any] | None) -> str:
    """``model store is locked by pid 123 (sgdserve train) since ...``."""
    if not holder or holder.get("pid") is None:
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
