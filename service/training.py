"""The one training pipeline, shared by the CLI, the scheduler and HTTP retrain jobs.

load data -> seeded holdout split -> fit -> metrics on train and holdout -> gate -> save ->
promote. The gate compares the candidate's holdout RMSE with the active model's RMSE on the
same holdout rows; a candidate that is not worse by more than ``tolerance`` is promoted.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import data as data_module
from .engine import LinearModel, RegressionSums, SGDRegressor, regression_metrics
from .errors import (
    ConvergenceWarning,
    CurrentDamagedError,
    DataError,
    IntegrityError,
    NoActiveModelError,
)
from .store import ANY, ModelStore

DEFAULT_HOLDOUT_FRACTION = 0.2
# Holdout (actual, predicted) pairs kept in the manifest for the model page's plots.
HOLDOUT_SAMPLE_ROWS = 2000
_SAMPLE_SALT = 0x5A5A  # a second seeded hash picks the sample among the holdout rows

# A progress callback receives (phase, done, total): phase "read", "fit", "scaler" or "epoch".
Progress = Callable[[str, int, int], None]


@dataclass
class TrainResult:
    """What a training run produced and what the gate decided."""

    version: str
    promoted: bool
    status: str  # "promoted" or "rejected"
    reason: str
    metrics: dict[str, Any]
    active_version: str | None  # the version the candidate was compared with
    features: list[str]
    target: str
    coefficients: dict[str, float]
    intercept: float
    epochs: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(
    store: ModelStore,
    data: str | Path,
    *,
    target: str,
    features: Sequence[str] | None = None,
    params: Mapping[str, Any] | None = None,
    force: bool = False,
    tolerance: float = 0.01,
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    seed: int = 0,
    wait_lock: bool | float = False,
    progress: Progress | None = None,
    source: str | None = None,
    owner: str = "",
    lock: bool = True,
    stream: bool | None = None,
) -> TrainResult:
    """Train a candidate on ``data`` (a CSV file), gate it against the active model, keep it.

    ``params`` are ``SGDRegressor`` keyword arguments. ``lock=False`` means the caller already
    holds the store lock (a retrain job that inherited it). ``stream`` forces (True) or forbids
    (False) reading the file in chunks; by default files over
    ``data.STREAM_THRESHOLD_BYTES`` stream. Raises ``LockHeldError`` when another process trains.
    """
    started = time.perf_counter()
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be between 0 and 1, got {holdout_fraction}")
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    reg = make_regressor(params, seed)
    path = Path(data)
    if stream is None:
        stream = data_module.should_stream(path)

    guard = store.lock(wait=wait_lock, owner=owner or "sgdserve train") if lock else nullcontext()
    with guard:
        active_id, active, decided, expected = _active_for_gate(store, force)
        fit = _fit_streamed if stream else _fit_in_memory
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            evaluation = fit(reg, path, target, features, holdout_fraction, seed, progress,
                             active)
        notes = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

        candidate = evaluation.candidate
        promote, reason = decided or _decide(active_id, active, evaluation, tolerance, force)
        metrics: dict[str, Any] = {
            "train": evaluation.train,
            "holdout": evaluation.holdout,
            "active_holdout": evaluation.active_holdout,
        }
        status = "promoted" if promote else "rejected"
        manifest = {
            "data": {**evaluation.fingerprint.to_dict(), "source": source or path.name},
            "split": {
                "holdout_fraction": holdout_fraction,
                "seed": seed,
                "train_rows": evaluation.train["rows"],
                "holdout_rows": evaluation.holdout["rows"],
                "streamed": bool(stream),
            },
            "hyperparameters": reg.get_params(),
            "metrics": metrics,
            "loss_history": list(reg.loss_history_),
            "holdout_sample": evaluation.holdout_sample,
            "epochs": reg.n_iter_,
            "gate": {
                "compared_with": active_id,
                "tolerance": tolerance,
                "forced": bool(force),
                "reason": reason,
            },
            "coefficients": candidate.coefficients(),
            "intercept": candidate.intercept,
            "warnings": notes,
            "training_seconds": round(time.perf_counter() - started, 3),
        }
        version = store.save(candidate, manifest, parent=active_id, status=status)
        if promote:
            store.activate(version, expected_current=expected)
        store.prune()

    return TrainResult(
        version=version,
        promoted=promote,
        status=status,
        reason=reason,
        metrics=metrics,
        active_version=active_id,
        features=list(candidate.feature_names),
        target=target,
        coefficients=candidate.coefficients(),
        intercept=candidate.intercept,
        epochs=reg.n_iter_,
        seconds=round(time.perf_counter() - started, 3),
        warnings=notes,
    )


def make_regressor(params: Mapping[str, Any] | None, seed: int) -> SGDRegressor:
    """An ``SGDRegressor`` from user parameters, validated before any data is read."""
    params = dict(params or {})
    known = set(SGDRegressor().get_params())
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown training parameter {unknown[0]!r}")
    params.setdefault("random_state", seed)
    reg = SGDRegressor(**params)
    reg._validate_params()
    return reg


# ---------------------------------------------------------------------------------------------
# Splitting and fitting


@dataclass
class _Evaluation:
    """The fitted candidate and its numbers (and the active model's on the same holdout rows)."""

    candidate: LinearModel
    fingerprint: data_module.Fingerprint
    train: dict[str, Any]
    holdout: dict[str, Any]
    active_holdout: dict[str, Any] | None
    holdout_sample: dict[str, Any]


class _HoldoutSample:
    """A bounded, seeded sample of the holdout rows' (actual, predicted) pairs: the rows with the
    smallest values of a seeded per-row hash (a bottom-k sample), so the same rows whether the
    file is read whole or streamed, spread over the whole file whatever its order."""

    def __init__(self, seed: int) -> None:
        self.seed = seed ^ _SAMPLE_SALT
        self.rows = np.empty(0, np.int64)
        self.keys = np.empty(0, np.uint64)
        self.actual = np.empty(0)
        self.predicted = np.empty(0)

    def add(self, start_row: int, holdout: np.ndarray, y: np.ndarray, pred: np.ndarray) -> None:
        """``holdout`` marks this chunk's holdout rows; ``y`` and ``pred`` are theirs only."""
        rows = start_row + np.flatnonzero(holdout)
        keys = data_module.row_hash(start_row, len(holdout), self.seed)[holdout]
        self.rows = np.concatenate([self.rows, rows])
        self.keys = np.concatenate([self.keys, keys])
        self.actual = np.concatenate([self.actual, y])
        self.predicted = np.concatenate([self.predicted, pred])
        if len(self.keys) > HOLDOUT_SAMPLE_ROWS:
            keep = np.argpartition(self.keys, HOLDOUT_SAMPLE_ROWS - 1)[:HOLDOUT_SAMPLE_ROWS]
            self.rows, self.keys = self.rows[keep], self.keys[keep]
            self.actual, self.predicted = self.actual[keep], self.predicted[keep]

    def to_dict(self, holdout_rows: int) -> dict[str, Any]:
        order = np.argsort(self.rows, kind="stable")  # file order
        return {"actual": self.actual[order].tolist(), "predicted": self.predicted[order].tolist(),
                "of_rows": holdout_rows}


def _active_columns(active: LinearModel | None, names: Sequence[str]) -> list[int] | None:
    """Column order that feeds the active model from the candidate's matrix, if comparable."""
    if active is None or set(active.feature_names) != set(names):
        return None
    return [list(names).index(f) for f in active.feature_names]


def _fit_in_memory(reg, path, target, features, fraction, seed, progress, active):
    if progress:
        progress("read", 0, 1)
    ds = data_module.read_csv(path, target, features)
    mask = _holdout(0, len(ds.y), fraction, seed)
    if not mask.any() or len(ds.y) - int(mask.sum()) < 2:  # 2 rows: none held out
        raise DataError(f"need at least 3 data rows to train and evaluate, got {len(ds.y)}")
    keep = ~mask
    X_train, y_train = ds.X[keep], ds.y[keep]
    if progress:
        progress("fit", 0, 1)
    reg.fit(X_train, y_train)
    if progress:
        progress("fit", 1, 1)
    candidate = LinearModel.from_regressor(reg, ds.feature_names, target)
    X_hold, y_hold = ds.X[mask], ds.y[mask]
    columns = _active_columns(active, ds.feature_names) if active is not None else None
    predicted = candidate.predict(X_hold)
    sample = _HoldoutSample(seed)
    sample.add(0, mask, y_hold, predicted)
    return _Evaluation(
        candidate=candidate,
        fingerprint=ds.fingerprint,
        train=regression_metrics(y_train, candidate.predict(X_train)),
        holdout=regression_metrics(y_hold, predicted),
        active_holdout=(
            regression_metrics(y_hold, active.predict(X_hold[:, columns]))
            if columns is not None else None
        ),
        holdout_sample=sample.to_dict(len(y_hold)),
    )


def _fit_streamed(reg, path, target, features, fraction, seed, progress, active):
    """Fit with bounded memory: a statistics pass, one pass per epoch, one evaluation pass.

    No rows are kept: holdout metrics, the candidate's and the active model's on the same rows,
    are running sums of the last pass.
    """
    reader = data_module.iter_chunks(path, target, features)
    passes = {"n": 0}

    def training_chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if progress:
            first = passes["n"] == 0
            progress("scaler" if first else "epoch", max(passes["n"] - 1, 0), reg.max_iter)
        passes["n"] += 1
        for chunk in reader:
            keep = ~_holdout(chunk.start_row, len(chunk.y), fraction, seed)
            if keep.any():
                yield chunk.X[keep], chunk.y[keep]

    reg.fit_chunks(training_chunks)
    candidate = LinearModel.from_regressor(reg, reader.feature_names, target)
    columns = _active_columns(active, reader.feature_names) if active is not None else None
    train, holdout, active_holdout = RegressionSums(), RegressionSums(), RegressionSums()
    sample = _HoldoutSample(seed)
    for chunk in reader:
        mask = _holdout(chunk.start_row, len(chunk.y), fraction, seed)
        keep = ~mask
        train.add(chunk.y[keep], candidate.predict(chunk.X[keep]))
        if mask.any():
            X_hold, y_hold = chunk.X[mask], chunk.y[mask]
            predicted = candidate.predict(X_hold)
            holdout.add(y_hold, predicted)
            sample.add(chunk.start_row, mask, y_hold, predicted)
            if columns is not None:
                active_holdout.add(y_hold, active.predict(X_hold[:, columns]))
    if holdout.n == 0:
        raise DataError("the file is too small to hold out rows for evaluation")
    assert reader.fingerprint is not None
    return _Evaluation(
        candidate=candidate,
        fingerprint=reader.fingerprint,
        train=train.metrics(),
        holdout=holdout.metrics(),
        active_holdout=active_holdout.metrics() if columns is not None else None,
        holdout_sample=sample.to_dict(holdout.n),
    )


def _holdout(start_row: int, n_rows: int, fraction: float, seed: int) -> np.ndarray:
    mask = data_module.holdout_mask(start_row, n_rows, fraction, seed)
    if start_row == 0 and n_rows >= 3 and not mask.any():
        mask[-1] = True  # tiny files: hold out at least one row, deterministically
    return mask


# ---------------------------------------------------------------------------------------------
# The gate


def _active_for_gate(store: ModelStore, force: bool):
    """The active model to compare with: (id, model or None, a decision already made or None,
    the precondition for the promotion)."""
    try:
        active_id, active, _ = store.active()
    except NoActiveModelError:
        return None, None, (True, "no active model: the first model is promoted"), None
    except CurrentDamagedError as exc:
        if not force:
            raise CurrentDamagedError(
                f"{exc}; nothing was trained: with a damaged CURRENT the gate has no active "
                "model to compare with"
            ) from None
        return None, None, (True, f"forced: {exc}; the candidate repairs it"), ANY
    except IntegrityError as exc:  # CURRENT names a version whose files are broken
        active_id = store.active_version()
        return active_id, None, (
            True, f"the active model cannot be loaded ({exc}); promoted"), active_id
    return active_id, active, None, active_id


def _decide(active_id: str | None, active: LinearModel, evaluation: _Evaluation,
            tolerance: float, force: bool) -> tuple[bool, str]:
    """Promote when not worse than the active model by more than ``tolerance`` (or forced)."""
    candidate = evaluation.candidate
    if evaluation.active_holdout is None or active.target != candidate.target:
        what = (  # active -> candidate: what promoting it would change
            f"features {list(active.feature_names)} -> {list(candidate.feature_names)}"
            if set(active.feature_names) != set(candidate.feature_names)
            else f"target {active.target!r} -> {candidate.target!r}"
        )
        if force:
            return True, f"forced: the candidate differs from the active model ({what})"
        return False, (
            f"the candidate differs from the active model {active_id} ({what}); "
            "use force to promote it anyway"
        )
    new, old = evaluation.holdout["rmse"], evaluation.active_holdout["rmse"]
    comparison = (
        f"holdout RMSE {new:.6g} vs active {active_id} {old:.6g} on the same "
        f"{evaluation.holdout['rows']} rows (tolerance {tolerance:.2%})"
    )
    if new <= old * (1.0 + tolerance):
        return True, f"not worse: {comparison}"
    if force:
        return True, f"forced although worse: {comparison}"
    return False, f"worse: {comparison}"
