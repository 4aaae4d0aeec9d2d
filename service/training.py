"""The one training pipeline, shared by the CLI, the scheduler and HTTP retrain jobs.

load data -> seeded holdout split -> fit -> metrics on train and holdout -> gate -> save ->
promote. The gate compares the candidate's holdout RMSE with the active model's RMSE on the
same holdout rows; a candidate that is not worse by more than ``tolerance`` is promoted.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from . import data as data_module
from .cluster import DaskEngine
from .data.holdout import bottom_k, row_keys
from .engine import (
    CALIBRATION_ROWS,
    Calibration,
    LinearModel,
    NumericReference,
    RegressionSums,
    SGDRegressor,
    regression_metrics,
)
from .engine.drift import REFERENCE_ROWS
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
HOLDOUT_SAMPLE_ROWS = data_module.HOLDOUT_SAMPLE_ROWS
_CALIBRATION_SALT = 0xC0C0  # seeded hashes pick the calibration residuals and the drift
_REFERENCE_SALT = 0xD1D1  # reference rows (the holdout sample's own is in data.holdout)
# The gate judges a candidate on the recent (feedback) rows of its holdout when it has this many.
MIN_RECENT_ROWS = 30

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
    engine: dict[str, Any] = field(default_factory=lambda: {"name": "local"})
    warnings: list[str] = field(default_factory=list)
    inferred: dict[str, Any] = field(default_factory=dict)  # columns by kind, dropped, imputed
    notices: list[str] = field(default_factory=list)  # what the data layer decided, in words
    levels: dict[str, dict[str, float]] = field(default_factory=dict)  # top levels per feature
    effects: dict[str, float] = field(default_factory=dict)  # slope x training std, by feature

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(
    store: ModelStore,
    data: str | Path | Sequence[str | Path],
    *,
    target: str,
    features: Sequence[str] | None = None,
    params: Mapping[str, Any] | None = None,
    encoding: Mapping[str, Any] | None = None,
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
    data_format: str | None = None,
    engine: str | DaskEngine = "local",
    recent_rows: int | None = None,
    sources: Sequence[Mapping[str, Any]] | None = None,
) -> TrainResult:
    """Train a candidate on ``data`` (a CSV, Parquet or JSON lines file, or a dataset of them:
    a directory, a glob or a list, local or ``s3://``), gate it against the active model, keep
    it.

    ``params`` are ``SGDRegressor`` keyword arguments; ``encoding`` holds the data layer's
    options (``categorical``, ``numeric``, ``drop``: column names; ``min_frequency``,
    ``max_levels``; ``target_transform``: ``"none"`` or ``"log"``). ``lock=False`` means the
    caller already holds the store lock (a retrain job that inherited it). ``stream`` forces
    (True) or forbids (False) reading the file in chunks; by default files over
    ``data.STREAM_THRESHOLD_BYTES`` stream. ``engine`` ``"dask"`` (a local cluster) or a
    :class:`~service.cluster.DaskEngine` fits on a Dask cluster, one partition per file; the
    gate, the store and the result are the same (training with ``recent_rows`` is local only).
    Raises ``LockHeldError`` when another process trains.

    ``recent_rows``: the file's first rows are recent (joined feedback written before the base
    data): when the holdout holds at least ``MIN_RECENT_ROWS`` of them, the gate compares the
    candidate with the active model on those rows, today's data. ``sources`` describe where the
    rows came from, for the manifest (a name and a row count each; a count of None is the rest
    of the file's rows).
    """
    started = time.perf_counter()
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be between 0 and 1, got {holdout_fraction}")
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    reg = make_regressor(params, seed)
    options, transform = encoding_options(encoding, features)
    if engine == "dask":
        engine = DaskEngine()
    if not (engine == "local" or isinstance(engine, DaskEngine)):
        raise ValueError(f"engine must be local or dask, got {engine!r}")
    dataset = data_module.open_sources(data, data_format)
    if isinstance(engine, DaskEngine):
        if recent_rows is not None:
            raise ValueError("training with feedback (recent_rows) runs on the local engine "
                             "only")
        stream = False  # each partition is held in its worker's memory
    elif stream is None:
        stream = data_module.should_stream(dataset)
    split = _Split(target, options, holdout_fraction, seed, data_format, transform,
                   recent_rows)

    guard = store.lock(wait=wait_lock, owner=owner or "sgdserve train") if lock else nullcontext()
    with guard:
        active_id, active, decided, expected = _active_for_gate(store, force)
        fit = _fit_on_cluster(engine) if isinstance(engine, DaskEngine) else \
            _fit_streamed if stream else _fit_in_memory
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            evaluation = fit(reg, dataset, split, progress, active)
        notes = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
        if getattr(reg, "step_scale_", 1.0) < 1.0:
            evaluation.notices.append(
                f"eta0 {reg.eta0:g} is above the stable step for this data "
                f"({reg.eta0 * reg.step_scale_:.3g}, from its curvature {reg.curvature_:.3g}): "
                "the stable step was used")
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
        if recent_rows is not None:
            metrics["recent_holdout"] = evaluation.recent
            metrics["active_recent_holdout"] = evaluation.active_recent
        status = "promoted" if promote else "rejected"
        inferred = summarize_schema(candidate)
        calibration = evaluation.calibration
        data_info: dict[str, Any] = {**evaluation.fingerprint.to_dict(),
                                     "source": source or dataset.name}
        if sources is not None:
            listed = [dict(s) for s in sources]
            known = sum(s["rows"] for s in listed if s.get("rows") is not None)
            for s in listed:
                if s.get("rows") is None:
                    s["rows"] = evaluation.fingerprint.rows - known
            data_info["sources"] = listed
        manifest = {
            "data": data_info,
            "split": {
                "holdout_fraction": holdout_fraction,
                "seed": seed,
                "train_rows": evaluation.train["rows"],
                "holdout_rows": evaluation.holdout["rows"],
                "streamed": bool(stream),
            },
            "engine": evaluation.engine,
            "encoding": {**options_to_dict(options), "target_transform": transform},
            "inferred": inferred,
            "notices": evaluation.notices,
            "decisions": evaluation.decisions,
            "hyperparameters": reg.get_params(),
            "metrics": metrics,
            "loss_history": list(reg.loss_history_),
            "holdout_sample": evaluation.holdout_sample,
            "calibration": None if calibration is None else {
                "residuals": calibration.n, "of_rows": calibration.of_rows,
                "scale": calibration.scale, "max_level": calibration.max_level,
                "half_width_90": (calibration.half_width(0.9)
                                  if calibration.n >= 9 else None),
            },
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
        engine=evaluation.engine,
        warnings=notes,
        inferred=inferred,
        notices=evaluation.notices,
        levels=_top_levels(candidate),
        effects={n: float(c * sd) for n, c, sd in zip(
            candidate.schema.design_names(), candidate.coef, candidate.x_scale, strict=True)},
    )


ENCODING_KEYS = ("categorical", "numeric", "drop", "min_frequency", "max_levels",
                 "target_transform")


def encoding_options(encoding: Mapping[str, Any] | None, features: Sequence[str] | None
                     ) -> tuple[data_module.EncodingOptions, str]:
    """The data layer's options and the target transform, from user parameters."""
    encoding = dict(encoding or {})
    unknown = sorted(set(encoding) - set(ENCODING_KEYS))
    if unknown:
        raise ValueError(f"unknown encoding parameter {unknown[0]!r}")
    transform = encoding.pop("target_transform", "none") or "none"
    if transform not in ("none", "log"):
        raise ValueError(f"target_transform must be none or log, got {transform!r}")
    options = data_module.EncodingOptions(
        features=tuple(features) if features is not None else None,
        categorical=frozenset(encoding.get("categorical") or ()),
        numeric=frozenset(encoding.get("numeric") or ()),
        drop=frozenset(encoding.get("drop") or ()),
        min_frequency=int(encoding.get("min_frequency", data_module.DEFAULT_MIN_FREQUENCY)),
        max_levels=int(encoding.get("max_levels", data_module.DEFAULT_MAX_LEVELS)),
    )
    return options, transform


def options_to_dict(options: data_module.EncodingOptions) -> dict[str, Any]:
    return {"categorical": sorted(options.categorical), "numeric": sorted(options.numeric),
            "drop": sorted(options.drop), "min_frequency": options.min_frequency,
            "max_levels": options.max_levels}


def summarize_schema(model: LinearModel) -> dict[str, Any]:
    """What was inferred, in a few lines: columns by kind, levels kept and pooled, what was
    dropped and why, what is imputed."""
    schema = model.schema
    by_kind: dict[str, list[str]] = {"numeric": [], "boolean": [], "categorical": []}
    for feature in schema.features:
        by_kind[feature.kind].append(feature.name)
    return {
        **by_kind,
        "levels": {f.name: {"kept": len(f.levels), "pooled": f.pooled}
                   for f in schema.categorical},
        "dropped": dict(schema.dropped),
        "imputed": {f.name: f.missing for f in schema.features if f.missing},
    }


def _top_levels(model: LinearModel, n: int = 5) -> dict[str, dict[str, float]]:
    """Each categorical feature's levels with the largest effects (for the summary)."""
    out = {}
    for name, weights in model.level_weights().items():
        ranked = sorted(weights.items(), key=lambda kv: -abs(kv[1]))[:n]
        out[name] = dict(ranked)
    return out


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
    """How rows are read and held out: the same for the candidate and the active model."""

    target: str
    options: data_module.EncodingOptions
    fraction: float
    seed: int
    data_format: str | None
    transform: str
    recent_rows: int | None = None

    def recent(self, rows: np.ndarray) -> np.ndarray:
        """Which of these file rows are recent (feedback written before the base data)."""
        if self.recent_rows is None:
            return np.zeros(len(rows), bool)
        return rows < self.recent_rows


@dataclass
class _Evaluation:
    """The fitted candidate and its numbers (and the active model's on the same holdout rows)."""

    candidate: LinearModel
    fingerprint: data_module.Fingerprint
    train: dict[str, Any]
    holdout: dict[str, Any]
    active_holdout: dict[str, Any] | None
    holdout_sample: dict[str, Any]
    notices: list[str]
    decisions: list[str]
    engine: dict[str, Any] = field(default_factory=lambda: {"name": "local"})
    calibration: Calibration | None = None  # none from the Dask engine: no intervals
    recent: dict[str, Any] | None = None  # holdout metrics on the recent rows only
    active_recent: dict[str, Any] | None = None


class _RowSample:
    """A bounded, seeded sample of rows of float columns: the ``size`` rows with the smallest
    seeded per-row hash, so the same rows whether the file is read whole or streamed."""

    def __init__(self, size: int, seed: int, width: int) -> None:
        self.size, self.seed = size, seed
        self.keys = np.empty(0, np.uint64)
        self.values = np.empty((0, width))

    def add(self, rows: np.ndarray, values: np.ndarray) -> None:
        """``values`` (n, width) belong to the file rows ``rows``."""
        if len(rows) == 0:
            return
        keys = row_keys(rows, self.seed)
        # Only the part's own bottom k can be in the union's: taken before anything is copied
        # (in row order, 2.4x faster a gather from 800,000 rows x 20 of a Fortran-order design).
        keep = bottom_k(keys, self.size)
        if keep is not None:
            keys, values = keys[keep], values[keep]
        self.keys = np.concatenate([self.keys, keys])
        self.values = np.concatenate([self.values, np.asarray(values, np.float64)])
        keep = bottom_k(self.keys, self.size)
        if keep is not None:
            self.keys, self.values = self.keys[keep], self.values[keep]


def _calibration(sample: _RowSample, of_rows: int, model: LinearModel) -> Calibration:
    """The candidate's sorted absolute holdout residuals, on its fitted scale."""
    return Calibration(sample.values[:, 0], scale=model.target_transform, of_rows=of_rows)


def _reference(sample: _RowSample, schema: Any, train_rows: int) -> dict[str, NumericReference]:
    """Each numeric or boolean feature's training deciles (imputed values left out)."""
    names = schema.design_names()
    position = {n: i for i, n in enumerate(names)}
    out = {}
    for j, feature in enumerate(schema.numeric):
        values = sample.values[:, j]
        if feature.indicator:
            values = values[sample.values[:, position[f"{feature.name} (missing)"]] == 0]
        out[feature.name] = NumericReference.from_values(
            values, feature.missing / train_rows if train_rows else 0.0)
    return out


def _residuals(model: LinearModel, y_fitted: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return np.abs(y_fitted - model.fitted_scale(predicted))[:, None]


def _comparable(active: LinearModel | None, candidate: LinearModel) -> bool:
    """Whether the active model can be scored on the candidate's holdout rows: it reads the
    same columns for the same target."""
    return (active is not None and active.target == candidate.target
            and set(active.feature_names) == set(candidate.feature_names))


def _fit_in_memory(reg, sources, split: _Split, progress, active) -> _Evaluation:
    if progress:
        progress("read", 0, 1)
    # The holdout rows as read are kept only to score an active model on them.
    loaded = data_module.load(sources, split.target, split.options, fraction=split.fraction,
                              seed=split.seed, data_format=split.data_format,
                              target_transform=split.transform,
                              holdout_frame=active is not None and active.target == split.target)
    train, hold, schema = loaded.train, loaded.holdout, loaded.schema
    if progress:
        progress("fit", 0, 1)
    reg.fit(train.X, train.y, codes=train.codes, n_levels=schema.n_levels or None)
    if progress:
        progress("fit", 1, 1)
    candidate = LinearModel.from_regressor(reg, schema, split.target, split.transform)
    predicted = candidate.predict(hold.X, hold.codes)
    sample = data_module.HoldoutSample(split.seed)
    sample.add(loaded.holdout_rows, hold.target, predicted)
    residuals = _RowSample(CALIBRATION_ROWS, split.seed ^ _CALIBRATION_SALT, 1)
    residuals.add(loaded.holdout_rows, _residuals(candidate, hold.y, predicted))
    is_train = np.ones(loaded.fingerprint.rows, bool)
    is_train[loaded.holdout_rows] = False
    train_rows = np.flatnonzero(is_train)
    reference = _RowSample(REFERENCE_ROWS, split.seed ^ _REFERENCE_SALT, train.X.shape[1])
    reference.add(train_rows, train.X)
    candidate = dataclasses.replace(
        candidate, calibration=_calibration(residuals, len(hold), candidate),
        reference=_reference(reference, schema, len(train)))
    recent = split.recent(loaded.holdout_rows)
    active_holdout = active_recent = None
    if _comparable(active, candidate):
        assert loaded.holdout_frame is not None  # kept for an active model of this target
        theirs = data_module.encode(active.schema, loaded.holdout_frame, loaded.source)
        active_predicted = active.predict(theirs.X, theirs.codes)
        active_holdout = regression_metrics(hold.target, active_predicted)
        if split.recent_rows is not None:
            active_recent = regression_metrics(hold.target[recent], active_predicted[recent])
    return _Evaluation(
        candidate=candidate,
        fingerprint=loaded.fingerprint,
        train=regression_metrics(train.target, candidate.predict(train.X, train.codes)),
        holdout=regression_metrics(hold.target, predicted),
        active_holdout=active_holdout,
        holdout_sample=sample.to_dict(len(hold)),
        notices=loaded.notices,
        decisions=loaded.decisions,
        calibration=candidate.calibration,
        recent=(regression_metrics(hold.target[recent], predicted[recent])
                if split.recent_rows is not None else None),
        active_recent=active_recent,
    )


def _fit_streamed(reg, sources, split: _Split, progress, active) -> _Evaluation:
    """Fit with bounded memory: a schema pass, a statistics pass, one pass per epoch, one
    evaluation pass. No rows are kept: holdout metrics, the candidate's and the active model's
    on the same rows, are running sums of the last pass.
    """
    stream = data_module.Stream(sources, split.target, split.options, fraction=split.fraction,
                                seed=split.seed, data_format=split.data_format,
                                target_transform=split.transform)
    if progress:
        progress("schema", 0, 1)
    schema = stream.fit_schema()
    passes = {"n": 0}

    def training_chunks() -> Iterator[tuple[np.ndarray, np.ndarray, Any]]:
        if progress:
            first = passes["n"] == 0
            progress("scaler" if first else "epoch", max(passes["n"] - 1, 0), reg.max_iter)
        passes["n"] += 1
        for chunk in stream:
            keep = ~chunk.holdout
            if keep.any():
                rows = chunk.design.rows(keep)
                yield rows.X, rows.y, rows.codes

    reg.fit_chunks(training_chunks, n_levels=schema.n_levels or None)
    candidate = LinearModel.from_regressor(reg, schema, split.target, split.transform)
    comparable = _comparable(active, candidate)
    train, holdout, active_holdout = RegressionSums(), RegressionSums(), RegressionSums()
    recent, active_recent = RegressionSums(), RegressionSums()
    sample = data_module.HoldoutSample(split.seed)
    residuals = _RowSample(CALIBRATION_ROWS, split.seed ^ _CALIBRATION_SALT, 1)
    reference = _RowSample(REFERENCE_ROWS, split.seed ^ _REFERENCE_SALT,
                           len(schema.design_names()))
    for chunk in stream:
        design, mask = chunk.design, chunk.holdout
        kept = design.rows(~mask)
        train.add(kept.target, candidate.predict(kept.X, kept.codes))
        reference.add(chunk.start_row + np.flatnonzero(~mask), kept.X)
        if mask.any():
            hold = design.rows(mask)
            rows = chunk.start_row + np.flatnonzero(mask)
            predicted = candidate.predict(hold.X, hold.codes)
            holdout.add(hold.target, predicted)
            sample.add(rows, hold.target, predicted)
            residuals.add(rows, _residuals(candidate, hold.y, predicted))
            is_recent = split.recent(rows)
            recent.add(hold.target[is_recent], predicted[is_recent])
            if comparable:
                theirs = data_module.encode(active.schema, chunk.frame.filter(pl.Series(mask)),
                                            stream.source)
                active_predicted = active.predict(theirs.X, theirs.codes)
                active_holdout.add(hold.target, active_predicted)
                active_recent.add(hold.target[is_recent], active_predicted[is_recent])
    if holdout.n == 0:
        raise DataError("the file is too small to hold out rows for evaluation")
    assert stream.fingerprint is not None
    candidate = dataclasses.replace(
        candidate, calibration=_calibration(residuals, holdout.n, candidate),
        reference=_reference(reference, schema, train.n))
    with_recent = split.recent_rows is not None
    return _Evaluation(
        candidate=candidate,
        fingerprint=stream.fingerprint,
        train=train.metrics(),
        holdout=holdout.metrics(),
        active_holdout=active_holdout.metrics() if comparable else None,
        holdout_sample=sample.to_dict(holdout.n),
        notices=stream.notices,
        decisions=stream.decisions,
        calibration=candidate.calibration,
        recent=recent.metrics() if with_recent else None,
        active_recent=active_recent.metrics() if with_recent and comparable else None,
    )


def _fit_on_cluster(engine: DaskEngine) -> Callable[..., _Evaluation]:
    """The fit step on a Dask cluster: the same evaluation as a local run, from partitions."""

    def fit(reg, sources, split: _Split, progress, active) -> _Evaluation:
        with engine.fit(reg, sources, target=split.target, options=split.options,
                        fraction=split.fraction, seed=split.seed, data_format=split.data_format,
                        target_transform=split.transform, progress=progress) as run:
            assert run.schema is not None and run.fingerprint is not None
            candidate = LinearModel.from_regressor(reg, run.schema, split.target,
                                                   split.transform)
            if progress:
                progress("evaluate", 0, 1)
            scores = run.evaluate(candidate, active if _comparable(active, candidate) else None)
            provenance = run.provenance()
        return _Evaluation(
            candidate=candidate,
            fingerprint=run.fingerprint,
            train=scores.train.metrics(),
            holdout=scores.holdout.metrics(),
            active_holdout=scores.active.metrics() if scores.active is not None else None,
            holdout_sample=scores.sample.to_dict(scores.holdout.n),
            notices=run.notices,
            decisions=run.decisions,
            engine={**provenance, "epochs": reg.n_iter_},
        )

    return fit


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
    recent, active_recent = evaluation.recent, evaluation.active_recent
    if recent and active_recent and recent["rows"] >= MIN_RECENT_ROWS:
        # Judged on today's data: the feedback rows of the holdout, not the whole of it.
        new, old = recent["rmse"], active_recent["rmse"]
        comparison = (
            f"holdout RMSE {new:.6g} vs active {active_id} {old:.6g} on the same "
            f"{recent['rows']} recent (feedback) rows (tolerance {tolerance:.2%}; on all "
            f"{evaluation.holdout['rows']} holdout rows {evaluation.holdout['rmse']:.6g} vs "
            f"{evaluation.active_holdout['rmse']:.6g})"
        )
    if new <= old * (1.0 + tolerance):
        return True, f"not worse: {comparison}"
    if force:
        return True, f"forced although worse: {comparison}"
    return False, f"worse: {comparison}"
