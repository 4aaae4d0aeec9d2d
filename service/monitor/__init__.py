"""The production loop: prediction ids, the prediction and feedback logs, the join, the
monitoring report, and retraining from feedback.

    ids.py       self-verifying prediction ids (a keyed MAC inside the id)
    logfiles.py  append-only JSON-lines files per process, rotated and bounded; a tolerant reader
    records.py   what a line of each log holds
    join.py      predictions joined with feedback: live quality, interval coverage, drift
    report.py    the monitoring document (GET /monitoring, sgdserve monitor, /metrics)
    dataset.py   base data plus joined feedback rows, as one training file
    retrain.py   training with feedback, and when a scheduled run should retrain

It sits above training (it trains with feedback) and below HTTP (which writes the logs and
answers /feedback and /monitoring); the numerics it uses (intervals, PSI) are the engine's.
"""

from __future__ import annotations

from .ids import IdIssuer, ParsedId, derive_key
from .logfiles import LogStats, LogWriter, list_files, read_lines
from .report import cached_report, compute_report, read_report
from .retrain import Triggers, should_retrain, train_with_feedback

__all__ = [
    "IdIssuer",
    "LogStats",
    "LogWriter",
    "ParsedId",
    "Triggers",
    "cached_report",
    "compute_report",
    "derive_key",
    "list_files",
    "read_lines",
    "read_report",
    "should_retrain",
    "train_with_feedback",
]
