"""The numerics: the SGD estimator, the serving form of a model, regression metrics, and what
the production loop computes from them: conformal intervals, explanations, input drift.

Nothing here knows about files, HTTP or the model store; it imports only ``service.errors`` and
``service.util``.
"""

from __future__ import annotations

from .conformal import CALIBRATION_ROWS, Calibration, LevelError
from .drift import NumericReference, psi
from .explain import Explainer
from .metrics import RegressionSums, r2_score, regression_metrics
from .model import LinearModel
from .sgd import LOSSES, PENALTIES, SCHEDULES, SGDRegressor

__all__ = [
    "CALIBRATION_ROWS",
    "LOSSES",
    "PENALTIES",
    "SCHEDULES",
    "Calibration",
    "Explainer",
    "LevelError",
    "LinearModel",
    "NumericReference",
    "RegressionSums",
    "SGDRegressor",
    "psi",
    "r2_score",
    "regression_metrics",
]
