"""KServe's V1 prediction protocol: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out.

What KServe's scikit-learn server and its ``InferenceRESTClient(protocol="v1")`` send: each
instance a list of values in the model's feature order (``GET /v2/models/<name>`` lists it),
or an object of values by feature name. ``inputs`` is accepted for ``instances``, as KServe does.

A body of named rows is exactly a ``/predict`` batch, so it is decoded by the same typed decoder
(:func:`service.http.rows.decoder_for`); anything else is parsed with orjson and checked row by
row (:mod:`.columns`), to name the first bad row and field.
"""

from __future__ import annotations

from typing import Any

from ..body import json_type, parse_json
from ..errors import APIError
from ..rows import decoder_for
from .columns import (
    FP64,
    Columns,
    json_column,
    positional_columns,
    record_columns,
    row_count,
)

__all__ = ["decode"]

_KEYS = ("instances", "inputs")


def decode(data: bytes, names: tuple[str, ...], datatypes: tuple[str, ...],
           limit: int) -> tuple[Columns, Any]:
    """The columns of a V1 predict body for inputs ``names`` taking ``datatypes``
    (:func:`~.columns.input_datatypes`), and the parsed body (to free after answering)."""
    if _rows_by_name(data) and all(datatype == FP64 for datatype in datatypes):
        decoded = decoder_for(names).decode(data, limit)
        if decoded is not None and not decoded.single:
            X = decoded.columns
            return Columns(list(X), X.shape[1]), decoded.parsed
    body = parse_json(data)
    if type(body) is not dict:
        raise APIError("request body must be a JSON object with 'instances' (a list of rows), "
                       f"got {json_type(body)}")
    keys = [key for key in _KEYS if key in body]
    extra = [key for key in body if key not in _KEYS]
    if extra:
        raise APIError(f"unknown key {extra[0][:50]!r}; a V1 predict body has 'instances' (or "
                       "'inputs'), a list of rows")
    if len(keys) != 1:
        raise APIError("request body must have 'instances' (or 'inputs'), a list of rows"
                       if not keys else "give 'instances' or 'inputs', not both")
    key = keys[0]
    rows = body[key]
    if type(rows) is not list:
        raise APIError(f"{key!r} must be a list of rows, got {json_type(rows)}")
    row_count(len(rows), limit, f"{key!r}")
    first = type(rows[0])
    if first is dict:
        return record_columns(rows, names, datatypes, key), body
    if first is list or len(names) != 1:
        return positional_columns(rows, names, datatypes, key), body
    # One feature: each instance may be its bare value.
    return Columns([json_column(rows, datatypes[0], lambda i: f"{key}[{i}]")], len(rows)), body


def _rows_by_name(data: bytes) -> bool:
    """Whether the body is a batch of objects, large enough for /predict's typed decoder to
    pay (on a few rows, its column packing costs more than plain parsing)."""
    start = data.find(b"[") + 1
    return len(data) > 4096 and start > 0 and data[start:start + 64].lstrip()[:1] == b"{"
