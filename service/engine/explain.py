"""Exact explanations of a linear model's predictions: each feature's share of the sum.

For a linear model the SHAP values are closed-form (what SHAP's ``LinearExplainer`` computes
with independent features): a numeric or boolean feature contributes ``coef · (x - mean)``, its
missing indicator (when it has one) ``coef_m · (m - mean_m)`` on top, and a categorical
feature ``w[level] - E[w]``, its level's weight less the training rows' average weight. The
base value is the prediction for the training means:

    base = intercept + Σ coef · mean + Σ E[w]        prediction = base + Σ contributions

so the parts sum to the prediction within float rounding. Means are the training design's
(``LinearModel.x_mean``), level averages weigh each level by its training rows. A model fitted
to the logarithm of its target is explained on that scale (``scale == "log"``): the parts sum to
the logarithm of the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Explainer"]


@dataclass(frozen=True)
class Explainer:
    """What explaining a model's rows needs, computed once per model."""

    names: tuple[str, ...]  # input features, in the model's order
    base_value: float
    scale: str  # "none" or "log"
    # Per input feature: (design columns, their coefficients, their means) or a categorical
    # feature's (None, level weights less their training average, the same as a list).
    parts: tuple[tuple[Any, Any, Any], ...]

    @classmethod
    def for_model(cls, model: Any) -> Explainer:
        """The explainer of a :class:`~service.engine.model.LinearModel` (which imports this
        module, so it is not imported back)."""
        schema = model.schema
        position = {n: i for i, n in enumerate(schema.design_names())}
        base = float(model.intercept) + float(np.dot(model.coef, model.x_mean))
        weights = iter(model.level_coef)
        parts = []
        for feature in schema.features:
            if feature.kind == "categorical":
                w = next(weights)
                counts = np.array([*feature.counts, feature.other_count], dtype=np.float64)
                mean = float(counts @ w / counts.sum()) if counts.sum() > 0 else float(w.mean())
                base += mean
                centred = w - mean
                parts.append((None, centred, centred.tolist()))
                continue
            columns = [position[feature.name]]
            if feature.indicator:
                columns.append(position[f"{feature.name} (missing)"])
            parts.append((tuple(columns), tuple(float(model.coef[j]) for j in columns),
                          tuple(float(model.x_mean[j]) for j in columns)))
        return cls(model.feature_names, base, model.target_transform, tuple(parts))

    def explain(self, values: list[Any], codes: list[Any]) -> dict[str, Any]:
        """``{feature: contribution}`` for encoded rows: floats for one row (``values`` a list
        of floats), arrays for a batch (one array per design column and per code column)."""
        out: dict[str, Any] = {}
        code_columns = iter(codes)
        for name, (columns, coef, mean) in zip(self.names, self.parts, strict=True):
            if columns is None:  # coef: the level weights less their average (array, list)
                code = next(code_columns)
                out[name] = (mean[code] if isinstance(code, (int, np.integer))
                             else coef[np.asarray(code)])
                continue
            total: Any = 0.0
            for j, c, m in zip(columns, coef, mean, strict=True):
                total = total + c * (values[j] - m)
            out[name] = total
        return out

    def rows(self, values: list[Any], codes: list[Any], n: int) -> list[dict[str, Any]]:
        """One ``{"base_value", "contributions"}`` per row of a batch (plain floats)."""
        parts = self.explain(values, codes)
        columns = {name: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).tolist()
                   for name, v in parts.items()}
        base = self.base_value
        out = []
        for i in range(n):
            out.append(self._one(base, {name: col[i] for name, col in columns.items()}))
        return out

    def row(self, values: list[float], codes: list[int]) -> dict[str, Any]:
        """The explanation of one encoded row."""
        return self._one(self.base_value, {k: float(v) for k, v in
                                           self.explain(values, codes).items()})

    def _one(self, base: float, contributions: dict[str, float]) -> dict[str, Any]:
        out: dict[str, Any] = {"base_value": base, "contributions": contributions}
        if self.scale == "log":
            out["scale"] = "log"
        return out
