"""What every wire format decodes into, and the one prediction step they share.

A decoded request is :class:`Columns`: one column per model input, in ``model.feature_names``
order, and the number of rows. A numeric input's column is a float64 array (for a single row
from JSON, a list of one Python float: numpy costs more than the rest of such a request); a
categorical input's column (once models have them) is a list of ``str`` (``None`` for a missing
value).
Which of the two an input takes is decided in one place, :func:`input_datatypes`; the codecs
ask it and never decide for themselves.

The helpers here turn JSON values into columns for the row-oriented formats (KServe V1,
MLflow's JSON and CSV): rows as lists in the model's feature order, rows as objects by name, or
columns by name. Their messages name the place (``instances[3]: feature 'sqft' must be a
number, got true``) in the words of ``/predict``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ...engine.schema import ValueProblem
from ..body import json_text, json_type
from ..errors import APIError

__all__ = ["BOOL", "BYTES", "FP64", "Columns", "input_datatypes", "json_column", "named_columns",
           "positional_columns", "predict", "record_columns", "row_count"]

FP64 = "FP64"  # a numeric input: its column is a float64 array
BYTES = "BYTES"  # a categorical input: its column is a list of str (None: missing)
# A yes/no input: a BOOL or 0/1 numeric tensor; in JSON rows true/false, 0/1 or the words the
# model was trained on (the engine checks each distinct value).
BOOL = "BOOL"

_NUMBERS = frozenset({int, float})
_STRINGS = frozenset({str, type(None)})
_FLOATS = frozenset({float, np.float64})
_WORDS_OR_NUMBERS = frozenset({bool, int, float, str})


def input_datatypes(model: Any) -> tuple[str, ...]:
    """The Open Inference Protocol datatype each input of ``model`` takes, in feature order:
    ``FP64`` for a numeric feature, ``BYTES`` for a categorical one, ``BOOL`` for a yes/no one.

    The one place that decides. Every codec, the ``/v2`` model metadata and the OpenAPI
    document ask it. Models have only numeric features today; when a model can have
    categorical ones, this function reads which they are from the model and nothing else
    changes: JSON strings, ``BYTES`` tensors (JSON or length-prefixed binary) and CSV text are
    already decoded into ``list[str | None]`` columns for an input that takes ``BYTES``.
    """
    schema = getattr(model, "schema", None)
    if schema is None:
        return (FP64,) * len(model.feature_names)
    kinds = {"categorical": BYTES, "boolean": BOOL}
    return tuple(kinds.get(f.kind, FP64) for f in schema.features)


class Columns(NamedTuple):
    """A decoded request: one column per model input (feature order) and the row count."""

    values: list[Any]
    rows: int


Label = Callable[[int], str]  # row index -> where a value is, for a message


def invalid(message: str, code: str = "invalid_features") -> APIError:
    return APIError(message, code=code)


def row_count(n: int, limit: int, what: str = "the batch") -> int:
    """``n``, or a 400 for an empty batch or one over ``limit`` rows."""
    if n == 0:
        raise APIError(f"{what} is empty; send at least one row", code="empty_batch")
    if n > limit:
        raise APIError(f"{what} has {n} rows; the limit is {limit} (SGDSERVE_MAX_BATCH_ROWS)",
                       code="too_many_rows")
    return n


def json_column(values: Sequence[Any], datatype: str, label: Label) -> Any:
    """JSON values as the column of an input taking ``datatype``, or a 400 naming the first
    value that does not fit (``label(i)`` says where value i is)."""
    if datatype == BYTES:
        if set(map(type, values)) <= _STRINGS:
            return list(values)
        for i, value in enumerate(values):
            if type(value) not in _STRINGS:
                raise invalid(f"{label(i)} must be a string (a category) or null, got "
                              f"{json_text(value)}")
    if datatype == BOOL:
        for i, value in enumerate(values):
            if value is not None and type(value) not in _WORDS_OR_NUMBERS:
                raise invalid(f"{label(i)} must be true/false, 1/0, a yes/no word or null, "
                              f"got {json_text(value)}")
        return list(values)
    if None in values:  # an empty value: the model imputes it, as /predict does with null
        for i, value in enumerate(values):
            if value is not None and type(value) not in _NUMBERS:
                raise invalid(f"{label(i)} must be a number or null, got {json_text(value)}")
        return [None if v is None else float(v) for v in values]
    # bool is a subclass of int, but its type is not int: true is refused, not read as 1.
    if len(values) == 1 and type(values[0]) in _NUMBERS:
        try:
            value = float(values[0])
        except OverflowError:  # an integer beyond float range: named below
            value = math.inf
        if math.isfinite(value):
            return [value]  # one row: a Python float, as /predict's single row
    if set(map(type, values)) <= _NUMBERS:
        try:
            column = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float range
            column = None
        if column is not None:
            return finite(column, label)
    for i, value in enumerate(values):
        if type(value) not in _NUMBERS:
            raise invalid(f"{label(i)} must be a number, got {json_text(value)}")
        try:
            float(value)
        except OverflowError:
            raise invalid(f"{label(i)} is out of range for a float") from None
    raise AssertionError("unreachable: a bad value was not found")  # pragma: no cover


def finite(column: np.ndarray, label: Label) -> np.ndarray:
    """``column``, or a 400 naming its first NaN or infinity."""
    if len(column) == 1 and math.isfinite(column[0]):
        return column  # one row: a numpy reduction costs more than the rest of the check
    if not np.isfinite(column).all():
        i = int(np.flatnonzero(~np.isfinite(column))[0])
        raise invalid(f"{label(i)} must be finite, got {float(column[i])!r}")
    return column


def positional_columns(rows: list[Any], names: tuple[str, ...], datatypes: tuple[str, ...],
                       where: str) -> Columns:
    """Rows given as lists of values in the model's feature order (``where[i]`` each)."""
    d = len(names)
    for i, row in enumerate(rows):
        if type(row) is not list:
            raise invalid(f"{where}[{i}] must be a list of {d} values in the order "
                          f"{', '.join(names)}, got {json_type(row)}")
        if len(row) != d:
            raise invalid(f"{where}[{i}] has {len(row)} values; the model has {d} features: "
                          f"{', '.join(names)}")
    transposed = list(zip(*rows, strict=True)) if rows else [()] * d
    values = [json_column(transposed[j], datatypes[j],
                          lambda i, j=j: f"{where}[{i}][{j}] ({names[j]!r})")
              for j in range(d)]
    return Columns(values, len(rows))


