"""Fixtures shared by several test modules."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import AtomicMotoServer, child_env

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


# -- a real S3 API server on loopback -----------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[AtomicMotoServer]:
    """moto's S3 server on 127.0.0.1 for the whole session (atomic conditional writes)."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
    with AtomicMotoServer() as server:
        yield server


@dataclass
class S3:
    """An empty bucket on the loopback S3 server, and the environment that reaches it."""

    endpoint: str
    bucket: str
    env: dict[str, str] = field(default_factory=dict)

    def url(self, prefix: str = "models") -> str:
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def client(self, **config: object):
        """A boto3 client of its own (``config``: botocore Config arguments)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", config=Config(retries={"total_max_attempts": 1}, **config))

    def keys(self, prefix: str = "") -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for o in listing.get("Contents", [])]


@pytest.fixture
def s3(s3_server: AtomicMotoServer, monkeypatch: pytest.MonkeyPatch) -> S3:
    """A fresh, empty bucket ``sgdserve-test``: moto is reset before each test, and the AWS
    variables (endpoint, region, dummy credentials) are set here and in child processes."""
    s3_server.reset()
    env = {
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = S3(s3_server.endpoint, "sgdserve-test", env)
    bucket.client().create_bucket(Bucket=bucket.bucket)
    return bucket
