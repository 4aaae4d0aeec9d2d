"""Split conformal prediction intervals from one sorted array of holdout residuals.

Lei, G'Sell, Rinaldo, Tibshirani and Wasserman (JASA 2018): with n absolute residuals
``|y - ŷ|`` of rows the fit never saw, sorted, the interval ``ŷ ± r_(k)`` with
``k = ceil((n + 1) · level)`` covers a new row from the same distribution with probability at
least ``level`` (and at most ``level + 1/(n + 1)`` when residuals are distinct). Any level is one
lookup; a level that needs ``k > n`` is more than ``n`` residuals can promise, and is refused.

A model fitted to the logarithm of its target keeps its residuals on that scale
(``scale="log"``): the interval is ``exp(log ŷ ± r_(k))``, asymmetric in target units, with the
same guarantee (the map is monotone).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CALIBRATION_ROWS", "Calibration", "LevelError"]

# Residuals kept per version: the quantiles' resolution is 1 / (n + 1), so 100,000 residuals
# (800 KB in the model file) resolve any level to 0.00001; more rows are sampled down to these.
CALIBRATION_ROWS = 100_000
SCALES = ("none", "log")


class LevelError(ValueError):
    """An interval level the calibration set cannot support (or not in (0, 1))."""


@dataclass(frozen=True)
class Calibration:
    """Sorted absolute residuals of holdout rows, on the scale the model was fitted on."""

    residuals: np.ndarray
    scale: str = "none"
    of_rows: int = 0  # holdout rows the residuals were sampled from (>= len(residuals))

    def __post_init__(self) -> None:
        r = np.sort(np.abs(np.asarray(self.residuals, dtype=np.float64)))
        if r.ndim != 1:
            raise ValueError("calibration residuals must be one-dimensional")
        if not np.isfinite(r).all():
            raise ValueError("calibration residuals must be finite")
        if self.scale not in SCALES:
            raise ValueError(f"calibration scale must be one of {SCALES}, got {self.scale!r}")
        r.setflags(write=False)
        object.__setattr__(self, "residuals", r)
        object.__setattr__(self, "of_rows", max(int(self.of_rows), len(r)))

    @property
    def n(self) -> int:
        return len(self.residuals)

    @property
    def max_level(self) -> float:
        """The highest level these residuals support: n / (n + 1)."""
        return self.n / (self.n + 1)

    def check(self, level: Any) -> float:
        """``level`` as a float, or a :class:`LevelError` that says which levels work."""
        if type(level) not in (int, float) or isinstance(level, bool) or not (
                math.isfinite(level) and 0.0 < level < 1.0):
            raise LevelError(f"interval must be a number between 0 and 1 (e.g. 0.9), "
                             f"got {level!r}")
        level = float(level)
        if self._rank(level) > self.n:
            raise LevelError(
                f"interval {level:g} needs at least {math.ceil(level / (1 - level) - 1e-6)} "
                f"calibration residuals; this version has {self.n}, enough for levels up to "
                f"{math.floor(self.max_level * 10_000) / 10_000:g}")
        return level

    def _rank(self, level: float) -> int:
        # A hair below the exact product, so 0.9 * 11 (= 9.900000000000002) ranks 10, not 11.
        return math.ceil((self.n + 1) * level - 1e-9)

    def half_width(self, level: float) -> float:
        """The conformal quantile r_(k) for ``level`` (checked), on the fitted scale."""
        level = self.check(level)
        return float(self.residuals[self._rank(level) - 1])

    def interval(self, prediction: Any, level: float) -> tuple[Any, Any]:
        """(lower, upper) around a prediction (a float or an array) at ``level``."""
        q = self.half_width(level)
        if self.scale == "log":
            y = np.log(np.asarray(prediction, dtype=np.float64))
            lower, upper = np.exp(y - q), np.exp(y + q)
        else:
            lower, upper = np.subtract(prediction, q), np.add(prediction, q)
        if np.ndim(lower) == 0:
            return float(lower), float(upper)
        return lower, upper

    def covers(self, actual: np.ndarray, predicted: np.ndarray, level: float) -> np.ndarray:
        """Whether each actual value lies in its prediction's interval at ``level``."""
        lower, upper = self.interval(np.asarray(predicted, dtype=np.float64), level)
        actual = np.asarray(actual, dtype=np.float64)
        return (actual >= lower) & (actual <= upper)

    def to_state(self) -> dict[str, Any]:
        return {"residuals": np.array(self.residuals), "scale": self.scale,
                "of_rows": int(self.of_rows)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Calibration:
        return cls(residuals=np.asarray(state["residuals"], dtype=np.float64),
                   scale=str(state.get("scale", "none")), of_rows=int(state.get("of_rows", 0)))
