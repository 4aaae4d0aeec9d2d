"""Prometheus metrics that add up across gunicorn workers.

Gunicorn workers share no memory, so a counter kept in one worker's memory would make
``GET /metrics`` answer with whichever worker the scrape happened to reach. prometheus_client's
multiprocess mode fixes that: every process writes its values into memory-mapped files in one
directory, and :meth:`Metrics.render` merges all files. The rules of that mode, and where
sgdserve follows them:

- ``PROMETHEUS_MULTIPROC_DIR`` names the directory and must be set before prometheus_client
  chooses its value class; :func:`prepare_multiprocess_dir` sets it in the gunicorn master
  (``on_starting`` hook) before any worker is forked, and wipes old files (counters from a
  previous run must not be added to this one).
- When a worker exits, the gunicorn master calls :func:`retire_process` (``child_exit`` hook):
  its per-worker gauges disappear, and its counters and histograms are added into one
  ``*_archive.db`` file per kind and its own files removed, so they keep adding up while the
  number of files a scrape reads stays bounded however many workers die (a worker killed every
  40 s would otherwise leave 2,160 x 3 files of 64 KiB a day, each read by every scrape).
- The version a worker serves is not a labelled gauge in the memory-mapped files (a series per
  version would stay there, at 0, for every version a worker ever served): each worker writes
  it to ``serving_<pid>.txt``, which :func:`retire_process` removes, and a collector reads the
  files at render time. One series per live worker.
- Metrics are never registered in a registry that is also rendered; rendering uses a fresh
  registry with a ``MultiProcessCollector`` so nothing is counted twice.

Endpoint labels are URL rules (``"/models/<version_id>/activate"``), never raw paths: a path is
client input, and a label per distinct path would grow without bound.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.mmap_dict import MmapedDict

from ..store.jobs import JobStatus

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. A single-row prediction takes well under a millisecond in the worker, a 10,000-row
# batch a few milliseconds; the upper buckets catch a slow disk or an overloaded host.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

RETRAIN_OUTCOMES = tuple(sorted(JobStatus.final()))

_SERVING_PREFIX = "serving_"
_LOCK_FILE = ".compaction.lock"
# Kinds of per-process files and how a dead process's values join the archive.
_ARCHIVED = {"counter": "sum", "histogram": "sum", "gauge_max": "max"}


def multiprocess_dir() -> Path | None:
    """The directory prometheus_client's multiprocess mode uses in this process, if any."""
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path else None


def prepare_multiprocess_dir(path: Path | None = None) -> tuple[Path, bool]:
    """Create (or empty) the metrics directory and export it to processes forked from now on.

    Returns the directory and whether it was created here (a temporary directory the caller
    removes at exit). Only the files this module makes (``*.db``, ``serving_*.txt``) are removed
    from a given directory, never anything else.
    """
    created = path is None
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="sgdserve-metrics-"))
    else:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")) + glob.glob(
                os.path.join(path, f"{_SERVING_PREFIX}*.txt")):
            os.remove(stale)
    os.environ[MULTIPROC_ENV] = str(path)
    return path, created


@contextlib.contextmanager
def _compaction_lock(path: Path, exclusive: bool) -> Iterator[None]:
    """Scrapes (shared) never read while a dead worker's files move into the archive
    (exclusive): they would count its values twice, or not at all, for a moment."""
    fd = os.open(path / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def retire_process(pid: int, path: Path | None = None) -> None:
    """An exited worker's metrics: drop its gauges and its serving file, and fold its
    counters and histograms into the archive files (gunicorn ``child_exit`` hook)."""
    path = multiprocess_dir() if path is None else Path(path)
    if path is None:
        return
    multiprocess.mark_process_dead(pid, str(path))
    with contextlib.suppress(FileNotFoundError):
        os.remove(path / f"{_SERVING_PREFIX}{pid}.txt")
    with _compaction_lock(path, exclusive=True):
        for kind, how in _ARCHIVED.items():
            dead = path / f"{kind}_{pid}.db"
            if not dead.exists():
                continue
            archive = MmapedDict(str(path / f"{kind}_archive.db"))
            try:
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(dead)):
                    old = archive.read_value(key)[0]
                    new = old + value if how == "sum" else max(old, value)
                    archive.write_value(key, new, timestamp)
            finally:
                archive.close()
            os.remove(dead)


