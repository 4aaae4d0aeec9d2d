"""Gunicorn configuration for sgdserve: every value comes from Settings (``SGDSERVE_*``).

Used by ``sgdserve serve`` (service/server.py loads this file with the CLI's Settings) and
directly: ``gunicorn -c python:service.gunicorn_conf`` (Settings from the environment).
"""

from __future__ import annotations

import os
import shutil

from service.config import Settings

# `sgdserve serve` injects its Settings (environment plus --host/--port/--workers); a plain
# `gunicorn -c` reads the environment through Settings, the only reader of SGDSERVE_*.
settings: Settings = globals().get("sgdserve_settings") or Settings.from_env()

# The app factory, so `gunicorn -c python:service.gunicorn_conf` needs no further argument.
wsgi_app = "service.http:create_app()"

# Where to listen; an IPv6 host needs brackets to be told apart from the port.
bind = [
    f"[{settings.host}]:{settings.port}" if ":" in settings.host else
    f"{settings.host}:{settings.port}"
]

# Processes, not threads, give CPU parallelism under the GIL: about one per core.
workers = settings.workers

# sync by default: steadier than gthread, with far lower tail latency and less CPU per request
# (docs/benchmarks-serving.md); gthread helps only clients that keep connections open.
worker_class = settings.worker_class

# Threads per gthread worker (ignored by sync workers).
threads = settings.threads

# A worker silent this long is killed and replaced; predictions take milliseconds and
# retraining runs in its own process, so only a hung worker ever reaches it.
timeout = settings.timeout

# SIGTERM: stop accepting, let in-flight requests finish for up to this long (no request runs
# longer than `timeout` anyway), then exit. Kubernetes' default grace period is 30 s.
graceful_timeout = settings.timeout if settings.timeout > 0 else 30

# Seconds an idle keep-alive connection is held (gthread; sync workers close every connection):
# longer than a client's gap between requests, short enough not to hoard connections.
keepalive = 5

# Off: workers recycled every N requests would reload the model each time and leave one set of
# metrics files per dead worker in the metrics directory; nothing here leaks memory.
max_requests = 0

# Off: each worker imports the app after fork, so prometheus_client sees the metrics directory
# exported by on_starting below, and each worker opens and hot-reloads its own model.
preload_app = False

# Gunicorn 27 opens a control socket for `gunicornc` in $XDG_RUNTIME_DIR or $HOME/.gunicorn by
# default; sgdserve is managed by signals (TERM, HUP, TTIN/TTOU) and a container's non-root
# user may have no writable home, so startup must not depend on one.
control_socket_disable = True

# Workers touch a heartbeat file every second; on a container's overlay filesystem that write
# can stall and get healthy workers killed, so keep it in memory when /dev/shm exists.
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None

# Trust X-Forwarded-* only from a proxy on this host (gunicorn's own default, stated so it is
# not taken from the FORWARDED_ALLOW_IPS variable by accident); the app builds relative URLs.
forwarded_allow_ips = "127.0.0.1,::1"

# Name in `ps`, to tell the master and workers from other Python processes.
proc_name = "sgdserve"

# Log level of gunicorn's own messages (startup, worker restarts, errors).
loglevel = settings.log_level

# Errors to stderr, requests to stdout: a container runtime collects both.
errorlog = "-"
accesslog = "-"

# One JSON object per request. The logger below renders every atom as a JSON value (quotes,
# backslashes and control characters in a path escaped; a missing header is null), so each line
# parses. No request header is logged, so the Authorization token never reaches a log; the
# request and prediction ids come from the answer's headers (the client's X-Request-Id is
# echoed there), so a line ties a request to its prediction log line and its feedback.
logger_class = "service.server.JsonAccessLogger"
access_log_format = (
    '{"time": %(t)s, "method": %(m)s, "path": %(U)s, "status": %(s)s,'
    ' "duration_s": %(L)s, "model_version": %({x-model-version}o)s,'
    ' "request_id": %({x-request-id}o)s, "prediction_id": %({x-prediction-id}o)s,'
    ' "remote_addr": %(h)s}'
)

def on_starting(server):
    """Before any worker is forked: export a fresh Prometheus multiprocess directory, and
    tune glibc's malloc for request-sized buffers (service.server.tune_malloc)."""
    # Imported here, not at the top: prometheus_client should first be imported once the
    # directory is set (service.http.metrics also copes with the other order).
    from service.http.metrics import prepare_multiprocess_dir

    path, created = prepare_multiprocess_dir(settings.metrics_dir)
    # Kept on the arbiter, not in this module: SIGHUP re-executes this file into a fresh module,
    # whose on_exit must still know the directory to remove.
    server.sgdserve_temporary_metrics_dir = path if created else None
    server.log.info("Prometheus multiprocess directory: %s", path)
    # Before any fork, so every worker (and every replacement) inherits it.
    from service.server import tune_malloc

    tuned = tune_malloc(settings.malloc_mmap_threshold)
    if tuned:
        server.log.info(tuned)


def post_worker_init(worker):
    """Send sgdserve's log lines (a model reload: version from -> to) to gunicorn's error log,
    and load the model as a worker boots, so its first request does not pay for it (~0.5 s)."""
    import logging

    ours, theirs = logging.getLogger("sgdserve"), worker.log.error_log
    ours.handlers[:] = theirs.handlers
    ours.setLevel(theirs.level)
    ours.propagate = False
    state = getattr(worker.wsgi, "extensions", {}).get("sgdserve")
    if state is not None:
        state.holder.get()  # no model yet is (None, None); a failed load is logged and counted


def child_exit(server, worker):
    """Retire the exited worker's metrics: its gauges go, its counters join the archive."""
    from service.http.metrics import retire_process

    retire_process(worker.pid)


def on_exit(server):
    """Remove the metrics directory if it was a temporary one made in on_starting."""
    path = getattr(server, "sgdserve_temporary_metrics_dir", None)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
