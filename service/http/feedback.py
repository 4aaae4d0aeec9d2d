"""The feedback blueprint: ``POST /feedback``, what really happened after a prediction.

    {"prediction_id": "...", "actual": 312000}                  about one prediction
    {"features": {...}, "actual": 312000}                       a labelled row never predicted
    {"feedback": [<either of the above>, ...]}                  up to SGDSERVE_MAX_BATCH_ROWS

The token is required: feedback can steer retraining. An id is checked by its MAC (any worker
knows an id any other issued, at once); one this service never issued is counted as unknown
and listed, not an error. Labelled rows are checked against the served model's features as
``/predict`` checks them. The accepted values are appended to this worker's feedback log in one
line (service/monitor/records.py); the join later keeps the last value per id. The answer is
``202 {"accepted", "unknown", "unknown_ids", "labelled"}``, or a 503 when the log could not keep
them (nothing was accepted then).
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Response, request

from .auth import require_token
from .body import json_text, json_type, parse_json, read_json_body
from .errors import APIError, json_response
from .predict import _checked_columns
from .state import state

bp = Blueprint("feedback", __name__)

MAX_UNKNOWN_LISTED = 100  # unknown ids named in the answer; the count has them all
_ITEM_KEYS = ("prediction_id", "features", "actual")


@bp.post("/feedback")
def feedback() -> Response:
    """Record actual values for predictions (by id) and labelled rows."""
    st = state()
    require_token(st)
    body = parse_json(read_json_body(request._get_current_object()))
    if type(body) is not dict:
        raise APIError(f"request body must be a JSON object, got {json_type(body)}",
                       code="invalid_feedback")
    if "feedback" in body:
        extra = [k for k in body if k != "feedback"]
        if extra:
            raise APIError(f"unknown key {extra[0][:50]!r} beside 'feedback'",
                           code="invalid_feedback")
        items = body["feedback"]
        if type(items) is not list:
            raise APIError(f"'feedback' must be a list, got {json_type(items)}",
                           code="invalid_feedback")
        if not items:
            raise APIError("'feedback' is empty; send at least one item", code="empty_batch")
        limit = st.settings.max_batch_rows
        if len(items) > limit:
            raise APIError(f"'feedback' has {len(items)} items; the limit is {limit} "
                           "(SGDSERVE_MAX_BATCH_ROWS)", code="too_many_rows")
        prefix = "feedback[{}]: "
    else:
        items = [body]
        prefix = ""

    parse = st.loop.ids.parse
    ids: list[str] = []
    actual: list[float] = []
    unknown: list[str] = []
    labelled: list[dict[str, Any]] = []
    labelled_actual: list[float] = []
    labelled_at: list[int] = []
    for i, item in enumerate(items):
        where = prefix.format(i)
        if type(item) is not dict:
            raise APIError(f"{where}each item must be an object with 'prediction_id' (or "
                           f"'features') and 'actual', got {json_type(item)}",
                           code="invalid_feedback")
        for key in item:
            if key not in _ITEM_KEYS:
                raise APIError(f"{where}unknown key {key[:50]!r}; an item has 'prediction_id' "
                               "or 'features', and 'actual'", code="invalid_feedback")
        value = _actual(item, where)
        if "prediction_id" in item:
            if "features" in item:
                raise APIError(f"{where}give 'prediction_id' or 'features', not both",
                               code="invalid_feedback")
            pid = item["prediction_id"]
            if type(pid) is not str:
                raise APIError(f"{where}'prediction_id' must be a string, got "
                               f"{json_text(pid)}", code="invalid_feedback")
            if parse(pid) is None:
                unknown.append(pid)
            else:
                ids.append(pid)
                actual.append(value)
        elif "features" in item:
            labelled.append(item["features"])
            labelled_actual.append(value)
            labelled_at.append(i)
        else:
            raise APIError(f"{where}'prediction_id' (or 'features', for a row never predicted) "
                           "is missing", code="invalid_feedback")
    if labelled:
        _check_labelled(st, labelled, labelled_at, prefix)
    if not st.loop.store_feedback(ids, actual, labelled, labelled_actual):
        raise APIError(f"the feedback could not be stored ({st.loop.last_error}); nothing was "
                       "accepted: try again", status_code=503, code="feedback_not_stored")
    st.metrics.feedback_rows(len(ids), len(unknown), len(labelled))
    answer = {"accepted": len(ids) + len(labelled), "unknown": len(unknown),
              "unknown_ids": [u[:100] for u in unknown[:MAX_UNKNOWN_LISTED]],
              "labelled": len(labelled)}
    if len(unknown) > MAX_UNKNOWN_LISTED:
        answer["unknown_ids_truncated"] = True
    return json_response(answer, status=202)


def _actual(item: dict[str, Any], where: str) -> float:
    if "actual" not in item:
        raise APIError(f"{where}'actual' is missing: the value that really happened",
                       code="invalid_feedback")
    value = item["actual"]
    if type(value) not in (int, float):
        raise APIError(f"{where}'actual' must be a number, got {json_text(value)}",
                       code="invalid_feedback")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise APIError(f"{where}'actual' must be a finite number, got {json_text(value)}",
                       code="invalid_feedback")
    return number


def _check_labelled(st: Any, rows: list[dict[str, Any]], at: list[int], prefix: str) -> None:
    """Labelled rows must carry the served model's features, as /predict's rows do."""
    _, model = st.served()
    for row, i in zip(rows, at, strict=True):
        try:
            _checked_columns(model, [row], single=True)
        except APIError as exc:
            where = prefix.format(i)
            raise APIError(f"{where}{exc.message}", code="invalid_feedback") from None
