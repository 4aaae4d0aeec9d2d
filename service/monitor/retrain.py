"""Retraining from what was learned: train on base data plus feedback, and decide when to.

:func:`train_with_feedback` joins the logs, writes the joined rows before the base data
(service/monitor/dataset.py) and runs the one training pipeline on that file, telling it how
many rows are recent so the gate judges the candidate on today's data; the version's provenance
names both sources and their row counts.

:func:`should_retrain` is the scheduler's test before a run: enough new feedback rows since the
active version was trained (``min_new_rows``), a feature's PSI at or above a line (``on_drift``),
or live RMSE at or above a multiple of the holdout's (``on_rmse``). Any one suffices; with none
given, every tick trains.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError, SGDServeError
from ..training import TrainResult, train
from .dataset import feedback_summary, write_with_feedback
from .join import DRIFT_MIN_ROWS, join
from .report import compute_report, store_lookup

__all__ = ["Triggers", "should_retrain", "train_with_feedback"]


def train_with_feedback(store: Any, data: Path, log_dir: Path, *, target: str,
                        window: float | None = None, **train_args: Any) -> TrainResult:
    """Train on ``data`` plus the feedback rows joined from ``log_dir`` (predictions made in
    the last ``window`` seconds; None: every one still logged)."""
    data = Path(data)
    end = time.time()
    joined = join(Path(log_dir), store_lookup(store),
                  start=None if window is None else end - window, end=end, collect_rows=True)
    rows = joined.rows
    sources = [{"source": data.name, "rows": None},
               {"source": "feedback", "rows": len(rows), "log_dir": str(log_dir),
                **feedback_summary(rows)}]
    if not rows:  # nothing joined: the base data alone, said so in the provenance
        return train(store, data, target=target, sources=sources, **train_args)
    with tempfile.TemporaryDirectory(prefix="sgdserve-feedback-") as tmp:
        combined = write_with_feedback(data, rows, target, Path(tmp),
                                       train_args.get("data_format"))
        train_args = dict(train_args)
        train_args.pop("data_format", None)
        train_args.setdefault("source", f"{data.name} + {len(rows)} feedback rows")
        return train(store, combined, target=target, recent_rows=len(rows), sources=sources,
                     **train_args)


@dataclass(frozen=True)
class Triggers:
    """When a scheduled run retrains; None: that test is off. All off: always retrain."""

    min_new_rows: int | None = None
    on_drift: float | None = None  # PSI of any feature
    on_rmse: float | None = None  # live RMSE / holdout RMSE

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.min_new_rows, self.on_drift, self.on_rmse))

    def __post_init__(self) -> None:
        if self.min_new_rows is not None and self.min_new_rows < 1:
            raise ValueError(f"--min-new-rows must be >= 1, got {self.min_new_rows}")
        if self.on_drift is not None and not self.on_drift > 0:
            raise ValueError(f"--on-drift must be a PSI > 0 (0.25 is the usual line), "
                             f"got {self.on_drift}")
        if self.on_rmse is not None and not self.on_rmse > 0:
            raise ValueError(f"--on-rmse must be a ratio > 0 (e.g. 1.25), got {self.on_rmse}")


def _trained_at(store: Any) -> float | None:
    try:
        version = store.active_version()
        if version is None:
            return None
        created = store.get(version).get("created_at")
    except SGDServeError:
        return None
    if not isinstance(created, str):
        return None
    try:
        return dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def should_retrain(store: Any, log_dir: Path, triggers: Triggers, *, window: float | None,
                   level: float) -> tuple[bool, str, Mapping[str, Any]]:
    """Whether a scheduled run trains now, why, and the monitoring report it looked at."""
    since = _trained_at(store)
    report = compute_report(store, log_dir, window=window, level=level, since=since)
    if not triggers.any:
        return True, "every run trains (no --min-new-rows, --on-drift or --on-rmse)", report
    if since is None:
        return True, "no active model to compare with", report
    reasons, waiting = [], []
    new_rows = report["feedback"].get("new_rows", 0)
    if triggers.min_new_rows is not None:
        if new_rows >= triggers.min_new_rows:
            reasons.append(f"{new_rows} new feedback rows since the active version was trained "
                           f"(>= {triggers.min_new_rows})")
        else:
            waiting.append(f"{new_rows} of {triggers.min_new_rows} new feedback rows")
    if triggers.on_drift is not None:
        drifted = {name: d["psi"] for name, d in (report.get("drift") or {}).items()
                   if d.get("psi") is not None and d["psi"] >= triggers.on_drift
                   and d.get("status") != "few_rows"}
        if drifted:
            worst = max(drifted, key=drifted.get)
            reasons.append(f"drift on {', '.join(sorted(drifted))} (PSI {drifted[worst]:.3f} on "
                           f"{worst} >= {triggers.on_drift:g})")
        else:
            waiting.append(f"no feature's PSI >= {triggers.on_drift:g} (on at least "
                           f"{DRIFT_MIN_ROWS} inputs)")
    if triggers.on_rmse is not None:
        live = (report.get("live") or {}).get("rmse")
        holdout = (report.get("holdout") or {}).get("rmse")
        if live is not None and holdout:
            ratio = live / holdout
            if ratio >= triggers.on_rmse:
                reasons.append(f"live RMSE {live:.6g} is {ratio:.2f}x the holdout's "
                               f"{holdout:.6g} (>= {triggers.on_rmse:g}x)")
            else:
                waiting.append(f"live RMSE {ratio:.2f}x the holdout's (< {triggers.on_rmse:g}x)")
        else:
            waiting.append("no live RMSE yet (no feedback in the window)")
    if reasons:
        return True, "; ".join(reasons), report
    return False, "not retraining: " + "; ".join(waiting), report


def check_feedback_target(target: str, model_target: str | None) -> None:
    """Feedback holds actual values of the served model's target: the same column must be
    trained on."""
    if model_target is not None and target != model_target:
        raise DataError(f"--with-feedback: feedback holds actual values of {model_target!r}, "
                        f"but the target is {target!r}")
