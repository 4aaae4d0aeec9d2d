"""The monitoring report: the join's numbers per model version, as one JSON document.

``GET /monitoring``, ``sgdserve monitor --json``, the scheduler and ``/metrics`` all read the same
document. It is written to ``<log dir>/monitoring.json`` (atomically) whenever it is computed,
so ``/metrics`` renders gauges from the last one without joining anything, and a request for
``/monitoring`` within ``SGDSERVE_MONITOR_REFRESH`` seconds of the last computation reads it
instead of joining again. Computations take a lock file, so four workers asked at once join once.

The top level describes the active version (else the one with the most predictions); every
version with predictions in the window is under ``versions``::

    {"model_version", "window": {"from", "to"}, "predictions", "rows_with_feedback",
     "live": {"rmse", "mae"}, "holdout": {"rmse", "mae"},
     "interval_coverage": {"level", "observed", "rows"},
     "drift": {"<feature>": {"psi", "unseen_share", "missing_share", "status", ...}},
     "alerts": [...], "versions": [...], "feedback": {...}, "logs": {...}, "generated_at"}
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from ..engine import LinearModel
from ..engine.drift import ACT
from ..errors import SGDServeError
from ..util import to_json, utc_iso
from .join import Joined, VersionStats, coverage, drift, join, live_metrics

__all__ = ["REPORT_FILE", "build_report", "cached_report", "compute_report", "read_report",
           "store_lookup"]

REPORT_FILE = "monitoring.json"
_LOCK_FILE = ".monitoring.lock"
# Live RMSE this many times the holdout's is named in the alerts.
RMSE_ALERT_RATIO = 1.25


def store_lookup(store: Any):
    """A version lookup over a model store: (model, manifest), or None once it is gone."""
    cache: dict[str, tuple[LinearModel, Mapping[str, Any]] | None] = {}

    def lookup(version: str) -> tuple[LinearModel, Mapping[str, Any]] | None:
        if version not in cache:
            try:
                cache[version] = store.load(version)
            except (SGDServeError, OSError, ValueError):
                cache[version] = None
        return cache[version]

    return lookup


def _version_report(stats: VersionStats, found: tuple[LinearModel, Mapping[str, Any]] | None,
                    level: float) -> dict[str, Any]:
    model, manifest = found if found is not None else (None, {})
    holdout = ((manifest.get("metrics") or {}).get("holdout") or {})
    live = live_metrics(stats)
    report: dict[str, Any] = {
        "model_version": stats.version,
        "in_store": found is not None,
        "predictions": stats.predictions,
        "first_prediction": utc_iso_or_none(stats.first),
        "last_prediction": utc_iso_or_none(stats.last),
        "rows_with_feedback": len(stats.actual),
        "live": live,
        "holdout": {"rmse": holdout.get("rmse"), "mae": holdout.get("mae"),
                    "rows": holdout.get("rows")},
        "interval_coverage": coverage(stats, model, level),
        "drift": drift(stats, model),
    }
    if stats.undecodable:
        report["undecodable_records"] = stats.undecodable
    report["alerts"] = _alerts(report)
    return report


def _alerts(report: Mapping[str, Any]) -> list[str]:
    """What an operator should look at, in words (the usual lines: PSI 0.1 warn, 0.25 act)."""
    alerts = []
    live, holdout = report["live"], report["holdout"]
    if live.get("rmse") is not None and holdout.get("rmse"):
        ratio = live["rmse"] / holdout["rmse"]
        if ratio >= RMSE_ALERT_RATIO:
            alerts.append(f"live RMSE {live['rmse']:.6g} is {ratio:.2f}x the holdout's "
                          f"{holdout['rmse']:.6g} on {report['rows_with_feedback']} rows")
    cov = report["interval_coverage"]
    if cov.get("observed") is not None and cov["rows"] >= 30 and (
            cov["observed"] < cov["level"] - 0.05):
        alerts.append(f"{cov['level']:.0%} intervals covered {cov['observed']:.1%} of "
                      f"{cov['rows']} rows")
    for name, d in report["drift"].items():
        if d.get("status") in ("warn", "act"):
            what = "act: retrain" if d["psi"] >= ACT else "warn"
            alerts.append(f"drift on {name}: PSI {d['psi']:.3f} ({what})")
        if d.get("unseen_share") and d.get("status") != "few_rows":
            if d["unseen_share"] >= 0.05:
                alerts.append(f"{name}: {d['unseen_share']:.1%} of values never seen in "
                              "training")
    return alerts


def utc_iso_or_none(t: float) -> str | None:
    import datetime as dt

    if not math.isfinite(t):
        return None
    return utc_iso(dt.datetime.fromtimestamp(t, dt.UTC))


def build_report(joined: Joined, lookup: Any, active: str | None, *, level: float,
                 start: float | None, end: float, log_dir: Path) -> dict[str, Any]:
    """The monitoring document from a join (see the module docstring)."""
    versions = {v: _version_report(s, lookup(v), level) for v, s in joined.versions.items()}
    if active is not None and active not in versions:
        versions[active] = _version_report(VersionStats(active), lookup(active), level)
    top_id = active if active is not None else max(
        versions, key=lambda v: versions[v]["predictions"], default=None)
    top = dict(versions[top_id]) if top_id is not None else {
        "model_version": None, "predictions": 0, "rows_with_feedback": 0,
        "live": {"rmse": None, "mae": None}, "holdout": {"rmse": None, "mae": None},
        "interval_coverage": {"level": level, "observed": None, "rows": 0}, "drift": {},
        "alerts": []}
    top["active"] = top_id is not None and top_id == active
    top["window"] = {"from": utc_iso_or_none(start if start is not None else -math.inf),
                     "to": utc_iso_or_none(end)}
    top["versions"] = sorted(versions.values(), key=lambda r: r["last_prediction"] or "",
                             reverse=True)
    top["feedback"] = {"ids": joined.feedback_ids, "matched": joined.matched,
                       "labelled_rows": joined.labelled,
                       "unmatched": joined.feedback_ids - joined.matched}
    top["logs"] = {"directory": str(log_dir), "predictions": joined.predictions.to_dict(),
                   "feedback": joined.feedback.to_dict()}
    top["generated_at"] = utc_iso()
    top["generated_unix"] = time.time()
    return to_json(top, "monitoring")


def compute_report(store: Any, log_dir: Path, *, window: float | None, level: float,
                   end: float | None = None, since: float | None = None,
                   write: bool = True) -> dict[str, Any]:
    """Join the logs in ``log_dir`` over the last ``window`` seconds (None: all) and build the
    report; ``write`` keeps it as the directory's latest (for /metrics and later requests).
    ``since`` (seconds since the epoch) adds ``feedback.new_rows``: rows whose feedback came
    after it."""
    end = time.time() if end is None else end
    start = None if window is None else end - window
    lookup = store_lookup(store)
    try:
        active = store.active_version()
    except SGDServeError:
        active = None
    joined = join(Path(log_dir), lookup, start=start, end=end, since=since)
    report = build_report(joined, lookup, active, level=level, start=start, end=end,
                          log_dir=Path(log_dir))
    report["window"]["seconds"] = window
    if since is not None:
        report["feedback"]["new_rows"] = joined.new_rows
        report["feedback"]["since"] = utc_iso_or_none(since)
    if write:
        write_report(Path(log_dir), report)
    return report


def write_report(log_dir: Path, report: Mapping[str, Any]) -> None:
    """Keep ``report`` as the directory's latest (a reader sees the old one or the new)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / REPORT_FILE
    tmp = path.with_name(f".{REPORT_FILE}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(report))
    os.replace(tmp, path)


def read_report(log_dir: Path) -> dict[str, Any] | None:
    """The latest report written in ``log_dir``, or None."""
    try:
        return orjson.loads((Path(log_dir) / REPORT_FILE).read_bytes())
    except (FileNotFoundError, NotADirectoryError, orjson.JSONDecodeError):
        return None


def _lock(log_dir: Path) -> int | None:
    """An exclusive lock on the directory's report (a descriptor to close), or None when the
    directory cannot hold a lock file (read-only)."""
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def cached_report(store: Any, log_dir: Path, *, window: float | None, level: float,
                  max_age: float, refresh: bool = False) -> dict[str, Any]:
    """The latest report if it is younger than ``max_age`` seconds and for the same window and
    level, else a new one; one process computes while the others wait for it."""
    log_dir = Path(log_dir)

    def fresh() -> dict[str, Any] | None:
        report = read_report(log_dir)
        if report is None or time.time() - float(report.get("generated_unix", 0)) > max_age:
            return None
        if (report.get("window") or {}).get("seconds") != window or (
                report.get("interval_coverage") or {}).get("level") != level:
            return None
        return report

    found = None if refresh else fresh()
    if found is not None:
        return found
    fd = _lock(log_dir)
    try:
        # Another worker may have computed it while this one waited for the lock.
        found = None if refresh or fd is None else fresh()
        if found is not None:
            return found
        report = compute_report(store, log_dir, window=window, level=level, write=False)
        with contextlib.suppress(OSError):  # a read-only directory: answer, keep nothing
            write_report(log_dir, report)
        return report
    finally:
        if fd is not None:
            os.close(fd)
