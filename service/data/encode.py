"""Rows of a file as the design a model fits and predicts with, by the model's schema.

The same rules as :class:`~service.engine.schema.Feature` applies to one value at serving time,
applied to whole polars columns: an empty number becomes the training mean (and its missing
indicator 1), a yes/no word 1 or 0, a level its code ("other" for one the model never kept).
tests/test_data.py holds the two to the same bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..engine.schema import BOOLEAN, FALSE_WORDS, TRUE_WORDS, Feature, Schema
from ..errors import DataError
from .inference import NA_TOKENS
from .source import Source

__all__ = ["Design", "encode", "encode_target"]

_WORDS = {**dict.fromkeys(TRUE_WORDS, 1.0), **dict.fromkeys(FALSE_WORDS, 0.0)}


@dataclass
class Design:
    """Encoded rows: float design columns ``X`` (n, d), level codes (n, k) or None, and the
    target as fitted (``y``: its log with the log transform) and as given (``target``)."""

    X: np.ndarray
    codes: np.ndarray | None
    y: np.ndarray | None
    target: np.ndarray | None = None

    def __len__(self) -> int:
        return self.X.shape[0]

    def rows(self, selected: np.ndarray | slice) -> Design:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[selected]

        return Design(self.X[selected], pick(self.codes), pick(self.y), pick(self.target))


def encode(schema: Schema, frame: pl.DataFrame, source: Source, start_row: int = 0,
           order: np.ndarray | None = None, target: str | None = None,
           target_transform: str = "none") -> Design:
    """``frame``'s rows (in ``order``, by default as they are) as a :class:`Design`.

    Columns are encoded one at a time into preallocated arrays (Fortran order: each column is
    contiguous), so the peak is the frame plus the design, never a second copy of either.
    """
    n = frame.height if order is None else len(order)
    numeric = schema.numeric
    n_indicators = sum(f.indicator for f in numeric)
    X = np.empty((n, len(numeric) + n_indicators), order="F")
    codes = np.empty((n, len(schema.categorical)), np.int32) if schema.categorical else None
    j_indicator = len(numeric)
    for j, feature in enumerate(numeric):
        values, missing = _numbers(feature, frame[feature.name], source, start_row)
        X[:, j] = values if order is None else values[order]
        if feature.indicator:
            X[:, j_indicator] = missing if order is None else missing[order]
            j_indicator += 1
    for c, feature in enumerate(schema.categorical):
        column = _codes(feature, frame[feature.name])
        codes[:, c] = column if order is None else column[order]  # type: ignore[index]
    y = raw = None
    if target is not None:
        raw = encode_target(frame[target], source, start_row)
        if order is not None:
            raw = raw[order]
        y = _transform(raw, target, source, start_row, order, target_transform)
    return Design(X, codes, y, raw)


def _numbers(feature: Feature, series: pl.Series, source: Source,
             start_row: int) -> tuple[np.ndarray, np.ndarray]:
    """A numeric or boolean column as (values with empty ones imputed, missing indicator)."""
    if feature.kind == BOOLEAN:
        if series.dtype == pl.Boolean:
            numbers = series.cast(pl.Float64)
        else:
            words = series.str.strip_chars().str.to_lowercase()
            numbers = words.replace_strict(_WORDS, default=None, return_dtype=pl.Float64)
            bad = (words.is_not_null() & (words != "") & numbers.is_null()).arg_true()
            if len(bad):
                row = int(bad[0])
                line = source.line_of_row(start_row + row)
                raise DataError(f"column {feature.name!r}, line {line}: {series[row]!r} is not "
                                "yes/no, true/false or y/n", column=feature.name, line=line)
    elif series.dtype == pl.String:
        text = series.str.strip_chars()
        numbers = text.cast(pl.Float64, strict=False)
        bad = (text.is_not_null() & (text != "") & ~text.is_in(list(NA_TOKENS))
               & numbers.is_null()).arg_true()
        if len(bad):
            row = int(bad[0])
            line = source.line_of_row(start_row + row)
            raise DataError(f"column {feature.name!r}, line {line}: {series[row]!r} is not a "
                            "number", column=feature.name, line=line)
    else:
        numbers = series.cast(pl.Float64)
    values = numbers.to_numpy()
    if values.dtype != np.float64 or not values.flags.writeable:
        values = np.array(values, dtype=np.float64)
    missing = np.isnan(values)
    if feature.kind != BOOLEAN:
        bad = np.flatnonzero(np.isinf(values) | (missing & numbers.is_not_null().to_numpy()))
        if len(bad):
            line = source.line_of_row(start_row + int(bad[0]))
            raise DataError(f"column {feature.name!r}, line {line}: {series[int(bad[0])]!r} is "
                            "not a finite number", column=feature.name, line=line)
    values[missing] = feature.mean
    return values, missing.astype(np.float64)


def _codes(feature: Feature, series: pl.Series) -> np.ndarray:
    """A categorical column as level codes: "" for empty, "other" for any level not kept."""
    if series.dtype != pl.String:
        series = series.cast(pl.String)
    mapping = {level: code for code, level in enumerate(feature.levels)}
    codes = series.fill_null("").replace_strict(mapping, default=feature.other,
                                                return_dtype=pl.Int32)
    return codes.to_numpy()


def encode_target(series: pl.Series, source: Source, start_row: int = 0) -> np.ndarray:
    """The target column as float64; it must be a finite number in every row."""
    name = series.name
    if series.dtype == pl.String:
        numbers = series.str.strip_chars().cast(pl.Float64, strict=False)
        bad = (series.is_not_null() & numbers.is_null()).arg_true()
        if len(bad):
            row = int(bad[0])
            line = source.line_of_row(start_row + row)
            raise DataError(f"target column {name!r}, line {line}: {series[row]!r} is not a "
                            "number", column=name, line=line)
        series = numbers
    y = series.cast(pl.Float64).to_numpy()
    bad = np.flatnonzero(~np.isfinite(y))
    if len(bad):
        row = int(bad[0])
        ragged = source.ragged_line(start_row + row)  # a short line reads as empty cells
        if ragged is not None:
            raise ragged
        line = source.line_of_row(start_row + row)
        shown = "empty" if series[row] is None else f"{series[row]!r}, not a finite number"
        raise DataError(f"target column {name!r}, line {line}: the value is {shown}",
                        column=name, line=line)
    return np.array(y, dtype=np.float64) if not y.flags.writeable else y


def _transform(raw: np.ndarray, name: str, source: Source, start_row: int,
               order: np.ndarray | None, transform: str) -> np.ndarray:
    """The target as the model fits it: itself, or its logarithm (every value positive)."""
    if transform != "log":
        return raw
    bad = np.flatnonzero(raw <= 0)
    if len(bad):
        row = int(bad[0]) if order is None else int(order[bad[0]])
        line = source.line_of_row(start_row + row)
        raise DataError(f"target column {name!r}, line {line}: {float(raw[bad[0]])!r} is not "
                        "positive, which the log transform needs", column=name, line=line)
    return np.log(raw)


def used_columns(schema: Schema, target: str | None) -> list[str]:
    names: Sequence[str] = schema.names
    return [*names, target] if target is not None else list(names)
