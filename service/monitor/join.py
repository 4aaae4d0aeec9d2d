"""The join of the prediction and feedback logs: live quality, interval coverage and drift.

Feedback records are read first and folded into one ``id -> actual`` mapping in the order they
were received (``t``), so the last value sent for an id wins, whichever worker took it. Then
every prediction record in the window is read once: its inputs go to its version's drift
counts, and each of its ids with feedback gives an (actual, predicted) pair. A version's
numbers need its model (feature order, calibration residuals, training deciles), loaded from the
store once per version; a version no longer in the store still gets its live RMSE and MAE.

Cost is one ``orjson.loads`` per line and a few C-level passes per batch: a /predict batch's
rows become tuples with one ``itemgetter`` map, columns come out with one ``zip``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson
from msgspec import UNSET, UnsetType

from ..engine import LevelError, LinearModel
from ..engine.drift import ACT, WARN, level_shares, psi
from ..engine.schema import BOOLEAN, CATEGORICAL, ValueProblem
from .logfiles import LogStats, read_typed

__all__ = ["Joined", "VersionStats", "join"]

# (model, manifest) of a version, or None when the store no longer has it.
VersionLookup = Callable[[str], tuple[LinearModel, Mapping[str, Any]] | None]


@dataclass
class FeedbackRow:
    """A labelled row for retraining: features by name, the actual value, where it came from."""

    features: Mapping[str, Any]
    actual: float
    prediction_id: str | None  # None for a labelled row that was never predicted
    received: float  # when the feedback arrived (seconds since the epoch)


@dataclass
class VersionStats:
    """What the logs say about one model version in the window."""

    version: str
    predictions: int = 0
    first: float = math.inf
    last: float = -math.inf
    actual: list[float] = field(default_factory=list)
    predicted: list[float] = field(default_factory=list)
    rows: list[Sequence[Any]] = field(default_factory=list)  # inputs, the version's order
    undecodable: int = 0  # rows whose inputs could not be read (version gone, odd body)
    times: list[float] = field(default_factory=list)  # one per record, until finish()
    found: Any = None  # (model, manifest) from the store, or None

    def finish(self, d: int) -> None:
        """Settle what the hot loop left raw: the time span, predictions as floats, and only
        rows of the version's width (a version gone from the store has none)."""
        if self.times:
            self.first, self.last = min(self.times), max(self.times)
        self.times = []
        self.predicted = [float(p) if type(p) in (int, float) else math.nan
                          for p in self.predicted]
        if d < 0:
            self.undecodable += len(self.rows)
            self.rows = []
            return
        kept = [r for r in self.rows if type(r) in (list, tuple) and len(r) == d]
        self.undecodable += len(self.rows) - len(kept)
        self.rows = kept


@dataclass
class Joined:
    """The join's raw result: per-version statistics, feedback counts, rows for retraining."""

    versions: dict[str, VersionStats]
    feedback_ids: int  # distinct prediction ids with feedback (any time)
    matched: int  # of those, with their prediction in the window's logs
    labelled: int  # labelled rows (never predicted) in the window
    new_rows: int  # joined and labelled rows whose feedback came after ``since``
    rows: list[FeedbackRow]
    predictions: LogStats
    feedback: LogStats


class _Prediction(msgspec.Struct, gc=False):
    """A prediction log line as the join reads it (service/monitor/records.py writes it)."""

    id: str
    t: float
    v: str
    y: Any = None
    x: list[Any] | UnsetType = UNSET  # one row
    n: int | UnsetType = UNSET  # a batch: its body (kept raw until needed) or its columns
    request: msgspec.Raw | UnsetType = UNSET
    columns: msgspec.Raw | UnsetType = UNSET


class _Feedback(msgspec.Struct, gc=False):
    """A feedback log line."""

    t: float
    ids: list[Any] = []
    actual: list[Any] = []
    rows: list[Any] = []
    row_actual: list[Any] = []


_PREDICTIONS = msgspec.json.Decoder(_Prediction)
_FEEDBACK = msgspec.json.Decoder(_Feedback)


