"""The holdout rule: a seeded hash per row decides which rows are held out for evaluation.

The same rows are held out whether a file is read whole or in chunks of any size, because the
decision depends only on the row's index and the seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HOLDOUT_SAMPLE_ROWS", "HoldoutSample", "holdout_mask", "row_hash"]

# Holdout (actual, predicted) pairs kept in a model's manifest for the model page's plots.
HOLDOUT_SAMPLE_ROWS = 2000
_SAMPLE_SALT = 0x5A5A  # a second seeded hash picks the sample among the holdout rows

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


class HoldoutSample:
    """A bounded, seeded sample of the holdout rows' (actual, predicted) pairs: the rows with the
    smallest values of a seeded per-row hash (a bottom-k sample), so the same rows whether the
    data is read whole, streamed or in partitions, spread over all of it whatever its order."""

    def __init__(self, seed: int) -> None:
        self.seed = seed ^ _SAMPLE_SALT
        self.rows = np.empty(0, np.int64)
        self.keys = np.empty(0, np.uint64)
        self.actual = np.empty(0)
        self.predicted = np.empty(0)

    def add(self, rows: np.ndarray, y: np.ndarray, pred: np.ndarray) -> None:
        """``rows`` are the data row numbers of the holdout rows ``y`` and ``pred`` are for."""
        self._take(rows, row_keys(rows, self.seed), y, pred)

    def merge(self, other: HoldoutSample) -> HoldoutSample:
        """Take another part's sample (the bottom k of the union is the bottom k of all)."""
        self._take(other.rows, other.keys, other.actual, other.predicted)
        return self

    def _take(self, rows: np.ndarray, keys: np.ndarray, y: np.ndarray, pred: np.ndarray) -> None:
        self.rows = np.concatenate([self.rows, rows])
        self.keys = np.concatenate([self.keys, keys])
        self.actual = np.concatenate([self.actual, y])
        self.predicted = np.concatenate([self.predicted, pred])
        keep = bottom_k(self.keys, HOLDOUT_SAMPLE_ROWS)
        if keep is not None:
            self.rows, self.keys = self.rows[keep], self.keys[keep]
            self.actual, self.predicted = self.actual[keep], self.predicted[keep]

    def to_dict(self, holdout_rows: int) -> dict[str, object]:
        order = np.argsort(self.rows, kind="stable")  # data order
        return {"actual": self.actual[order].tolist(), "predicted": self.predicted[order].tolist(),
                "of_rows": holdout_rows}


def bottom_k(keys: np.ndarray, k: int) -> np.ndarray | None:
    """Positions of the ``k`` smallest ``keys``, in increasing position (a gather by them walks
    memory forwards), or None when there are no more than ``k``: a bottom-k sample's rule."""
    if len(keys) <= k:
        return None
    return np.sort(np.argpartition(keys, k - 1)[:k])


def row_keys(rows: np.ndarray, seed: int) -> np.ndarray:
    """The seeded per-row hash of these (any, unsorted) row numbers."""
    if len(rows) == 0:
        return np.empty(0, np.uint64)
    lo = int(rows.min())
    return row_hash(lo, int(rows.max()) - lo + 1, seed)[rows - lo]
