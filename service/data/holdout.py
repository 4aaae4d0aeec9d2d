"""The holdout rule: a seeded hash per row decides which rows are held out for evaluation.

The same rows are held out whether a file is read whole or in chunks of any size, because the
decision depends only on the row's index and the seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["holdout_mask", "row_hash"]

_U = np.uint64

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z ^= z >> _U(30)
    z *= _U(0xBF58476D1CE4E5B9)
    z ^= z >> _U(27)
    z *= _U(0x94D049BB133111EB)
    z ^= z >> _U(31)
    return z


def row_hash(start_row: int, n_rows: int, seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each row index ``start_row .. start_row + n_rows - 1``."""
    if start_row < 0 or n_rows < 0:
        raise ValueError(f"start_row and n_rows must be >= 0, got {start_row} and {n_rows}")
    key = int(_splitmix64(np.array([(seed * _GOLDEN) & _MASK64], np.uint64))[0])
    rows = np.arange(start_row, start_row + n_rows, dtype=np.uint64)
    rows += _U(1)
    rows *= _U(_GOLDEN)
    rows += _U(key)
    return _splitmix64(rows)


def holdout_mask(start_row: int, n_rows: int, fraction: float, seed: int) -> np.ndarray:
    """Which rows ``start_row .. start_row + n_rows - 1`` are held out: a seeded hash per row.

    Row i is held out when its :func:`row_hash` is below fraction * 2**64, so the same rows are
    chosen whether a file is read whole or in chunks of any size.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    if fraction == 1.0:
        if start_row < 0 or n_rows < 0:
            raise ValueError(f"start_row and n_rows must be >= 0, got {start_row} and {n_rows}")
        return np.ones(n_rows, bool)
    threshold = _U(min(int(fraction * 2.0**64), _MASK64))
    return row_hash(start_row, n_rows, seed) < threshold
