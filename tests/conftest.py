"""Fixtures shared by several test modules."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import child_env

REPO = Path(__file__).resolve().parents[1]

_LOCK_HOLDER = """
import sys
from service.store import LocalStore

with LocalStore(sys.argv[1]).lock(owner=sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the parent closes stdin
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SGDSERVE_* or Prometheus multiprocess variable from the caller's environment."""
    for name in list(os.environ):
        if name.startswith("SGDSERVE_") or name == "PROMETHEUS_MULTIPROC_DIR":
            monkeypatch.delenv(name)


@contextlib.contextmanager
def _holding(root: Path, owner: str) -> Iterator[subprocess.Popen]:
    child = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(root), owner],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(), text=True,
    )
    try:
        assert child.stdout.readline() == "locked\n"
        yield child
    finally:
        child.stdin.close()  # the holder leaves its `with` and exits
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        child.stdout.close()


@pytest.fixture
def hold_store_lock():
    """``with hold_store_lock(root, owner) as child:``: a separate process holds the store's
    lock (as ``owner``) until the block ends."""
    return _holding


@pytest.fixture(autouse=True)
def _processes_are_slow(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A test that starts a process must be marked ``slow`` (``pytest -m 'not slow'`` is the
    quick loop); one that is not marked fails here, naming the command it started."""
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    started: list[str] = []
    real_init = subprocess.Popen.__init__

    def spy(self, args, *a, **k):
        started.append(" ".join(map(str, args if isinstance(args, list) else [args]))[:120])
        real_init(self, args, *a, **k)

    monkeypatch.setattr(subprocess.Popen, "__init__", spy)
    yield
    if started:
        pytest.fail(f"this test starts a process ({started[0]}): mark it slow", pytrace=False)


_ARTIFACTS = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def artifact_dir(request: pytest.FixtureRequest):
    """``artifact_dir(prefix)``: a new temporary directory for files a person should look at
    (screenshots); its path is printed at the end of the run, whatever pytest captured."""
    import tempfile

    def make(prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        request.config.stash.setdefault(_ARTIFACTS, []).append(str(path))
        return path

    return make


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    for path in config.stash.get(_ARTIFACTS, []):
        terminalreporter.write_line(f"artifacts (screenshots): {path}")
