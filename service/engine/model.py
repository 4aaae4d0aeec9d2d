"""The serving form of a trained model: y = coef · x + intercept, in the data's original units.

A :class:`LinearModel` is what the store saves (as plain arrays and primitives, never pickled
objects) and what the HTTP layer predicts with. It keeps the scaler statistics and the
standardised weights the regressor learned too, so a saved model can be inspected or continued.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError
from ..util import to_json

FORMAT_VERSION = 1


@dataclass(frozen=True)
class LinearModel:
    """A fitted linear model with named features; ``predict`` needs no outside scaler."""

    feature_names: tuple[str, ...]
    target: str
    coef: np.ndarray  # slope per feature, original units (target units per feature unit)
    intercept: float  # bias, original units
    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: float
    y_scale: float
    coef_std: np.ndarray  # weights on standardised features and target
    intercept_std: float
    extra: Mapping[str, Any] = field(default_factory=dict)  # hyper-parameters etc.

    def __post_init__(self) -> None:
        d = len(self.feature_names)
        for name in ("coef", "x_mean", "x_scale", "coef_std"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (d,):
                raise ValueError(f"{name} must have shape ({d},), got {arr.shape}")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if len(set(self.feature_names)) != d:
            raise ValueError("feature names must be unique")

    @classmethod
    def from_regressor(cls, reg: Any, feature_names: Sequence[str], target: str) -> LinearModel:
        """Capture a fitted ``service.sgd.SGDRegressor``."""
        return cls(
            feature_names=tuple(feature_names),
            target=target,
            coef=reg.coef_,
            intercept=float(reg.intercept_),
            x_mean=reg.x_mean_,
            x_scale=reg.x_scale_,
            y_mean=float(reg.y_mean_),
            y_scale=float(reg.y_scale_),
            coef_std=reg.coef_std_,
            intercept_std=float(reg.intercept_std_),
            extra={"params": reg.get_params()},
        )

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for a 2-D array whose columns are in ``feature_names`` order."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(
                f"expected {self.n_features} feature columns, got shape {X.shape}"
            )
        return X @ self.coef + self.intercept

    def predict_columns(self, columns: Any) -> Any:
        """coef . x + intercept for ``columns``, one sequence per feature in ``feature_names``
        order: Python floats (one row, no numpy: a few microseconds) or arrays (a batch).

        The sum runs feature by feature with plain multiplies and adds (no BLAS, no fused
        multiply-add), so a row predicts bit for bit the same alone and in a batch. Overflow is
        not warned about: callers check the result with ``math.isfinite`` / ``np.isfinite``.
        """
        coef = self.coef.tolist()
        with np.errstate(over="ignore", invalid="ignore"):
            y = columns[0] * coef[0]
            for j in range(1, len(coef)):
                y = y + columns[j] * coef[j]
            return y + self.intercept

    def to_state(self) -> dict[str, Any]:
        """Plain arrays and primitives only: safe to store with joblib, stable across versions."""
        return {
            "format": FORMAT_VERSION,
            "feature_names": list(self.feature_names),
            "target": self.target,
            "coef": np.array(self.coef),
            "intercept": float(self.intercept),
            "x_mean": np.array(self.x_mean),
            "x_scale": np.array(self.x_scale),
            "y_mean": float(self.y_mean),
            "y_scale": float(self.y_scale),
            "coef_std": np.array(self.coef_std),
            "intercept_std": float(self.intercept_std),
            "extra": to_json(dict(self.extra), "extra"),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LinearModel:
        """Rebuild from :meth:`to_state`; a wrong format or shape is a ``ValueError``."""
        if not isinstance(state, Mapping) or state.get("format") != FORMAT_VERSION:
            raise ValueError("not a sgdserve model state (unknown format)")
        try:
            return cls(
                feature_names=tuple(str(n) for n in state["feature_names"]),
                target=str(state["target"]),
                coef=state["coef"],
                intercept=float(state["intercept"]),
                x_mean=state["x_mean"],
                x_scale=state["x_scale"],
                y_mean=float(state["y_mean"]),
                y_scale=float(state["y_scale"]),
                coef_std=state["coef_std"],
                intercept_std=float(state["intercept_std"]),
                extra=dict(state.get("extra", {})),
            )
        except KeyError as exc:
            raise ValueError(f"model state lacks {exc.args[0]!r}") from None

    def describe_features(self) -> list[dict[str, Any]]:
        """Each input feature as the model sees it: name, kind, training mean, its slope in
        original units, and its standardised weight (comparable across features: a model card's
        bar chart)."""
        return [
            {"name": n, "kind": "numeric", "mean": float(m), "coefficient": float(c),
             "standardized": float(s)}
            for n, m, c, s in zip(self.feature_names, self.x_mean, self.coef, self.coef_std,
                                  strict=True)
        ]

    def coefficients(self) -> dict[str, float]:
        """Slope per feature in original units, by name."""
        return {n: float(c) for n, c in zip(self.feature_names, self.coef, strict=True)}