class _MonitoringCollector:
    """The last monitoring report (service/monitor/report.py) as gauges, read at scrape time
    from the file the join wrote: a scrape never joins logs. Only the report's top version (the
    active one) is exported, so the series are bounded by the model's features."""

    def __init__(self, read: Callable[[], dict | None] | None) -> None:
        self.read = read

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self.read() if self.read is not None else None
        if not report or not report.get("model_version"):
            return
        version = str(report["model_version"])

        def gauge(name: str, text: str, value: Any, **labels: str) -> GaugeMetricFamily | None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return None
            family = GaugeMetricFamily(name, text, labels=["version", *labels])
            family.add_metric([version, *labels.values()], float(value))
            return family

        live, holdout = report.get("live") or {}, report.get("holdout") or {}
        coverage = report.get("interval_coverage") or {}
        level = str(coverage.get("level"))
        found = [
            gauge("sgdserve_monitoring_report_timestamp_seconds",
                  "Unix time the last monitoring report was computed.",
                  report.get("generated_unix")),
            gauge("sgdserve_rows_with_feedback", "Predictions in the report's window with an "
                  "actual value.", report.get("rows_with_feedback")),
            gauge("sgdserve_live_rmse", "RMSE of predictions against their feedback, in the "
                  "report's window.", live.get("rmse")),
            gauge("sgdserve_live_mae", "MAE of predictions against their feedback.",
                  live.get("mae")),
            gauge("sgdserve_holdout_rmse", "The version's RMSE on its training holdout.",
                  holdout.get("rmse")),
            gauge("sgdserve_holdout_mae", "The version's MAE on its training holdout.",
                  holdout.get("mae")),
            gauge("sgdserve_interval_coverage", "Share of feedback rows inside their conformal "
                  "interval at the report's level.", coverage.get("observed"), level=level),
        ]
        yield from (f for f in found if f is not None)
        drift = report.get("drift") or {}
        for name, text, key in (
                ("sgdserve_feature_psi", "Population stability index of a feature's inputs "
                 "against training (0.1 warn, 0.25 act).", "psi"),
                ("sgdserve_feature_unseen_share", "Share of a feature's inputs never seen in "
                 "training (levels; numbers outside the training range).", "unseen_share"),
                ("sgdserve_feature_missing_share", "Share of a feature's inputs that were empty.",
                 "missing_share")):
            family = GaugeMetricFamily(name, text, labels=["version", "feature"])
            for feature, numbers in drift.items():
                value = numbers.get(key) if isinstance(numbers, dict) else None
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    family.add_metric([version, str(feature)], float(value))
            yield family


class _ServingCollector:
    """``sgdserve_model_version_info``: one series per live worker, from its serving file."""

    def __init__(self, path: Path | None, local: Callable[[], str | None]) -> None:
        self.path = path
        self.local = local

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "sgdserve_model_version_info",
            "1 for the model version each live worker serves (label pid: the worker).",
            labels=["pid", "version"],
        )
        if self.path is None:
            version = self.local()
            if version is not None:
                family.add_metric([str(os.getpid()), version], 1.0)
        else:
            for name in sorted(os.listdir(self.path)):
                if name.startswith(_SERVING_PREFIX) and name.endswith(".txt"):
                    pid = name[len(_SERVING_PREFIX):-len(".txt")]
                    try:
                        version = (self.path / name).read_text().strip()
                    except FileNotFoundError:  # retired meanwhile
                        continue
                    if version:
                        family.add_metric([pid, version], 1.0)
        yield family


_VALUES_DIR: Path | None = None  # the directory values.ValueClass writes into, if any


def _use_multiprocess_values(path: Path) -> None:
    """Make prometheus_client write values into ``path``, whatever was imported first."""
    current = os.environ.get(MULTIPROC_ENV)
    if current is None:
        os.environ[MULTIPROC_ENV] = str(path)
    elif Path(current).resolve() != path.resolve():
        raise ValueError(
            f"metrics dir is {str(path)!r} but {MULTIPROC_ENV} is {current!r}; they must match"
        )
    # prometheus_client picks its value class when first imported; if that happened before the
    # directory was known (the CLI imports everything up front), switch it now, before any of
    # our metrics exist, or every worker would silently count only for itself. A value class
    # caches its open files, so a new directory (another app in this process) gets a new one.
    global _VALUES_DIR
    resolved = path.resolve()
    if not getattr(values.ValueClass, "_multiprocess", False) or _VALUES_DIR != resolved:
        values.ValueClass = values.MultiProcessValue()
        _VALUES_DIR = resolved