def join(log_dir: Path, lookup: VersionLookup, *, start: float | None = None,
         end: float | None = None, since: float | None = None,
         collect_rows: bool = False) -> Joined:
    """Join the logs in ``log_dir`` for predictions made in ``[start, end]`` (seconds since the
    epoch; None: unbounded). ``since`` counts the rows whose feedback came after it;
    ``collect_rows`` keeps the joined rows (features and actual) for retraining."""
    fb_stats, pred_stats = LogStats(), LogStats()
    actual_by_id, received_by_id, labelled_records = _feedback(
        log_dir, fb_stats, with_times=since is not None or collect_rows)

    lo = -math.inf if start is None else start
    hi = math.inf if end is None else end
    versions: dict[str, VersionStats] = {}
    # version -> (its statistics, its feature names or None, their count): looked up once.
    known: dict[str, tuple[VersionStats, tuple[str, ...] | None, int]] = {}
    rows: list[FeedbackRow] = []
    matched = new_rows = odd = 0
    after = math.inf if since is None else since
    get_actual = actual_by_id.get
    # Files last written before the window opened hold no prediction in it.
    since_mtime = None if start is None else start
    for records in read_typed(log_dir, "predictions", _PREDICTIONS, pred_stats,
                              since_mtime=since_mtime):
        # Single-row records a column at a time (list comprehensions, one C-level map for
        # the feedback lookup); batch records one by one, their rows again a column at a time.
        ones = [r for r in records if r.x is not UNSET]
        if lo > -math.inf or hi < math.inf:
            ones = [r for r in ones if lo <= r.t <= hi]
        for version, group in _by_version(ones).items():
            entry = known.get(version)
            if entry is None:
                entry = known[version] = _version_entry(versions, version, lookup)
            stats, names, d = entry
            ids = [r.id for r in group]
            values = [r.x for r in group]
            stats.predictions += len(group)
            stats.times.extend((group[0].t, group[-1].t))
            stats.rows.extend(values)
            answers = list(map(get_actual, ids))
            hits = [i for i, a in enumerate(answers) if a is not None]
            matched += len(hits)
            stats.actual.extend([answers[i] for i in hits])
            stats.predicted.extend([group[i].y for i in hits])
            if since is not None:
                new_rows += sum(received_by_id[ids[i]] > after for i in hits)
            if collect_rows and names is not None:
                rows.extend(FeedbackRow(dict(zip(names, values[i], strict=True)), answers[i],
                                        ids[i], received_by_id[ids[i]])
                            for i in hits if len(values[i]) == d)
        batches = [r for r in records if r.x is UNSET] if len(ones) != len(records) else ()
        for record in batches:
            t, n, pid = record.t, record.n, record.id
            if not lo <= t <= hi:
                continue
            ys = record.y
            if n is UNSET or type(ys) is not list or len(ys) != n:
                odd += 1  # a line that decodes but is neither a row nor a batch
                continue
            entry = known.get(record.v)
            if entry is None:
                entry = known[record.v] = _version_entry(versions, record.v, lookup)
            stats, names, d = entry
            stats.predictions += n
            stats.times.append(t)
            body = _body(record)
            batch_rows = _batch_rows(body, names, n)
            if batch_rows is None:
                stats.undecodable += n
            else:
                stats.rows.extend(batch_rows)
            # The rows' ids, built from cached suffixes, looked up in one C-level map.
            full_ids = _row_ids(pid, n)
            answers = list(map(get_actual, full_ids))
            hits = [i for i, a in enumerate(answers) if a is not None]
            if not hits:
                continue
            matched += len(hits)
            stats.actual.extend([answers[i] for i in hits])
            stats.predicted.extend([ys[i] for i in hits])
            if since is not None:
                new_rows += sum(received_by_id[full_ids[i]] > after for i in hits)
            if collect_rows and batch_rows is not None:
                rows.extend(FeedbackRow(_row_dict(body, names, batch_rows, i), answers[i],
                                        full_ids[i], received_by_id[full_ids[i]]) for i in hits)
    pred_stats.torn_lines += odd

    labelled = 0
    for t, row, actual in labelled_records:
        if lo <= t <= hi:
            labelled += 1
            new_rows += t > after
            if collect_rows:
                rows.append(FeedbackRow(row, actual, None, t))
    for stats, _, d in known.values():
        stats.finish(d)
    return Joined(versions, len(actual_by_id), matched, labelled, new_rows, rows, pred_stats,
                  fb_stats)


