"""Training data with feedback: the joined rows, written before the base data in one file.

``sgdserve train --with-feedback`` and the scheduler train on the base file plus every row the
join found with its actual value (a logged prediction and its feedback, deduplicated by id with
the last value winning, and labelled rows sent as such). The rows go into a temporary copy of
the base file in its own format, feedback first: the training pipeline then reads one file as
always, and knows the first ``n`` rows are the recent ones (the gate judges on those).

- CSV (also ``.csv.gz``): the base header line, the feedback rows in its columns, then the base
  rows as they are (byte for byte; a gzipped base is written out uncompressed);
- JSON lines: one object per feedback row, then the base lines;
- Parquet: the two concatenated with polars, feedback values cast to the base's types.

A feedback row gives the target column its actual value and every other column the value the
prediction had (an empty cell for a column the served model did not read).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from ..data import open_source
from ..errors import DataError
from .join import FeedbackRow

__all__ = ["feedback_summary", "write_with_feedback"]


def write_with_feedback(base: Path, rows: Sequence[FeedbackRow], target: str, out_dir: Path,
                        data_format: str | None = None) -> Path:
    """A file in ``out_dir`` holding ``rows`` (first) and then the base data."""
    source = open_source(base, data_format)
    if target not in source.columns:
        raise DataError(f"target column {target!r} is missing; the header has: "
                        f"{', '.join(source.columns)}", column=target, line=1)
    out_dir.mkdir(parents=True, exist_ok=True)
    if source.format == "csv":
        return _csv(source, rows, target, out_dir)
    if source.format == "jsonl":
        return _jsonl(source, rows, target, out_dir)
    return _parquet(source, rows, target, out_dir)


def _values(columns: Sequence[str], rows: Iterable[FeedbackRow], target: str
            ) -> Iterable[list[Any]]:
    for row in rows:
        features = row.features
        yield [row.actual if name == target else features.get(name) for name in columns]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def _csv(source: Any, rows: Sequence[FeedbackRow], target: str, out_dir: Path) -> Path:
    path = out_dir / "with-feedback.csv"
    gz = Path(source.location.url).name.lower().endswith(".gz")
    opener = gzip.open if gz else open
    with opener(Path(source.location.url), "rb") as base, open(path, "wb") as out:
        header = base.readline()
        out.write(header if header.endswith(b"\n") else header + b"\n")
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        for values in _values(source.columns, rows, target):
            writer.writerow([_cell(v) for v in values])
        out.write(text.getvalue().encode())
        shutil.copyfileobj(base, out, 1024 * 1024)
    return path


def _jsonl(source: Any, rows: Sequence[FeedbackRow], target: str, out_dir: Path) -> Path:
    path = out_dir / "with-feedback.jsonl"
    gz = Path(source.location.url).name.lower().endswith(".gz")
    opener = gzip.open if gz else open
    names = source.header  # JSON keys as the file spells them
    with opener(Path(source.location.url), "rb") as base, open(path, "wb") as out:
        for values in _values(source.columns, rows, target):
            out.write(orjson.dumps(dict(zip(names, values, strict=True))) + b"\n")
        shutil.copyfileobj(base, out, 1024 * 1024)
    return path


def _parquet(source: Any, rows: Sequence[FeedbackRow], target: str, out_dir: Path) -> Path:
    path = out_dir / "with-feedback.parquet"
    base = pl.read_parquet(Path(source.location.url))
    columns = list(zip(*_values(source.columns, rows, target), strict=False)) or [
        () for _ in source.columns]
    data = {}
    for raw, column in zip(source.header, columns, strict=True):
        dtype = base.schema[raw]
        values = [None if v is None else (str(v) if dtype == pl.String else v) for v in column]
        data[raw] = pl.Series(raw, values, strict=False).cast(dtype, strict=False)
    feedback = pl.DataFrame(data, schema=base.schema)
    pl.concat([feedback, base], how="vertical_relaxed").write_parquet(path)
    return path


def feedback_summary(rows: Sequence[FeedbackRow]) -> Mapping[str, int]:
    """How many rows came from predictions with feedback, and how many were labelled rows."""
    predicted = sum(1 for r in rows if r.prediction_id is not None)
    return {"predicted_rows": predicted, "labelled_rows": len(rows) - predicted}
