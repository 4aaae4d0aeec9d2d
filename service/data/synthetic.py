"""Synthetic data: house prices with known coefficients, and badly scaled regression problems.

``sgdserve sample`` writes :func:`make_houses` rows; tests and benchmarks use both generators
because their true coefficients are known.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["HOUSE_FEATURES", "HOUSE_NOISE", "TRUE_COEF", "TRUE_INTERCEPT", "make_houses",
           "make_regression", "write_csv", "write_houses_csv"]


HOUSE_FEATURES = ("sqft", "bedrooms", "bathrooms", "age_years")
TRUE_COEF = {"sqft": 150.0, "bedrooms": 10_000.0, "bathrooms": 15_000.0, "age_years": -1_000.0}
TRUE_INTERCEPT = 50_000.0
HOUSE_NOISE = 25_000.0  # dollars, standard deviation of the price noise


def make_houses(
    n_rows: int, seed: int = 0, noise: float = HOUSE_NOISE
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Synthetic houses: features (n, 4), price (n,) rounded to cents, and the feature names."""
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    # Sizes are right-skewed like real housing stock: median about 1,800 sqft.
    sqft = np.clip(np.round(rng.lognormal(np.log(1800.0), 0.4, n_rows)), 500, 5000)
    # Bigger houses have more rooms; the noise keeps the features from being collinear.
    bedrooms = np.clip(np.round(0.8 + sqft / 750.0 + rng.normal(0.0, 0.6, n_rows)), 1, 6)
    bathrooms = np.clip(np.round(2.0 * (0.5 + sqft / 1400.0 + rng.normal(0.0, 0.35, n_rows))) / 2,
                        1.0, 4.0)
    age_years = rng.integers(0, 101, n_rows).astype(np.float64)
    X = np.column_stack([sqft, bedrooms, bathrooms, age_years])
    coef = np.array([TRUE_COEF[name] for name in HOUSE_FEATURES])
    price = TRUE_INTERCEPT + X @ coef + rng.normal(0.0, noise, n_rows)
    # Cents: np.round(p, 2) is the double nearest to the 2-decimal text: CSV round trips are exact.
    return np.ascontiguousarray(X), np.round(price, 2), list(HOUSE_FEATURES)


def write_houses_csv(path: str | os.PathLike[str], n_rows: int, seed: int = 0) -> Path:
    """Write :func:`make_houses` rows as CSV: ``sqft,bedrooms,bathrooms,age_years,price``."""
    X, y, names = make_houses(n_rows, seed=seed)
    columns = {name: X[:, j] for j, name in enumerate(names)}
    columns["price"] = y
    return write_csv(path, columns, formats={"price": "%.2f"})


def make_regression(
    n_rows: int, n_features: int, seed: int = 0, noise: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Gaussian features with different raw scales and offsets; returns (X, y, coef, intercept)."""
    if n_rows < 1 or n_features < 1:
        raise ValueError(f"need n_rows >= 1 and n_features >= 1, got {n_rows} and {n_features}")
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-1.0, 3.0, n_features)  # 0.1 .. 1000: raw data is badly scaled
    offset = rng.normal(0.0, 3.0, n_features) * scale
    X = rng.standard_normal((n_rows, n_features))
    X *= scale
    X += offset
    # Each feature moves y by a similar amount per standard deviation.
    coef = rng.normal(0.0, 10.0, n_features) / scale
    intercept = float(rng.normal(0.0, 10.0))
    y = X @ coef + intercept + rng.normal(0.0, noise, n_rows)
    return X, y, coef, intercept


def write_csv(
    path: str | os.PathLike[str],
    columns: Mapping[str, np.ndarray],
    formats: Mapping[str, str] | None = None,
    default_format: str = "%.10g",
) -> Path:
    """Write equal-length numeric columns as CSV; integral columns print without ``.0``."""
    path = Path(path)
    names = list(columns)
    arrays = [np.asarray(columns[name], dtype=np.float64) for name in names]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError("columns must be 1-D arrays of the same length")
    formats = dict(formats or {})
    fmts = []
    for name, values in zip(names, arrays, strict=True):
        if name in formats:
            fmts.append(formats[name])
        elif np.all(np.isfinite(values)) and np.all(values == np.round(values)):
            fmts.append("%d")
        else:
            fmts.append(default_format)
    row_format = ",".join(fmts) + "\n"
    matrix = np.column_stack(arrays)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(names) + "\n")
        step = 65536  # bounded memory for big files
        for start in range(0, len(matrix), step):
            rows = matrix[start:start + step].tolist()
            fh.write("".join(row_format % tuple(row) for row in rows))
    return path