def _by_version(records: list[_Prediction]) -> dict[str, list[_Prediction]]:
    """Records by version, in file order (one version per file, unless a worker reloaded)."""
    if not records:
        return {}
    first = records[0].v
    if all(r.v == first for r in records):
        return {first: records}
    out: dict[str, list[_Prediction]] = {}
    for r in records:
        out.setdefault(r.v, []).append(r)
    return out


def _body(record: _Prediction) -> tuple[str, Any] | None:
    """A batch record's body (``{"instances": ...}``) or columns, parsed now."""
    kind, raw = ("request", record.request) if record.request is not UNSET else (
        "columns", record.columns)
    if raw is UNSET:
        return None
    try:
        return kind, orjson.loads(bytes(raw))
    except orjson.JSONDecodeError:
        return None


def _version_entry(versions: dict[str, VersionStats], version: Any, lookup: VersionLookup
                   ) -> tuple[VersionStats, tuple[str, ...] | None, int]:
    if type(version) is not str:
        raise TypeError("a version is a string")
    stats = versions[version] = VersionStats(version)
    found = lookup(version)
    stats.found = found
    names = found[0].feature_names if found is not None else None
    return stats, names, len(names) if names is not None else -1


def _feedback(log_dir: Path, stats: LogStats, with_times: bool = True):
    """``id -> actual`` (the last value received wins), ``id -> when`` (only ``with_times``:
    it costs a second mapping of every id), and labelled rows."""
    records = [r for batch in read_typed(log_dir, "feedback", _FEEDBACK, stats) for r in batch]
    records.sort(key=attrgetter("t"))  # stable: one worker's records keep their order
    actual: dict[str, float] = {}
    received: dict[str, float] = {}
    labelled: list[tuple[float, Mapping[str, Any], float]] = []
    for record in records:
        t, ids, values = record.t, record.ids, record.actual
        if ids and len(ids) == len(values):
            actual.update(zip(ids, values, strict=True))
            if with_times:
                received.update(dict.fromkeys(ids, t))
        rows, row_actual = record.rows, record.row_actual
        if rows and len(rows) == len(row_actual):
            labelled.extend((t, row, y) for row, y in zip(rows, row_actual, strict=True)
                            if type(row) is dict)
    return actual, received, labelled


_SUFFIXES: list[str] = []


def _row_ids(base: str, n: int) -> list[str]:
    """``["<base>.0", ..., "<base>.<n-1>"]``: the ids of a batch's rows."""
    while len(_SUFFIXES) < n:
        _SUFFIXES.extend(f".{i}" for i in range(len(_SUFFIXES), max(n, 2 * len(_SUFFIXES))))
    return [base + suffix for suffix in _SUFFIXES[:n]]


def _batch_rows(body: tuple[str, Any] | None, names: tuple[str, ...] | None,
                n: int) -> list[Sequence[Any]] | None:
    """A batch's inputs as one tuple per row in the version's feature order."""
    if names is None or body is None:
        return None
    kind, parsed = body
    if kind == "request":
        instances = parsed.get("instances") if type(parsed) is dict else None
        if type(instances) is not list or len(instances) != n:
            return None
        getter = itemgetter(*names)
        try:
            rows = list(map(getter, instances))
        except (KeyError, TypeError):
            return None
        return rows if len(names) > 1 else [(v,) for v in rows]
    if type(parsed) is not dict:
        return None
    try:
        picked = [parsed[name] for name in names]
    except KeyError:
        return None
    if any(type(c) is not list or len(c) != n for c in picked):
        return None
    return list(zip(*picked, strict=True))


def _row_dict(body: tuple[str, Any], names: tuple[str, ...] | None,
              batch_rows: list[Sequence[Any]], i: int) -> dict[str, Any]:
    kind, parsed = body
    if kind == "request":
        return dict(parsed["instances"][i])  # as sent: ignored columns too
    return dict(zip(names or (), batch_rows[i], strict=False))


# -- from a version's statistics to numbers ---------------------------------------------------


