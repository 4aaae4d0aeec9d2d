"""Regression metrics (RMSE, MAE, R^2), in memory or accumulated chunk by chunk.

:class:`RegressionSums` is the one implementation: :func:`regression_metrics` is a single chunk
of it, so a file read whole and the same file streamed report the same numbers. The target's
spread is merged with Chan's update (count, mean, sum of squared deviations), which stays
accurate when the mean is large next to the spread (house prices).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["RegressionSums", "r2_score", "regression_metrics"]


def r2_from(sse: float, sst: float) -> float:
    """1 - SSE/SST; for a constant target (SST 0): 1 when matched exactly, else 0
    (scikit-learn's ``r2_score`` with ``force_finite=True``)."""
    if sst <= 0.0:
        return 1.0 if sse == 0.0 else 0.0
    return 1.0 - sse / sst


class RegressionSums:
    """Running sums of residuals and of the target, for metrics built chunk by chunk."""

    def __init__(self) -> None:
        self.n = 0
        self.sse = 0.0
        self.sae = 0.0
        self.y_mean = 0.0
        self.y_m2 = 0.0

    def add(self, y: np.ndarray, pred: np.ndarray) -> RegressionSums:
        """Merge one chunk of targets and predictions; returns self."""
        m = len(y)
        if m == 0:
            return self
        r = y - pred
        self.sse += float(r @ r)
        self.sae += float(np.abs(r).sum())
        mean_b = float(y.mean())
        d = y - mean_b
        m2_b = float(d @ d)
        n = self.n + m
        delta = mean_b - self.y_mean
        self.y_mean += delta * m / n
        self.y_m2 += m2_b + delta * delta * self.n * m / n
        self.n = n
        return self

    def merge(self, other: RegressionSums) -> RegressionSums:
        """Merge the sums of other rows (Chan's update for the target's spread); returns self."""
        if other.n == 0:
            return self
        if self.n == 0:  # a copy: bit for bit the sums of those rows alone
            self.n, self.sse, self.sae = other.n, other.sse, other.sae
            self.y_mean, self.y_m2 = other.y_mean, other.y_m2
            return self
        n = self.n + other.n
        delta = other.y_mean - self.y_mean
        self.sse += other.sse
        self.sae += other.sae
        self.y_mean += delta * other.n / n
        self.y_m2 += other.y_m2 + delta * delta * self.n * other.n / n
        self.n = n
        return self

    def metrics(self) -> dict[str, Any]:
        """``{"rmse", "mae", "r2", "rows"}`` as plain floats (zeros for no rows)."""
        n = max(self.n, 1)
        return {
            "rmse": math.sqrt(self.sse / n),
            "mae": self.sae / n,
            "r2": r2_from(self.sse, self.y_m2),
            "rows": self.n,
        }


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """RMSE, MAE and R^2 of predictions, as plain floats."""
    return RegressionSums().add(np.asarray(y, np.float64), np.asarray(pred, np.float64)).metrics()


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination of ``pred`` for ``y`` (see :func:`r2_from`)."""
    return regression_metrics(y, pred)["r2"]
