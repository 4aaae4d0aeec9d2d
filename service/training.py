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
from .errors import ConvergenceWarning, DataError, IntegrityError, NoActiveModelError
from .model import LinearModel
from .sgd import SGDRegressor, regression_metrics
from .store import ModelStore

DEFAULT_HOLDOUT_FRACTION = 0.2

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
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            if stream:
                split = _fit_streamed(reg, path, target, features, holdout_fraction, seed, progress)
            else:
                split = _fit_in_memory(reg, path, target, features, holdout_fraction, seed,
                                       progress)
        notes = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

        candidate = LinearModel.from_regressor(reg, split.feature_names, target)
        cand_holdout = split.holdout_metrics(candidate)
        metrics: dict[str, Any] = {"train": split.train_metrics, "holdout": cand_holdout}

        active_id, promote, reason, active_metrics = _gate(
            store, candidate, split, cand_holdout, tolerance, force
        )
        metrics["active_holdout"] = active_metrics
        status = "promoted" if promote else "rejected"
        manifest = {
            "data": {**split.fingerprint.to_dict(), "source": source or path.name},
            "split": {
                "holdout_fraction": holdout_fraction,
                "seed": seed,
                "train_rows": split.train_rows,
                "holdout_rows": cand_holdout["rows"],
                "streamed": bool(stream),
            },
            "hyperparameters": reg.get_params(),
            "metrics": metrics,
            "loss_history": list(reg.loss_history_),
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
            store.activate(version)
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
class _Split:
    """The holdout rows kept for evaluation and what was learned about the training rows."""

    feature_names: list[str]
    fingerprint: data_module.Fingerprint
    train_metrics: dict[str, Any]
    train_rows: int
    X_holdout: np.ndarray
    y_holdout: np.ndarray

    def holdout_metrics(self, model: LinearModel) -> dict[str, Any]:
        return regression_metrics(self.y_holdout, model.predict(self.X_holdout))


def _fit_in_memory(reg, path, target, features, fraction, seed, progress) -> _Split:
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
    train_metrics = regression_metrics(y_train, reg.predict(X_train))
    return _Split(ds.feature_names, ds.fingerprint, train_metrics, len(y_train),
                  ds.X[mask], ds.y[mask])


def _fit_streamed(reg, path, target, features, fraction, seed, progress) -> _Split:
    reader = data_module.iter_chunks(path, target, features)
    holdout_X: list[np.ndarray] = []
    holdout_y: list[np.ndarray] = []
    passes = {"n": 0}

    def training_chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        first = passes["n"] == 0
        passes["n"] += 1
        if progress:
            progress("scaler" if first else "epoch", passes["n"] - 1, reg.max_iter)
        for chunk in reader:
            mask = _holdout(chunk.start_row, len(chunk.y), fraction, seed)
            if first and mask.any():  # the holdout (a fraction of the file) is kept once
                holdout_X.append(chunk.X[mask].copy())
                holdout_y.append(chunk.y[mask].copy())
            keep = ~mask
            if keep.any():
                yield chunk.X[keep], chunk.y[keep]

    reg.fit_chunks(training_chunks)
    if not holdout_y:
        raise DataError("the file is too small to hold out rows for evaluation")
    # Training metrics need one more pass; the model is final, so predict chunk by chunk.
    sse = sae = n = 0.0
    y_sum = y_sq = 0.0
    for chunk in reader:
        keep = ~_holdout(chunk.start_row, len(chunk.y), fraction, seed)
        y = chunk.y[keep]
        r = y - reg.predict(chunk.X[keep])
        sse += float(r @ r)
        sae += float(np.abs(r).sum())
        n += len(y)
        y_sum += float(y.sum())
        y_sq += float(y @ y)
    sst = y_sq - y_sum * y_sum / n
    train_metrics = {
        "rmse": math.sqrt(sse / n),
        "mae": sae / n,
        "r2": 1.0 - sse / sst if sst > 0 else 0.0,
        "rows": int(n),
    }
    assert reader.fingerprint is not None
    return _Split(reader.feature_names, reader.fingerprint, train_metrics, int(n),
                  np.concatenate(holdout_X), np.concatenate(holdout_y))


def _holdout(start_row: int, n_rows: int, fraction: float, seed: int) -> np.ndarray:
    mask = data_module.holdout_mask(start_row, n_rows, fraction, seed)
    if start_row == 0 and n_rows >= 3 and not mask.any():
        mask[-1] = True  # tiny files: hold out at least one row, deterministically
    return mask


# ---------------------------------------------------------------------------------------------
# The gate


def _gate(store, candidate: LinearModel, split: _Split, cand: Mapping[str, Any],
          tolerance: float, force: bool):
    """Decide promotion; returns (active id, promote, reason, active holdout metrics)."""
    try:
        active_id, active, _ = store.active()
    except NoActiveModelError:
        return None, True, "no active model: the first model is promoted", None
    except IntegrityError as exc:
        active_id = store.active_version()
        return active_id, True, f"the active model cannot be loaded ({exc}); promoted", None

    if set(active.feature_names) != set(candidate.feature_names) or (
        active.target != candidate.target
    ):
        what = (  # active -> candidate: what promoting it would change
            f"features {list(active.feature_names)} -> {list(candidate.feature_names)}"
            if set(active.feature_names) != set(candidate.feature_names)
            else f"target {active.target!r} -> {candidate.target!r}"
        )
        if force:
            reason = f"forced: the candidate differs from the active model ({what})"
            return active_id, True, reason, None
        return (
            active_id,
            False,
            f"the candidate differs from the active model {active_id} ({what}); "
            "use force to promote it anyway",
            None,
        )

    order = [candidate.feature_names.index(f) for f in active.feature_names]
    active_metrics = regression_metrics(split.y_holdout, active.predict(split.X_holdout[:, order]))
    new, old = cand["rmse"], active_metrics["rmse"]
    limit = old * (1.0 + tolerance)
    comparison = (
        f"holdout RMSE {new:.6g} vs active {active_id} {old:.6g} on the same "
        f"{cand['rows']} rows (tolerance {tolerance:.2%})"
    )
    if new <= limit:
        return active_id, True, f"not worse: {comparison}", active_metrics
    if force:
        return active_id, True, f"forced although worse: {comparison}", active_metrics
    return active_id, False, f"worse: {comparison}", active_metrics
