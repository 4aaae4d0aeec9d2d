"""Rows written to files: JSON rows of a retrain request, and a file scored by a model."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from ..engine.model import LinearModel
from ..engine.schema import CATEGORICAL
from ..errors import DataError
from .encode import encode
from .source import Source, is_number_type, open_source

__all__ = ["OUTPUT_FORMATS", "write_predictions", "write_rows_jsonl"]

OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def write_rows_jsonl(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write JSON rows (all with the same keys; numbers, strings, booleans or null) as JSON
    lines, the form the reader takes as it is: text stays text, null stays empty."""
    path = Path(path)
    if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)) or not rows:
        raise DataError("rows must be a non-empty list of objects")
    if not isinstance(rows[0], Mapping):
        raise DataError("rows[0] is not an object")
    keys = list(rows[0])
    if not keys:
        raise DataError("rows[0] has no keys")
    for key in keys:
        if not isinstance(key, str) or not key.strip():
            raise DataError(f"rows[0]: {key!r} is not a usable column name", column=str(key))
    key_set = set(keys)
    with open(path, "wb") as out:
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise DataError(f"rows[{i}] is not an object")
            if row.keys() != key_set:
                missing = [k for k in keys if k not in row]
                if missing:
                    raise DataError(f"rows[{i}]: key {missing[0]!r} is missing",
                                    column=missing[0])
                extra = next(k for k in row if k not in key_set)
                raise DataError(f"rows[{i}]: key {extra!r} is not in rows[0]", column=str(extra))
            for key in keys:
                value = row[key]
                if value is not None and not isinstance(value, (str, int, float, bool)):
                    raise DataError(f"rows[{i}], key {key!r}: {orjson.dumps(value)[:40]!r} is "
                                    "not a number, a string, a boolean or null", column=key)
                if isinstance(value, float) and not math.isfinite(value):
                    raise DataError(f"rows[{i}], key {key!r}: {value} is not a finite number",
                                    column=key)
            out.write(orjson.dumps({k: row[k] for k in keys}) + b"\n")
    return path


def output_format(path: Path) -> str:
    """``csv`` or ``parquet``, by the output file's extension."""
    for ext, kind in OUTPUT_FORMATS.items():
        if path.name.lower().endswith(ext):
            return kind
    raise DataError(f"cannot tell the output format of {path.name!r}: name it .csv or .parquet")


def write_predictions(model: LinearModel, data: str | os.PathLike[str], out: Path | None, *,
                      data_format: str | None = None, chunk_rows: int = 65_536) -> int:
    """Score a file: its rows with a ``prediction`` column, to ``out`` (CSV or Parquet by its
    extension; written to a temporary file and renamed, so never half written) or stdout as
    CSV. The file's other columns (the target among them) are kept as they are; returns the
    number of rows."""
    source = open_source(data, data_format)
    missing = [name for name in model.feature_names if name not in source.columns]
    if missing:
        raise DataError(f"feature column {missing[0]!r} is missing; the header has: "
                        f"{', '.join(source.columns)[:200]}", column=missing[0], line=1)
    if "prediction" in source.columns:
        raise DataError(f"{source.file} already has a 'prediction' column; rename it or drop it "
                        "before scoring")
    types = _types(model, source)
    kind = output_format(out) if out is not None else "csv"
    tmp = None
    rows = 0
    try:
        if out is not None:
            fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
            os.close(fd)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; an ordinary file
        target = tmp if tmp is not None else None
        parts: list[pl.DataFrame] = []
        sink_cm = (open(target, "wb") if target is not None and kind == "csv"
                   else contextlib.nullcontext(_TextSink(sys.stdout)))
        with sink_cm as sink:
            for start, frame in _frames(source, types, chunk_rows):
                design = encode(model.schema, frame, source, start_row=start)
                predicted = model.predict(design.X, design.codes)
                scored = frame.with_columns(pl.Series("prediction", predicted))
                if kind == "csv":
                    sink.write(scored.write_csv(include_header=rows == 0).encode())
                else:
                    parts.append(scored)
                rows += frame.height
        if rows == 0:
            raise DataError(f"{source.file}: no data rows to score")
        if kind == "parquet":
            pl.concat(parts).write_parquet(tmp)
        if tmp is not None:
            assert out is not None
            os.replace(tmp, out)
            tmp = None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return rows


def _types(model: LinearModel, source: Source) -> dict[str, pl.DataType]:
    """Text for every column a CSV has, so the output repeats it as written; the model's
    features as the encoder takes them."""
    types: dict[str, pl.DataType] = {}
    for name in source.columns:
        dtype = source.dtypes[name]
        types[name] = dtype if source.format != "csv" else pl.String
    for feature in model.schema.features:
        dtype = source.dtypes[feature.name]
        if feature.kind == CATEGORICAL:
            types[feature.name] = pl.String
        elif source.format != "csv" and is_number_type(dtype):
            types[feature.name] = pl.Float64
    return types


def _frames(source: Source, types: dict[str, pl.DataType], rows: int):
    start = 0
    for frame in source.batches(types):
        if frame.height:
            yield start, frame
            start += frame.height


class _TextSink:
    """A text stream (stdout) that takes the bytes polars writes."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode())
        self.stream.flush()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
