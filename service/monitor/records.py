"""The records of the prediction and feedback logs: one JSON line per request.

Predictions (``kind == "predictions"``), every time ``t`` in seconds since the epoch:

    {"id": ID, "t": T, "v": VERSION, "x": [value, ...], "y": PRED}          one row, values
                                                                            in the version's
                                                                            feature order
    {"id": ID, "t": T, "v": VERSION, "n": N, "request": BODY, "y": [PRED, ...]}
                                                                            a /predict batch:
                                                                            its body as sent
    {"id": ID, "t": T, "v": VERSION, "n": N, "columns": {name: [...]}, "y": [...]}
                                                                            a /v2 batch

plus ``"iv": {"level", "half_width", "scale"}`` when an interval was asked for (every row's
interval follows from its prediction and these) and ``"rid"`` for a client's ``X-Request-Id``.
A batch's row i has the id ``ID.i``. A /predict batch is logged by splicing its body and the
answer's already encoded predictions into the line (JSON has no raw newline inside a string, so
replacing newlines with spaces keeps it one valid line): no value is encoded twice, which keeps
the log's cost on a 10,000-row batch to copying bytes.

Feedback (``kind == "feedback"``):

    {"t": T, "ids": [ID, ...], "actual": [Y, ...]}                          about predictions
    {"t": T, "rows": [{feature: value, ...}, ...], "row_actual": [Y, ...]}  labelled rows
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

__all__ = ["batch_columns_line", "batch_request_line", "feedback_line", "single_line"]

_dumps = orjson.dumps
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def _head(pid: str, t: float, version: str, request_id: str | None) -> dict[str, Any]:
    head: dict[str, Any] = {"id": pid, "t": t, "v": version}
    if request_id is not None:
        head["rid"] = request_id
    return head


def single_line(pid: str, t: float, version: str, values: Sequence[Any], y: float,
                interval: Mapping[str, Any] | None = None,
                request_id: str | None = None) -> bytes:
    """One prediction: its values in the version's feature order."""
    record = _head(pid, t, version, request_id)
    record["x"] = values
    record["y"] = y
    if interval is not None:
        record["iv"] = interval
    return _dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def batch_request_line(pid: str, t: float, version: str, n: int, body: bytes,
                       predictions_json: bytes, interval: Mapping[str, Any] | None = None,
                       request_id: str | None = None) -> bytes:
    """A /predict batch: its body as sent and its predictions as encoded for the answer."""
    record = _head(pid, t, version, request_id)
    record["n"] = n
    if interval is not None:
        record["iv"] = interval
    head = _dumps(record)
    if b"\n" in body or b"\r" in body:
        body = body.replace(b"\n", b" ").replace(b"\r", b" ")
    return b"".join((head[:-1], b',"request":', body, b',"y":', predictions_json, b"}\n"))


def batch_columns_line(pid: str, t: float, version: str, columns: Mapping[str, Any],
                       predictions_json: bytes, n: int,
                       interval: Mapping[str, Any] | None = None,
                       request_id: str | None = None) -> bytes:
    """A batch given as columns (the Open Inference Protocol's tensors)."""
    record = _head(pid, t, version, request_id)
    record["n"] = n
    if interval is not None:
        record["iv"] = interval
    record["columns"] = columns
    head = _dumps(record, option=_NUMPY)
    return b"".join((head[:-1], b',"y":', predictions_json, b"}\n"))


def feedback_line(t: float, ids: Sequence[str], actual: Sequence[float],
                  rows: Sequence[Mapping[str, Any]] = (),
                  row_actual: Sequence[float] = ()) -> bytes:
    """One /feedback request: actual values for prediction ids, and labelled rows."""
    record: dict[str, Any] = {"t": t}
    if ids:
        record["ids"] = ids
        record["actual"] = actual
    if rows:
        record["rows"] = rows
        record["row_actual"] = row_actual
    return _dumps(record, option=orjson.OPT_APPEND_NEWLINE)
