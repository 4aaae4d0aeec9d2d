"""The serving form of a trained model, in the data's original units.

    y = intercept + sum(slope * value) over numeric and boolean features (and missing
        indicators) + sum(weight of the row's level) over categorical features

A :class:`LinearModel` is what the store saves (as plain arrays, strings and numbers, never
pickled objects) and what every prediction path uses: ``/predict``, the Open Inference
Protocol, ``sgdserve predict`` and training's evaluation. They all sum through
:meth:`LinearModel.predict_design`'s order (design columns one by one with plain multiplies and
adds, then the intercept, then each categorical weight), so a row predicts bit for bit the same
alone, in a batch, over HTTP or from a file. With ``target_transform="log"`` the sum is the
logarithm of the prediction, clipped to the range of log(target) in training before ``exp``: a
row far outside the training data would otherwise get an exponentially wild price (measured in
docs/benchmarks-tabular.md: R^2 fell to -218 on one split of the diamonds without it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError
from ..util import to_json
from .conformal import Calibration
from .drift import NumericReference
from .explain import Explainer
from .schema import CATEGORICAL, Encoded, Schema

# 3: a categorical feature's levels packed as one string and end offsets (format 2: lists of
# strings, one pickled object per level); 1: all-numeric, before schemas. All three load.
FORMAT_VERSION = 3
TARGET_TRANSFORMS = ("none", "log")


@dataclass(frozen=True)
class LinearModel:
    """A fitted linear model over named features; it needs no outside encoder or scaler."""

    schema: Schema
    target: str
    coef: np.ndarray  # slope per design column (numeric, boolean, indicators), original units
    intercept: float  # bias, original units (of log y with the log transform)
    x_mean: np.ndarray  # the design columns' training statistics
    x_scale: np.ndarray
    y_mean: float
    y_scale: float
    coef_std: np.ndarray  # weights on standardised design columns and target
    intercept_std: float
    level_coef: tuple[np.ndarray, ...] = ()  # per categorical feature, per code (incl. other)
    target_transform: str = "none"
    # With the log transform: (lowest, highest) log(target) in training; sums are clipped to it.
    target_range: tuple[float, float] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # hyper-parameters etc.
    # Holdout residuals for prediction intervals (None: a version trained before them).
    calibration: Calibration | None = None
    # Training deciles per numeric or boolean feature, for drift (categorical: the schema's).
    reference: Mapping[str, NumericReference] = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = len(self.schema.design_names())
        for name in ("coef", "x_mean", "x_scale", "coef_std"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (d,):
                raise ValueError(f"{name} must have shape ({d},), got {arr.shape}")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        levels = []
        categorical = self.schema.categorical
        if len(self.level_coef) != len(categorical):
            raise ValueError(f"level_coef must have one array per categorical feature "
                             f"({len(categorical)}), got {len(self.level_coef)}")
        for feature, weights in zip(categorical, self.level_coef, strict=True):
            arr = np.asarray(weights, dtype=np.float64)
            if arr.shape != (feature.n_levels,):
                raise ValueError(f"level weights of {feature.name!r} must have shape "
                                 f"({feature.n_levels},), got {arr.shape}")
            arr.setflags(write=False)
            levels.append(arr)
        object.__setattr__(self, "level_coef", tuple(levels))
        if self.target_transform not in TARGET_TRANSFORMS:
            raise ValueError(f"target_transform must be one of {TARGET_TRANSFORMS}, "
                             f"got {self.target_transform!r}")
        if self.target_range is not None:
            low, high = (float(v) for v in self.target_range)
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(f"target_range must be finite (low, high), "
                                 f"got {self.target_range!r}")
            object.__setattr__(self, "target_range", (low, high))
        # Plain lists for the per-row path: indexing a list is cheaper than an array.
        object.__setattr__(self, "_coef_list", self.coef.tolist())
        object.__setattr__(self, "_level_lists", tuple(w.tolist() for w in levels))
        object.__setattr__(self, "_explainer", None)

    @classmethod
    def numeric(cls, feature_names: Sequence[str], target: str, **fields: Any) -> LinearModel:
        """An all-numeric model from its fields (a model made by hand, e.g. in a test)."""
        schema = Schema.numeric_only(list(feature_names), fields["x_mean"])
        return cls(schema=schema, target=target, **fields)

    @classmethod
    def from_regressor(cls, reg: Any, schema: Schema | Sequence[str], target: str,
                       target_transform: str = "none") -> LinearModel:
        """Capture a fitted ``service.engine.SGDRegressor`` for ``schema`` (or, for an
        all-numeric model, its feature names)."""
        if not isinstance(schema, Schema):
            schema = Schema.numeric_only(list(schema), reg.x_mean_)
        return cls(
            schema=schema,
            target=target,
            coef=reg.coef_,
            intercept=float(reg.intercept_),
            x_mean=reg.x_mean_,
            x_scale=reg.x_scale_,
            y_mean=float(reg.y_mean_),
            y_scale=float(reg.y_scale_),
            coef_std=reg.coef_std_,
            intercept_std=float(reg.intercept_std_),
            level_coef=tuple(getattr(reg, "level_coef_", ())),
            target_transform=target_transform,
            target_range=getattr(reg, "y_range_", None) if target_transform == "log" else None,
            extra={"params": reg.get_params()},
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.schema.names

    @property
    def n_features(self) -> int:
        return len(self.schema.features)

    @property
    def plain(self) -> bool:
        """No encoding at all: numbers in, the sum out (the fastest serving path)."""
        return self.schema.plain and self.target_transform == "none"

    # -- predicting -------------------------------------------------------------------------

    def predict_design(self, X: Any, codes: Any = None) -> Any:
        """Predictions from design columns: ``X`` holds one sequence per design column (the
        rows of a (d, n) array, a list of arrays, or a list of floats for one row) and ``codes``
        one per categorical feature, alike. The one summation every path uses."""
        columns = X
        if len(columns) != len(self._coef_list):
            raise DataError(f"expected {len(self._coef_list)} design columns, got {len(columns)}")
        coef = self._coef_list
        with np.errstate(over="ignore", invalid="ignore"):
            y = columns[0] * coef[0]
            for j in range(1, len(coef)):
                y = y + columns[j] * coef[j]
            y = y + self.intercept
            if self.level_coef:
                code_columns = codes
                single = not isinstance(y, np.ndarray)
                for weights, array, code in zip(self._level_lists, self.level_coef,
                                                code_columns, strict=True):
                    y = y + (weights[code] if single else array[code])
            if self.target_transform == "log":
                if self.target_range is not None:
                    y = _clip(y, *self.target_range)
                y = np.exp(y) if isinstance(y, np.ndarray) else _exp(y)
        return y

    def predict_columns(self, columns: Any) -> Any:
        """Predictions from one sequence per input feature, in ``feature_names`` order:
        numbers (None for empty), categorical levels as strings, booleans as words, bools or
        0/1. Floats for one row (no numpy: a few microseconds), lists or arrays for a batch.
        A value a feature cannot take is a :class:`~service.engine.schema.ValueProblem`.

        Overflow is not warned about: callers check the result with ``math.isfinite`` /
        ``np.isfinite``.
        """
        if self.plain and not _has_missing(columns):
            return self.predict_design(columns)
        encoded = self.encode(columns)
        return self.predict_design(encoded.values, encoded.codes)

    def encode(self, columns: Any) -> Encoded:
        """One sequence per input feature as the design (and what was imputed or unseen)."""
        if columns and not isinstance(columns[0], (list, tuple, np.ndarray)):
            return self.schema.encode_row(columns)
        return self.schema.encode_columns(columns)

    def explainer(self) -> Explainer:
        """The explanation of this model's predictions (service/engine/explain.py), made once."""
        explainer = self._explainer  # type: ignore[attr-defined]
        if explainer is None:
            explainer = Explainer.for_model(self)
            object.__setattr__(self, "_explainer", explainer)
        return explainer

    def fitted_scale(self, y: Any) -> Any:
        """Predictions or targets on the scale the model was fitted on (log y with the log
        transform): where its residuals, and so its intervals, are measured."""
        return np.log(y) if self.target_transform == "log" else y

    def predict(self, X: np.ndarray, codes: Any = None) -> np.ndarray:
        """Predictions for a 2-D design matrix (columns in ``schema.design_names()`` order) and
        an (n, k) array of level codes when the model has categorical features."""
        X = np.asarray(X, dtype=np.float64)
        d = len(self._coef_list)
        if X.ndim != 2 or X.shape[1] != d:
            raise DataError(f"expected {d} feature columns, got shape {X.shape}")
        if self.level_coef and codes is None:
            raise DataError("this model has categorical features: give their codes")
        return np.asarray(self.predict_design(X.T, None if codes is None else np.asarray(codes).T),
                          dtype=np.float64)

    # -- what it learned, in words and numbers -------------------------------------------------

    def coefficients(self) -> dict[str, float]:
        """Slope per numeric or boolean feature (and missing indicator), original units."""
        return {n: float(c) for n, c in
                zip(self.schema.design_names(), self.coef, strict=True)}

    def level_weights(self) -> dict[str, dict[str, float]]:
        """Per categorical feature, each level's weight against the average level."""
        out = {}
        for feature, weights in zip(self.schema.categorical, self.level_coef, strict=True):
            named = {level: float(w) for level, w in zip(feature.levels, weights, strict=False)}
            named["(other)"] = float(weights[feature.other])
            out[feature.name] = named
        return out

    def describe_transform(self) -> dict[str, Any]:
        """How the sum becomes a prediction: ``{"target_transform": "none"}``, or for the log
        transform also the range predictions are clipped to, in target units."""
        out: dict[str, Any] = {"target_transform": self.target_transform}
        if self.target_transform == "log" and self.target_range is not None:
            out["prediction_range"] = [float(np.exp(v)) for v in self.target_range]
        return out

    def describe_features(self) -> list[dict[str, Any]]:
        """Each input feature as the model sees it (what a form or a model card needs)."""
        names = self.schema.design_names()
        position = {n: i for i, n in enumerate(names)}
        level_iter = iter(self.level_coef)
        out: list[dict[str, Any]] = []
        for feature in self.schema.features:
            entry: dict[str, Any] = {"name": feature.name, "kind": feature.kind,
                                     "imputes": feature.imputes, "missing": feature.missing}
            if feature.kind == CATEGORICAL:
                weights = next(level_iter)
                entry["levels"] = [
                    {"level": lv, "weight": float(w), "count": int(c)}
                    for lv, w, c in zip(feature.levels, weights, feature.counts, strict=False)]
                entry["other"] = {"weight": float(weights[feature.other]),
                                  "count": int(feature.other_count), "pooled": feature.pooled}
            else:
                j = position[feature.name]
                entry.update({"mean": feature.mean, "min": feature.minimum,
                              "max": feature.maximum, "coefficient": float(self.coef[j]),
                              "standardized": float(self.coef_std[j])})
                if feature.indicator:
                    entry["missing_coefficient"] = float(self.coef[position[
                        f"{feature.name} (missing)"]])
                if feature.kind == "boolean":
                    entry.update(true=list(feature.true_words), false=list(feature.false_words))
            out.append(entry)
        return out

    # -- plain data ----------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Plain arrays, strings and numbers only: safe to store, stable across versions."""
        return {
            "format": FORMAT_VERSION,
            "schema": self.schema.to_state(),
            "target": self.target,
            "target_transform": self.target_transform,
            "target_range": list(self.target_range) if self.target_range is not None else None,
            "coef": np.array(self.coef),
            "intercept": float(self.intercept),
            "x_mean": np.array(self.x_mean),
            "x_scale": np.array(self.x_scale),
            "y_mean": float(self.y_mean),
            "y_scale": float(self.y_scale),
            "coef_std": np.array(self.coef_std),
            "intercept_std": float(self.intercept_std),
            "level_coef": [np.array(w) for w in self.level_coef],
            "extra": to_json(dict(self.extra), "extra"),
            "calibration": None if self.calibration is None else self.calibration.to_state(),
            "reference": {name: ref.to_state() for name, ref in self.reference.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LinearModel:
        """Rebuild from :meth:`to_state` (or an older format's state); a wrong format or shape
        is a ``ValueError``."""
        if not isinstance(state, Mapping) or state.get("format") not in (1, 2, FORMAT_VERSION):
            raise ValueError("not a sgdserve model state (unknown format)")
        try:
            if state["format"] == 1:
                schema = Schema.numeric_only(list(state["feature_names"]), state["x_mean"])
            else:
                schema = Schema.from_state(state["schema"])
            return cls(
                schema=schema,
                target=str(state["target"]),
                coef=state["coef"],
                intercept=float(state["intercept"]),
                x_mean=state["x_mean"],
                x_scale=state["x_scale"],
                y_mean=float(state["y_mean"]),
                y_scale=float(state["y_scale"]),
                coef_std=state["coef_std"],
                intercept_std=float(state["intercept_std"]),
                level_coef=tuple(state.get("level_coef", ())),
                target_transform=str(state.get("target_transform", "none")),
                target_range=(tuple(state["target_range"])
                              if state.get("target_range") is not None else None),
                extra=dict(state.get("extra", {})),
                calibration=(Calibration.from_state(state["calibration"])
                             if state.get("calibration") is not None else None),
                reference={str(name): NumericReference.from_state(ref)
                           for name, ref in (state.get("reference") or {}).items()},
            )
        except KeyError as exc:
            raise ValueError(f"model state lacks {exc.args[0]!r}") from None


def _has_missing(columns: Any) -> bool:
    """Whether a None (an empty value, to impute) is among plain columns: one row's floats,
    or lists (numpy arrays hold no None)."""
    return any(c is None or (type(c) is list and None in c) for c in columns)


def _clip(y: Any, low: float, high: float) -> Any:
    """Finite sums clipped to [low, high]; a non-finite one stays as it is, so callers still
    see (and name) an overflowed row."""
    if isinstance(y, np.ndarray):
        return np.where(np.isfinite(y), np.clip(y, low, high), y)
    return min(max(y, low), high) if math.isfinite(y) else y


def _exp(y: float) -> float:
    # numpy's exp, not math.exp: they differ in the last bit for about 1 value in 20, and a
    # row must predict the same alone as in a batch.
    return float(np.exp(np.array([y]))[0])
