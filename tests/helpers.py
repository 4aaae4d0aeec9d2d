"""Helpers shared by the test modules: ports, child environments, a gunicorn harness.

Every wait here has a deadline: a server that died or never answers fails the test with its
log, it never hangs it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import requests

from service.engine import LinearModel

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")

# Variables of the person running the tests that would change what a child process does.
_FOREIGN = ("PROMETHEUS_MULTIPROC_DIR", "XDG_RUNTIME_DIR", "GUNICORN_CMD_ARGS")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra: Mapping[str, str] | None = None, **more: str) -> dict[str, str]:
    """The environment for a child process: none of the caller's SGDSERVE_* settings (or
    variables that steer gunicorn and prometheus_client), this checkout on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SGDSERVE_") and k not in _FOREIGN}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    env.update(more)
    return env


def wait_until(predicate: Callable[[], T], timeout: float, what: str,
               pause: float = 0.05) -> T:
    """Call ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(pause)


def hand_model(intercept: float = 50_000.0, features: tuple[str, ...] = (
        "sqft", "bedrooms", "bathrooms", "age_years"),
        coef: Any = None) -> LinearModel:
    """A model made by hand: ``coef`` (default zeros) and ``intercept`` in original units."""
    d = len(features)
    coef = np.zeros(d) if coef is None else np.asarray(coef, dtype=np.float64)
    return LinearModel.numeric(
        feature_names=tuple(features), target="price", coef=coef, intercept=float(intercept),
        x_mean=np.ones(d), x_scale=np.ones(d), y_mean=0.0, y_scale=1.0,
        coef_std=coef.copy(), intercept_std=0.0,
    )


class AtomicMotoServer:
    """moto's S3 API server on loopback, with every request handled under one lock.

    moto checks an If-Match / If-None-Match condition and then writes without a lock, so on the
    plain ``ThreadedMotoServer`` two concurrent conditional writers can both win (4 rounds in 120
    in a probe). Real S3 decides conditional writes atomically; serialising requests here gives
    the same guarantee, so a race test (N promoters at once, exactly one wins) tests our code,
    not moto's. Connections are still accepted concurrently (werkzeug's threaded server), and a
    request's body is read before the lock is taken.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        import io
        import threading

        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()
        self.requests = 0  # every request served, for tests that count them

        def serialised(environ: dict, start_response: Any) -> list[bytes]:
            length = environ.get("CONTENT_LENGTH")
            if length and length.isdigit():
                environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(int(length)))
            with lock:
                self.requests += 1
                result = app(environ, start_response)
                try:
                    return list(result)  # drained while the lock is held
                finally:
                    if hasattr(result, "close"):
                        result.close()

        self._server = make_server(host, port, serialised, threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        address = self._server.server_address
        self.endpoint = f"http://{address[0]}:{address[1]}"

    def __enter__(self) -> AtomicMotoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)

    def reset(self) -> None:
        """Forget every bucket and object (moto's state is global to this process)."""
        requests.post(self.endpoint + "/moto-api/reset", timeout=30).raise_for_status()


class GunicornServer:
    """``sgdserve serve`` (or ``serve(settings, app=...)``) in a child process on a free port.

    ``env`` holds SGDSERVE_* settings; stdout and stderr go to files under ``tmp`` (the access
    log is stdout). Use as a context manager, or call :meth:`stop`.
    """

    def __init__(self, tmp: Path, *, workers: int = 2, env: Mapping[str, str] | None = None,
                 app: str | None = None, cwd: Path | None = None,
                 pythonpath: tuple[Path, ...] = ()) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = {"SGDSERVE_PORT": str(self.port), "SGDSERVE_HOST": "127.0.0.1",
                    "SGDSERVE_WORKERS": str(workers), **(env or {})}
        environ = child_env(settings)
        if pythonpath:
            environ["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath),
                                                     environ["PYTHONPATH"]])
        if app is None:  # as a user starts it
            argv = [sys.executable, "-m", "service.cli", "serve"]
        else:
            argv = [sys.executable, "-c",
                    "import sys\nfrom service.config import Settings\n"
                    "from service.server import serve\n"
                    "sys.exit(serve(Settings.from_env(), app=sys.argv[1]))\n", app]
        self.stdout_path, self.stderr_path = tmp / "stdout.log", tmp / "stderr.log"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(argv, env=environ, cwd=cwd or tmp, stdout=out,
                                            stderr=err, stdin=subprocess.DEVNULL)

    def __enter__(self) -> GunicornServer:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logs(self, tail: int = 4000) -> str:
        return (self.stderr() + self.stdout())[-tail:]

    def wait_ready(self, timeout: float = 60.0, path: str = "/health") -> None:
        """Until ``path`` answers 200; fails at once, with the logs, if the server exits."""
        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"gunicorn exited with {self.process.returncode}:\n{self.logs()}")
            try:
                return requests.get(self.url + path, timeout=5).status_code == 200
            except requests.RequestException:  # not listening yet, or a busy machine
                return False

        try:
            wait_until(answers, timeout, f"{path} to answer 200", pause=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode

    def workers_serving(self) -> dict[str, str]:
        """pid -> the version each live worker serves, from the metrics gauge."""
        text = requests.get(self.url + "/metrics", timeout=10).text
        return dict(re.findall(
            r'sgdserve_model_version_info\{pid="(\d+)",version="([^"]+)"\} 1\.0', text))

    def wait_all_workers_serve(self, version: str, timeout: float = 30.0) -> dict[str, str]:
        """Until every worker reports ``version`` in /metrics; returns pid -> version."""
        seen: dict[str, str] = {}

        def all_serve() -> dict[str, str] | None:
            seen.clear()
            seen.update(self.workers_serving())
            ok = len(seen) == self.workers and set(seen.values()) == {version}
            return dict(seen) if ok else None

        try:
            return wait_until(all_serve, timeout, f"all {self.workers} workers on {version}",
                              pause=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; they serve {seen}") from None
