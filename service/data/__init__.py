"""The data layer: tabular files read with polars, the holdout rule, encoding, synthetic data.

    files.py      where the data is: a file, a directory, a glob or a list, local or s3://
    source.py     formats (CSV, .csv.gz, Parquet, JSON lines), column names, reading, errors;
                  several files read as one table (Sources)
    inference.py  each column's kind and statistics, fitted once: the model's Schema
    encode.py     rows as the design a model fits and predicts with
    dataset.py    training data: load() whole, Stream for files larger than memory
    holdout.py    the seeded per-row holdout rule, and the holdout sample kept for the page
    partition.py  one file of a dataset as a partition of a cluster engine (service.cluster)
    synthetic.py  house prices and regression problems with known coefficients
    rows.py       JSON rows (POST /retrain) and predictions written to files

Every problem with input data is a :class:`~service.errors.DataError` that names the column and
the 1-based line of the file (line 1 is the header).
"""

from __future__ import annotations

from .dataset import CHUNK_ROWS, STREAM_THRESHOLD_BYTES, Chunk, Loaded, Stream, load, should_stream
from .encode import Design, encode
from .files import DataFile, dataset_name, resolve
from .holdout import HOLDOUT_SAMPLE_ROWS, HoldoutSample, holdout_mask, row_hash
from .inference import (
    DEFAULT_MAX_LEVELS,
    DEFAULT_MIN_FREQUENCY,
    ColumnStats,
    EncodingOptions,
    plan,
)
from .rows import write_predictions, write_rows_jsonl
from .source import FORMATS, Fingerprint, Source, Sources, detect_format, open_source, open_sources
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
    "HOLDOUT_SAMPLE_ROWS",
    "HOUSE_FEATURES",
    "HOUSE_NOISE",
    "STREAM_THRESHOLD_BYTES",
    "TRUE_COEF",
    "TRUE_INTERCEPT",
    "Chunk",
    "ColumnStats",
    "DataFile",
    "Design",
    "EncodingOptions",
    "Fingerprint",
    "HoldoutSample",
    "Loaded",
    "Source",
    "Sources",
    "Stream",
    "dataset_name",
    "detect_format",
    "encode",
    "holdout_mask",
    "load",
    "make_houses",
    "make_regression",
    "open_source",
    "open_sources",
    "plan",
    "resolve",
    "row_hash",
    "should_stream",
    "write_csv",
    "write_houses_csv",
    "write_predictions",
    "write_rows_jsonl",
]
