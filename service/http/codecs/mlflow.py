"""MLflow's scoring protocol (``POST /invocations``), as ``mlflow models serve`` reads it.

A JSON body is an object with exactly one of ``dataframe_split`` (``{"columns", "data"[,
"index"]}``), ``dataframe_records`` (a list of rows by name), ``instances`` or ``inputs`` (rows
as lists in the model's feature order, rows by name, or columns by name); ``params`` is
accepted and, as for an MLflow model without parameters, ignored; other keys are ignored, as
MLflow does. A ``text/csv`` body is :mod:`.csv_rows`. Wrong formats get MLflow's own messages.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..body import json_type
from ..errors import APIError
from .columns import (
    Columns,
    named_columns,
    positional_columns,
    record_columns,
    row_count,
)

__all__ = ["FORMATS", "decode_json"]

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_FIELDS = "{" + ", ".join(repr(f) for f in FORMATS) + "}"


def bad_format(message: str) -> APIError:
    return APIError(message, code="invalid_format")


def decode_json(data: bytes, names: tuple[str, ...], datatypes: tuple[str, ...],
                limit: int) -> tuple[Columns, Any]:
    """The columns of an MLflow JSON scoring body for inputs ``names`` taking ``datatypes``,
    and the parsed body."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise APIError(f"Invalid input. Ensure that input is a valid JSON formatted string. "
                       f"Error: {exc}", code="invalid_json") from None
    if type(body) is not dict:
        raise bad_format(f"Invalid input. The input must be a JSON dictionary with exactly one "
                         f"of the input fields {_FIELDS}. Received {json_type(body)}.")
    found = [key for key in FORMATS if key in body]
    if len(found) != 1:
        note = ""
        if not found and "columns" in body and "data" in body:
            note = (" MLflow 2.0 moved pandas 'split' bodies under 'dataframe_split': send "
                    '{"dataframe_split": {"columns": [...], "data": [...]}}.')
        raise bad_format(f"The input must be a JSON dictionary with exactly one of the input "
                         f"fields {_FIELDS}. Received dictionary with input fields: "
                         f"{found}.{note}")
    if "params" in body and type(body["params"]) is not dict:
        raise bad_format(f"'params' must be an object, got {json_type(body['params'])}")
    key = found[0]
    value = body[key]
    if key == "dataframe_split":
        return _split(value, names, datatypes, limit), body
    if key == "dataframe_records":
        if type(value) is not list:
            raise bad_format(f"'dataframe_records' must be a list of rows (objects by column "
                             f"name), got {json_type(value)}")
        row_count(len(value), limit, "'dataframe_records'")
        return record_columns(value, names, datatypes, key), body
    # instances / inputs: rows by name, rows in feature order, or columns by name
    if type(value) is dict:
        columns = named_columns(value, names, datatypes, key)
        row_count(columns.rows, limit, repr(key))
        return columns, body
    if type(value) is not list:
        raise bad_format(f"{key!r} must be a list of rows or an object of columns, got "
                         f"{json_type(value)}")
    row_count(len(value), limit, repr(key))
    if type(value[0]) is dict:
        return record_columns(value, names, datatypes, key), body
    if type(value[0]) is not list and len(names) == 1:
        return named_columns({names[0]: value}, names, datatypes, key), body
    return positional_columns(value, names, datatypes, key), body


def _split(value: Any, names: tuple[str, ...], datatypes: tuple[str, ...],
           limit: int) -> Columns:
    """A pandas 'split' frame: ``columns`` (the model's features, any order; without it, the
    feature order), ``data`` (rows as lists) and an optional ``index``."""
    where = "dataframe_split"
    if type(value) is not dict:
        raise bad_format(f"'{where}' must be an object with 'columns' and 'data', got "
                         f"{json_type(value)}")
    extra = [k for k in value if k not in ("columns", "data", "index")]
    if extra:
        raise bad_format(f"'{where}' has an unknown key {extra[0][:50]!r}; a pandas 'split' "
                         "frame has columns, data and index")
    rows = value.get("data")
    if type(rows) is not list:
        raise bad_format(f"'{where}.data' must be a list of rows (lists of values), got "
                         f"{json_type(rows)}" if "data" in value else f"'{where}.data' is "
                         "missing")
    row_count(len(rows), limit, f"'{where}.data'")
    index = value.get("index")
    if index is not None and (type(index) is not list or len(index) != len(rows)):
        raise bad_format(f"'{where}.index' must be a list of one label per row ({len(rows)})")
    columns = value.get("columns")
    if columns is None:
        return positional_columns(rows, names, datatypes, f"{where}.data")
    if type(columns) is not list or not all(type(c) is str for c in columns):
        raise bad_format(f"'{where}.columns' must be a list of column names")
    for name in names:
        if name not in columns:
            raise APIError(f"'{where}.columns' lacks feature {name!r}; the model's features "
                           f"are {', '.join(names)}", code="invalid_features")
    for column in columns:
        if column not in names:
            raise APIError(f"'{where}.columns' names an unknown feature {column[:50]!r}; the "
                           f"model's features are {', '.join(names)}", code="invalid_features")
    if len(columns) != len(names):
        raise APIError(f"'{where}.columns' names a feature twice", code="invalid_features")
    kinds = dict(zip(names, datatypes, strict=True))
    given = positional_columns(rows, tuple(columns), tuple(kinds[c] for c in columns),
                               f"{where}.data")
    order = {column: j for j, column in enumerate(columns)}
    return Columns([given.values[order[name]] for name in names], given.rows)
