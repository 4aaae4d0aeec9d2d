"""The numerics: the SGD estimator, the serving form of a model, and regression metrics.

Nothing here knows about files, HTTP or the model store; it imports only ``service.errors`` and
``service.util``.
"""

from __future__ import annotations

from .metrics import RegressionSums, r2_score, regression_metrics
from .model import LinearModel
from .sgd import LOSSES, PENALTIES, SCHEDULES, SGDRegressor

__all__ = [
    "LOSSES",
    "PENALTIES",
    "SCHEDULES",
    "LinearModel",
    "RegressionSums",
    "SGDRegressor",
    "r2_score",
    "regression_metrics",
]