def live_metrics(stats: VersionStats) -> dict[str, float | None]:
    if not stats.actual:
        return {"rmse": None, "mae": None}
    r = np.asarray(stats.actual, np.float64) - np.asarray(stats.predicted, np.float64)
    r = r[np.isfinite(r)]
    if not len(r):
        return {"rmse": None, "mae": None}
    return {"rmse": float(np.sqrt(np.mean(r * r))), "mae": float(np.mean(np.abs(r)))}


def coverage(stats: VersionStats, model: LinearModel | None, level: float
             ) -> dict[str, Any]:
    out: dict[str, Any] = {"level": level, "observed": None, "rows": len(stats.actual)}
    if model is None or model.calibration is None or not stats.actual:
        return out
    try:
        covered = model.calibration.covers(np.asarray(stats.actual), np.asarray(stats.predicted),
                                           level)
    except LevelError as exc:
        out["error"] = str(exc)
        return out
    out["observed"] = float(covered.mean())
    return out


def drift(stats: VersionStats, model: LinearModel | None) -> dict[str, dict[str, Any]]:
    """Per feature: PSI against training, the share of unseen values and of missing ones."""
    if model is None or not stats.rows:
        return {}
    columns: Any = None
    if all(f.kind == "numeric" for f in model.schema.features):
        try:  # numbers only: one conversion in C, the columns are its rows
            columns = np.array(stats.rows, dtype=np.float64).T
        except (TypeError, ValueError):  # a null among them
            columns = None
    if columns is None:
        columns = list(zip(*stats.rows, strict=False))
    out = {}
    for feature, column in zip(model.schema.features, columns, strict=False):
        if feature.kind == CATEGORICAL:
            out[feature.name] = _categorical(feature, column)
        else:
            out[feature.name] = _numeric(feature, column, model.reference.get(feature.name))
    return out


# Fewer inputs than this in the window: the PSI is shown but too noisy to warn on (with 10 bins,
# 100 rows from the training distribution itself give a PSI near 0.05 on average).
DRIFT_MIN_ROWS = 100


def _level(value: float | None, rows: int) -> str:
    if value is None:
        return "unknown"
    if rows < DRIFT_MIN_ROWS:
        return "few_rows"
    return "act" if value >= ACT else "warn" if value >= WARN else "ok"


def _numeric(feature: Any, column: Sequence[Any], reference: Any) -> dict[str, Any]:
    values = _floats(feature, column)
    n = len(values)
    missing = np.isnan(values)
    present = values[~missing]
    out: dict[str, Any] = {"kind": feature.kind, "rows": n,
                           "missing_share": float(missing.mean()) if n else None}
    if feature.kind == BOOLEAN or feature.minimum is None or feature.maximum is None:
        unseen = None
    else:  # outside the training range: a number no training row had near it
        unseen = float(((present < feature.minimum) | (present > feature.maximum)).sum()
                       / len(present)) if len(present) else None
    out["unseen_share"] = unseen
    out["psi"] = reference.psi(present) if reference is not None and len(present) else None
    out["status"] = _level(out["psi"], len(present))
    return out


def _floats(feature: Any, column: Sequence[Any]) -> np.ndarray:
    if feature.kind == BOOLEAN:
        def number(v: Any) -> float:
            if v is None:
                return math.nan
            try:
                return feature.number(v)[0]
            except ValueProblem:
                return math.nan
        return np.fromiter(map(number, column), np.float64, len(column))
    if isinstance(column, np.ndarray):
        return column
    try:
        return np.array(column, dtype=np.float64)
    except (TypeError, ValueError):  # None among the numbers
        return np.fromiter((math.nan if type(v) not in (int, float) else v for v in column),
                           np.float64, len(column))


def _categorical(feature: Any, column: Sequence[Any]) -> dict[str, Any]:
    counts = Counter(column)
    n = len(column)
    bins = np.zeros(feature.n_levels)
    missing = unseen = 0
    for value, count in counts.items():
        if value is None or value == "":
            missing += count
        if value is not None and type(value) is not str:
            value = str(value)
        if not feature.seen(value):
            unseen += count
        bins[feature.code(value)] += count
    reference = level_shares(feature.counts, feature.other_count)
    present = n - missing
    value = psi(reference, bins) if n else None
    return {"kind": feature.kind, "rows": n, "missing_share": missing / n if n else None,
            "unseen_share": unseen / present if present else None, "psi": value,
            "status": _level(value, n)}
