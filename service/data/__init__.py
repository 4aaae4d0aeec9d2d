"""The data layer: reading tabular files, the holdout rule, and synthetic data.

Every problem with input data is a :class:`~service.errors.DataError` that names the column and
the 1-based line of the file (line 1 is the header).
"""

from __future__ import annotations

from .holdout import holdout_mask, row_hash
from .reader import (
    STREAM_THRESHOLD_BYTES,
    Chunk,
    ChunkReader,
    Dataset,
    Fingerprint,
    iter_chunks,
    iter_prediction_chunks,
    read_csv,
    should_stream,
    write_rows_csv,
)
from .synthetic import (
    HOUSE_FEATURES,
    HOUSE_NOISE,
    TRUE_COEF,
    TRUE_INTERCEPT,
    make_houses,
    make_regression,
    write_csv,
    write_houses_csv,
)

__all__ = [
    "HOUSE_FEATURES",
    "HOUSE_NOISE",
    "STREAM_THRESHOLD_BYTES",
    "TRUE_COEF",
    "TRUE_INTERCEPT",
    "Chunk",
    "ChunkReader",
    "Dataset",
    "Fingerprint",
    "holdout_mask",
    "iter_chunks",
    "iter_prediction_chunks",
    "make_houses",
    "make_regression",
    "read_csv",
    "row_hash",
    "should_stream",
    "write_csv",
    "write_houses_csv",
    "write_rows_csv",
]
