"""Run the Flask app under gunicorn with service/gunicorn_conf.py (``sgdserve serve``).

Gunicorn's application API is used instead of its command line so that the configuration file
is found inside the installed package, whatever the current directory.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import importlib.util
import json
import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gunicorn import glogging, util
from gunicorn.app.base import BaseApplication

from service.config import Settings

CONF_PATH = Path(__file__).with_name("gunicorn_conf.py")


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """The names defined by service/gunicorn_conf.py, computed from ``settings``."""
    spec = importlib.util.spec_from_file_location("sgdserve_gunicorn_conf", CONF_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # The conf file takes these instead of reading the environment again, so CLI overrides hold.
    module.sgdserve_settings = settings  # type: ignore[attr-defined]
    spec.loader.exec_module(module)
    return {name: value for name, value in vars(module).items() if not name.startswith("__")}


class SgdserveApplication(BaseApplication):
    """Gunicorn application configured from Settings and service/gunicorn_conf.py."""

    def __init__(self, settings: Settings, app: str | None = None) -> None:
        self.settings = settings
        self.app_uri = app
        super().__init__()

    def load_config(self) -> None:
        for name, value in gunicorn_options(self.settings).items():
            if name in self.cfg.settings:
                self.cfg.set(name, value)

    def load(self) -> Any:
        # Runs in each worker after fork (preload_app is off), so nothing is opened in the master.
        if self.app_uri is not None:
            return util.import_app(self.app_uri)
        from service.http import create_app

        # create_app takes Settings fields as overrides; passing all of them keeps CLI overrides.
        fields = dataclasses.fields(self.settings)
        return create_app({f.name: getattr(self.settings, f.name) for f in fields})


def serve(settings: Settings, *, app: str | None = None) -> int:
    """Serve ``app`` (default: sgdserve's Flask app) until stopped; return the exit status."""
    try:
        SgdserveApplication(settings, app).run()
    except SystemExit as stop:  # gunicorn's arbiter ends with sys.exit
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        return 1
    return 0


# Atoms that are numbers in the access log; everything else is rendered as a JSON string.
_NUMERIC_ATOMS = frozenset({"s", "B", "D", "M", "T", "L"})


# mallopt(3) parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_GLIBC_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # on 64-bit; mallopt refuses more


def tune_malloc(mmap_threshold: int) -> str | None:
    """Keep freed request-sized buffers in the process instead of returning them to the OS.

    glibc serves a block over its mmap threshold (128 KiB at first, then adapting) with a fresh
    mmap, and gives the top of its heap back once more than twice that is free; a 0.6 MB
    request body then makes fresh pages on every request: its copies in gunicorn's reader, the
    parsed rows, the arrays. Setting the threshold to ``mmap_threshold`` and the trim threshold
    to 8x it lets the next request reuse the same memory: a 10,000-row /predict went from 5.2 to
    3.8 ms of server time and from 6.5 to 5.0 ms of worker CPU (docs/benchmarks-serving.md). The
    cost: a worker keeps up to 8x ``mmap_threshold`` of freed memory for reuse.

    Called by the gunicorn master before it forks (workers inherit it). Returns what was set,
    or None when nothing was: threshold 0, not glibc, or the operator set glibc's own
    ``MALLOC_*_`` / ``GLIBC_TUNABLES`` variables, which win.
    """
    if mmap_threshold <= 0:
        return None
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return None
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    threshold = min(mmap_threshold, _GLIBC_MMAP_THRESHOLD_MAX)
    trim = 8 * threshold
    if mallopt(_M_MMAP_THRESHOLD, threshold) != 1 or mallopt(_M_TRIM_THRESHOLD, trim) != 1:
        return None
    return (f"glibc malloc: mmap threshold {threshold // 1024} KiB, trim threshold "
            f"{trim // 1024} KiB (SGDSERVE_MALLOC_MMAP_THRESHOLD)")


class _JsonAtoms(dict):
    """Access-log atoms rendered as JSON values: strings quoted and escaped, missing ones null."""

    def __getitem__(self, key: str) -> str:
        found = dict.get(self, key.lower() if key.startswith("{") else key)
        if found is None or found == "-":
            return "null"
        if key in _NUMERIC_ATOMS:
            return str(found)
        # ensure_ascii also escapes control characters, so a line stays one line.
        return json.dumps(str(found))


class JsonAccessLogger(glogging.Logger):
    """Gunicorn logger whose access log format is a JSON template (see gunicorn_conf.py)."""

    atoms_wrapper_class = _JsonAtoms

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        # gunicorn guesses "Perhaps out of memory?" for every SIGKILL; an operator's kill -9,
        # a Kubernetes eviction and its own timeout kill send one too.
        if msg == _SIGKILL_GUESS:
            msg = _SIGKILL_SAID
        super().error(msg, *args, **kwargs)

    def now(self) -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds")

    def atoms(self, resp: Any, req: Any, environ: dict, request_time: Any) -> dict[str, Any]:
        # gunicorn builds every atom, every request header and every environ entry per line;
        # sgdserve's format uses nine of them, so build just those (a few µs on each request).
        if not _LEAN_ATOMS.issuperset(_format_atoms(self.cfg.access_log_format)):
            return super().atoms(resp, req, environ, request_time)
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        version = request_id = prediction_id = None
        for name, value in resp.headers:
            lowered = name.lower()
            if lowered == "x-model-version":
                version = value
            elif lowered == "x-request-id":
                request_id = value
            elif lowered == "x-prediction-id":
                prediction_id = value
        return {
            "t": self.now(),
            "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"),
            "s": status,
            "L": f"{request_time.seconds}.{request_time.microseconds:06d}",
            "h": environ.get("REMOTE_ADDR", "-"),
            "{x-model-version}o": version,
            "{x-request-id}o": request_id,
            "{x-prediction-id}o": prediction_id,
        }


_SIGKILL_GUESS = "Worker (pid:%s) was sent %s! Perhaps out of memory?"
_SIGKILL_SAID = ("Worker (pid:%s) was killed (%s): by the kernel's OOM killer (see dmesg), an "
                 "operator or orchestrator, or after a WORKER TIMEOUT logged above")

_LEAN_ATOMS = frozenset({"t", "m", "U", "s", "L", "h", "{x-model-version}o", "{x-request-id}o",
                         "{x-prediction-id}o"})


@functools.lru_cache(maxsize=4)
def _format_atoms(access_log_format: str) -> frozenset[str]:
    """The atom names an access log format refers to (``%(name)s``), header names lowercased."""
    names = re.findall(r"%\(([^)]+)\)", access_log_format)
    return frozenset(n.lower() if n.startswith("{") else n for n in names)