def record_columns(rows: list[Any], names: tuple[str, ...], datatypes: tuple[str, ...],
                   where: str) -> Columns:
    """Rows given as objects of feature values by name (``where[i]`` each)."""
    n, d = len(rows), len(names)
    # Each row holds every name (checked below); equal total size then means no extra key.
    if all(type(row) is dict for row in rows) and sum(map(len, rows)) == n * d:
        try:
            columns = [list(map(operator.itemgetter(name), rows)) for name in names]
        except KeyError:
            columns = None
        if columns is not None:
            values = [json_column(columns[j], datatypes[j],
                                  lambda i, j=j: f"{where}[{i}]: feature {names[j]!r}")
                      for j in range(d)]
            return Columns(values, n)
    expected = set(names)
    for i, row in enumerate(rows):
        if type(row) is not dict:
            raise invalid(f"{where}[{i}] must be an object of feature values, got "
                          f"{json_type(row)}")
        for name in names:
            if name not in row:
                raise invalid(f"{where}[{i}]: feature {name!r} is missing")
        for key in row:
            if key not in expected:
                raise invalid(f"{where}[{i}]: unknown feature {key[:50]!r}; the model's "
                              f"features are {', '.join(names)}")
    raise AssertionError("unreachable: a bad row was not found")  # pragma: no cover


def named_columns(mapping: dict[str, Any], names: tuple[str, ...], datatypes: tuple[str, ...],
                  where: str) -> Columns:
    """Columns given by feature name, each a list of one value per row (``where[name]``)."""
    for name in names:
        if name not in mapping:
            raise invalid(f"{where}: feature {name!r} is missing")
    for key in mapping:
        if key not in names:
            raise invalid(f"{where}: unknown feature {key[:50]!r}; the model's features are "
                          f"{', '.join(names)}")
    for name in names:
        if type(mapping[name]) is not list:
            raise invalid(f"{where}[{name!r}] must be a list of values (one per row), got "
                          f"{json_type(mapping[name])}")
    n = len(mapping[names[0]])
    for name in names:
        if len(mapping[name]) != n:
            raise invalid(f"{where}[{name!r}] has {len(mapping[name])} values where "
                          f"{names[0]!r} has {n}; every feature needs one value per row")
    values = [json_column(mapping[name], datatypes[j],
                          lambda i, name=name: f"{where}[{name!r}][{i}]")
              for j, name in enumerate(names)]
    return Columns(values, n)


def predict(model: Any, columns: Columns, label: Label, code: str = "invalid_features"
            ) -> Any:
    """The model's predictions for ``columns`` (``LinearModel.predict_columns``, the sum
    ``/predict`` uses): a float64 array, or for one row a list of one float; or a 400 naming
    the first row whose prediction is not finite."""
    values = columns.values
    if columns.rows == 1 and all(type(v[0]) in _FLOATS for v in values):
        # One row: Python floats, as /predict's single row (the same sum, bit for bit, without
        # a numpy operation per feature on 1-element arrays).
        y = model.predict_columns([float(v[0]) for v in values])
        if not math.isfinite(y):
            raise APIError(f"{label(0)}: the prediction is not finite; feature values are too "
                           "large", code=code)
        return [y]
    try:
        y = np.asarray(model.predict_columns(values), dtype=np.float64)
    except ValueProblem as problem:  # e.g. 2 for a yes/no feature
        raise APIError(f"{problem} , got {json_text(problem.value)}".replace(" ,", ","),
                       code=code) from None
    if not np.isfinite(y).all():
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise APIError(f"{label(i)}: the prediction is not finite; feature values are too "
                       "large", code=code)
    return y

