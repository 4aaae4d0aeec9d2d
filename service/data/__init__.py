"""The data layer: tabular files read with polars, the holdout rule, encoding, synthetic data.

    source.py     formats (CSV, .csv.gz, Parquet, JSON lines), column names, reading, errors
    inference.py  each column's kind and statistics, fitted once: the model's Schema
    encode.py     rows as the design a model fits and predicts with
    dataset.py    training data: load() whole, Stream for files larger than memory
    holdout.py    the seeded per-row holdout rule
    synthetic.py  house prices and regression problems with known coefficients
    rows.py       JSON rows (POST /retrain) and predictions written to files

Every problem with input data is a :class:`~service.errors.DataError` that names the column and
the 1-based line of the file (line 1 is the header).
"""

from __future__ import annotations

from .dataset import CHUNK_ROWS, STREAM_THRESHOLD_BYTES, Chunk, Loaded, Stream, load, should_stream
from .encode import Design, encode
from .holdout import holdout_mask, row_hash
from .inference import (
    DEFAULT_MAX_LEVELS,
    DEFAULT_MIN_FREQUENCY,
    ColumnStats,
    EncodingOptions,
    plan,
)
from .rows import write_predictions, write_rows_jsonl
from .source import FORMATS, Fingerprint, Source, detect_format, open_source
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
    "CHUNK_ROWS",
    "DEFAULT_MAX_LEVELS",
    "DEFAULT_MIN_FREQUENCY",
    "FORMATS",
    "HOUSE_FEATURES",
    "HOUSE_NOISE",
    "STREAM_THRESHOLD_BYTES",
    "TRUE_COEF",
    "TRUE_INTERCEPT",
    "Chunk",
    "ColumnStats",
    "Design",
    "EncodingOptions",
    "Fingerprint",
    "Loaded",
    "Source",
    "Stream",
    "detect_format",
    "encode",
    "holdout_mask",
    "load",
    "make_houses",
    "make_regression",
    "open_source",
    "plan",
    "row_hash",
    "should_stream",
    "write_csv",
    "write_houses_csv",
    "write_predictions",
    "write_rows_jsonl",
]