def _use_process_values() -> None:
    """Values held in this process only (no metrics directory): an app built after one that had
    a directory must not write into that directory's files and share its counts."""
    global _VALUES_DIR
    if getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MutexValue
        _VALUES_DIR = None


class Metrics:
    """The service's metrics: cheap to record on the hot path, rendered in Prometheus format."""

    def __init__(self, registry_dir: Path | None,
                 monitoring: Callable[[], dict | None] | None = None) -> None:
        # None means one process (Flask test client) unless this process already runs in
        # multiprocess mode (a worker of a server that exported the directory): then use it,
        # or each worker would report only itself.
        if registry_dir is None:
            registry_dir = multiprocess_dir()
        self.registry_dir = Path(registry_dir) if registry_dir is not None else None
        if self.registry_dir is not None:
            _use_multiprocess_values(self.registry_dir)
            self._render_registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._render_registry, path=str(self.registry_dir))
            # Registered nowhere: the collector above reads every process's files, this
            # process's included; registering them too would count this worker twice.
            registry: CollectorRegistry | None = None
        else:
            _use_process_values()
            self._render_registry = registry = CollectorRegistry()
            # Multiprocess mode has no *_created series; leave them out here too so tests see
            # the exposition production serves (the switch is process-wide and only drops those).
            disable_created_metrics()

        self._requests = Counter(
            "sgdserve_requests_total",
            "HTTP requests handled, by endpoint (URL rule), method and status.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self._errors = Counter(
            "sgdserve_errors_total",
            "HTTP responses with status >= 400, by endpoint (URL rule) and status.",
            ["endpoint", "status"],
            registry=registry,
        )
        self._latency = Histogram(
            "sgdserve_request_duration_seconds",
            "Time spent handling a request inside the worker, by endpoint (URL rule).",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._rows = Counter(
            "sgdserve_rows_predicted_total",
            "Rows scored by /predict (a batch of n rows counts n).",
            registry=registry,
        )
        self._render_registry.register(_ServingCollector(self.registry_dir,
                                                         lambda: self._active_version))
        self._render_registry.register(_MonitoringCollector(monitoring))
        self._load_failures = Counter(
            "sgdserve_model_load_failures_total",
            "Failed loads of a model version (unsigned, tampered, unreadable or unreachable), "
            "each attempt; the old one kept serving.",
            ["version"],
            registry=registry,
        )
        self._poll_failures = Counter(
            "sgdserve_store_poll_failures_total",
            "Checks of CURRENT that failed (store unreachable, CURRENT damaged); retried at the "
            "next poll while the old model keeps serving.",
            registry=registry,
        )
        self._imputed = Counter(
            "sgdserve_values_imputed_total",
            "Empty feature values in predictions, filled in with the training mean, by feature.",
            ["feature"],
            registry=registry,
        )
        self._unseen = Counter(
            "sgdserve_unseen_levels_total",
            "Categorical values never seen in training (predicted as the 'other' level), by "
            "feature.",
            ["feature"],
            registry=registry,
        )
        self._log_failures = Counter(
            "sgdserve_log_write_failures_total",
            "Prediction or feedback log lines not written (read-only or full log directory), by "
            "log and operation; predictions went on.",
            ["log", "operation"],
            registry=registry,
        )
        self._feedback = Counter(
            "sgdserve_feedback_rows_total",
            "Rows sent to /feedback, by outcome (accepted, unknown id, labelled row).",
            ["outcome"],
            registry=registry,
        )
        self._retrain_jobs = Counter(
            "sgdserve_retrain_jobs_total",
            "Finished retrain jobs, by outcome (promoted, rejected, failed).",
            ["outcome"],
            registry=registry,
        )
        self._last_promotion = Gauge(
            "sgdserve_last_promotion_timestamp_seconds",
            "Unix time of the last promotion of a model version in the store.",
            registry=registry,
            # Promotion times only grow, so the newest value any process has seen is the truth.
            multiprocess_mode="max",
        )
        # (endpoint, method, status) -> bound recorder; labels() costs a lock and a tuple of
        # str() calls per metric, caching the children keeps observe_request to a few writes.
        self._request_children: dict[tuple[str, str, int], Callable[[float], None]] = {}
        self._active_version: str | None = None

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one request; ``endpoint`` is the URL rule (bounded), never the raw path."""
        record = self._request_children.get((endpoint, method, status))
        if record is None:
            record = self._bind_request(endpoint, method, status)
        record(seconds)

    def _bind_request(self, endpoint: str, method: str, status: int) -> Callable[[float], None]:
        requests_inc = self._requests.labels(endpoint, method, str(status)).inc
        latency_observe = self._latency.labels(endpoint).observe
        if status >= 400:
            errors_inc = self._errors.labels(endpoint, str(status)).inc

            def record(seconds: float) -> None:
                requests_inc()
                errors_inc()
                latency_observe(seconds)
        else:

            def record(seconds: float) -> None:
                requests_inc()
                latency_observe(seconds)

        self._request_children[(endpoint, method, status)] = record
        return record

    def rows_predicted(self, n: int) -> None:
        """Count ``n`` scored rows."""
        self._rows.inc(n)

    def encoded(self, imputed: dict[str, int], unseen: dict[str, int]) -> None:
        """Count imputed values and unseen levels by feature (names from the model, bounded)."""
        for feature, n in imputed.items():
            self._imputed.labels(feature).inc(n)
        for feature, n in unseen.items():
            self._unseen.labels(feature).inc(n)

    def log_write_failed(self, log: str, operation: str) -> None:
        """Count a log line not written (``log``: predictions or feedback)."""
        self._log_failures.labels(log, operation).inc()

    def feedback_rows(self, accepted: int, unknown: int, labelled: int) -> None:
        """Count the rows of one /feedback request by outcome."""
        for outcome, n in (("accepted", accepted), ("unknown", unknown), ("labelled", labelled)):
            if n:
                self._feedback.labels(outcome).inc(n)

    def model_loaded(self, version: str) -> None:
        """Mark ``version`` as the one this process serves."""
        if self._active_version == version:
            return
        self._active_version = version
        if self.registry_dir is not None:
            serving = self.registry_dir / f"{_SERVING_PREFIX}{os.getpid()}.txt"
            tmp = serving.with_suffix(".tmp")
            tmp.write_text(version + "\n")
            os.replace(tmp, serving)  # a scrape reads the old version or the new, never half

    def model_load_failed(self, version: str) -> None:
        """Count a failed load of ``version`` (a store id, never unchecked request input)."""
        self._load_failures.labels(version).inc()

    def store_poll_failed(self) -> None:
        """Count a check of ``CURRENT`` that failed."""
        self._poll_failures.inc()

    def retrain_job(self, outcome: str) -> None:
        """Count one finished retrain job; call it exactly once per job, from one process.

        In sgdserve that is the worker that started the job, when its reaper thread sees the job
        process end (service/http/state.py); other workers only read the job's status file.
        """
        if outcome not in RETRAIN_OUTCOMES:
            raise ValueError(
                f"retrain outcome must be one of {', '.join(RETRAIN_OUTCOMES)}, got {outcome!r}"
            )
        self._retrain_jobs.labels(outcome).inc()

    def promotion(self, timestamp: float) -> None:
        """Record the time of the last promotion (the newest any process has seen wins)."""
        self._last_promotion.set(timestamp)

    def render(self) -> tuple[bytes, str]:
        """Prometheus text exposition of every process's metrics, and its content type."""
        if self.registry_dir is None:
            return generate_latest(self._render_registry), CONTENT_TYPE_LATEST
        with _compaction_lock(self.registry_dir, exclusive=False):
            return generate_latest(self._render_registry), CONTENT_TYPE_LATEST


__all__ = [
    "LATENCY_BUCKETS",
    "MULTIPROC_ENV",
    "Metrics",
    "RETRAIN_OUTCOMES",
    "multiprocess_dir",
    "retire_process",
    "prepare_multiprocess_dir",
]
