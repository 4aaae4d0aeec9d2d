"""The prediction blueprint: ``POST /predict`` with one row (``features``) or a batch
(``instances``), features by name; ``"interval": 0.9`` adds a split conformal interval per row
and ``"explain": true`` each feature's contribution. Every prediction gets an id
(service/monitor/ids.py) and a line in this worker's prediction log: a row's once the answer is
built, a batch's once the answer has been sent (service/http/loop.py).

This is the hot path. msgspec decodes the body straight into typed rows for the served model's
features (service/http/rows.py): floats for a model that needs no encoding, the JSON types of
each feature's kind otherwise (text levels, null for an empty value). A body it refuses is
parsed with orjson and checked field by field, only to answer with the first bad row and field.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from flask import Blueprint, Response, request
from msgspec import UNSET

from ..engine import LevelError
from ..engine.schema import CATEGORICAL, ValueProblem
from .body import json_text, json_type, parse_json, read_json_body, release_after_sending
from .errors import APIError, json_response
from .loop import batch_ids_json, check_request_id
from .rows import OPTION_KEYS, decoder_for_model, ignored_columns, mixed_decoder_for
from .state import ServiceState, state

bp = Blueprint("predict", __name__)


@bp.post("/predict")
def predict() -> Response:
    """Predict one row (``features``) or a batch (``instances``), with an interval and an
    explanation per row when asked."""
    st = state()
    req = request._get_current_object()  # one proxy lookup, not one per use
    data = read_json_body(req)
    request_id = req.environ.get("HTTP_X_REQUEST_ID")
    if request_id is not None:
        request_id = check_request_id(request_id)
    version, model = st.holder.get()
    if model is not None:
        limit = st.settings.max_batch_rows
        decoded = decoder_for_model(model).decode(data, limit)
        plain = model.plain
        if decoded is None and plain:  # e.g. a row copied with its target: still typed
            decoded = mixed_decoder_for(model).decode(data, limit)
            plain = False
        if decoded is not None:
            single, columns, parsed = decoded
            interval, explain = parsed.interval, parsed.explain
            asked = interval is not UNSET or explain is not UNSET
            level, explain = _options(model, interval, explain) if asked else (None, False)
            try:
                y, design = _rows(st, model, columns, plain)
            except ValueProblem:
                pass  # the general path names the row
            else:
                if math.isfinite(y) if single else np.isfinite(y).all():
                    response = _answer(st, version, model, y, design, columns, single, level,
                                       explain, data, request_id)
                    if not single:
                        release_after_sending(response, parsed, data)
                    return response
    # The general path: a body the typed decoder refused (or whose prediction overflowed) is
    # parsed as plain JSON and checked field by field, to answer with the first bad row and field.
    body = parse_json(data)
    version, model = st.served()
    if type(body) is not dict:
        raise _bad_body(body)
    level, explain = _options(model, body.get("interval", UNSET), body.get("explain", UNSET))
    keys = [k for k in body if k not in OPTION_KEYS]
    if len(keys) != 1:
        raise _bad_body(body)
    if "features" in body:
        row = body["features"]
        columns = _checked_columns(model, [row], single=True)
        values = [c[0] for c in columns]
        y, design = _predict(st, model, values, [row], single=True)
        return _answer(st, version, model, y, design, values, True, level, explain, data,
                       request_id)
    rows = body.get("instances")
    if type(rows) is not list:
        if "instances" in body:
            raise APIError(f"'instances' must be a list of rows, got {json_type(rows)}")
        raise _bad_body(body)
    if not rows:
        raise APIError("'instances' is empty; send at least one row", code="empty_batch")
    limit = st.settings.max_batch_rows
    if len(rows) > limit:
        raise APIError(
            f"'instances' has {len(rows)} rows; the limit is {limit} (SGDSERVE_MAX_BATCH_ROWS)",
            code="too_many_rows",
        )
    columns = _checked_columns(model, rows, single=False)
    y, design = _predict(st, model, columns, rows, single=False)
    return _answer(st, version, model, y, design, columns, False, level, explain, data,
                   request_id)


def _options(model: Any, interval: Any, explain: Any) -> tuple[float | None, bool]:
    """The interval level (None: none asked for) and whether to explain, checked."""
    if explain is UNSET:
        explain = False
    elif type(explain) is not bool:
        raise APIError(f"'explain' must be true or false, got {json_text(explain)}",
                       code="invalid_option")
    if interval is UNSET:
        return None, explain
    calibration = model.calibration
    if calibration is None:
        raise APIError("this model version has no calibration residuals (it was trained before "
                       "intervals existed, or on the Dask engine): retrain it with the local "
                       "engine to get intervals",
                       code="interval_unavailable")
    try:
        return calibration.check(interval), explain
    except LevelError as exc:
        raise APIError(str(exc), code="invalid_interval") from None


def _rows(st: ServiceState, model: Any, columns: Any, plain: bool) -> tuple[Any, Any]:
    """Predictions, and the design they came from (design columns, level codes)."""
    if plain:
        return model.predict_columns(columns), (columns, ())
    encoded = model.encode(columns)
    if encoded.imputed or encoded.unseen:
        st.metrics.encoded(encoded.imputed, encoded.unseen)
    return model.predict_design(encoded.values, encoded.codes), (encoded.values, encoded.codes)


def _answer(st: ServiceState, version: str, model: Any, y: Any, design: Any, columns: Any,
            single: bool, level: float | None, explain: bool, data: bytes,
            request_id: str | None) -> Response:
    """The answer (ids, and intervals and explanations if asked), then the log line."""
    loop = st.loop
    logged = None
    if single:
        pid = loop.ids.issue()
        body: dict[str, Any] = {"prediction": y, "prediction_id": pid, "model_version": version}
        if level is not None:
            lower, upper = model.calibration.interval(y, level)
            body["interval"] = {"lower": lower, "upper": upper, "level": level}
            logged = _logged_interval(model, level)
        if explain:
            body["explanation"] = model.explainer().row(*design)
        headers = {"X-Model-Version": version, "X-Prediction-Id": pid,
                   "X-Request-Id": request_id or pid}
        response = json_response(body, headers=headers)
        st.metrics.rows_predicted(1)
        loop.single(pid, version, columns, y, logged, request_id)
        return response
    n = len(y)
    pid = loop.ids.issue(n)
    predictions = orjson.dumps(y, option=orjson.OPT_SERIALIZE_NUMPY)
    body = {"predictions": orjson.Fragment(predictions),
            "prediction_ids": orjson.Fragment(batch_ids_json(pid, n)), "model_version": version}
    if level is not None:
        lower, upper = model.calibration.interval(y, level)
        body["intervals"] = [{"lower": lo, "upper": hi, "level": level}
                             for lo, hi in zip(lower.tolist(), upper.tolist(), strict=True)]
        logged = _logged_interval(model, level)
    if explain:
        body["explanations"] = model.explainer().rows(*design, n)
    headers = {"X-Model-Version": version, "X-Prediction-Id": pid,
               "X-Request-Id": request_id or pid}
    response = json_response(body, headers=headers)
    st.metrics.rows_predicted(n)
    loop.batch(pid, version, n, data, predictions, logged, request_id, after=response)
    return response


def _logged_interval(model: Any, level: float) -> dict[str, Any]:
    """What the log keeps of an interval: each row's follows from its prediction and these."""
    calibration = model.calibration
    return {"level": level, "half_width": calibration.half_width(level),
            "scale": calibration.scale}


def _predict(st: ServiceState, model: Any, columns: Any, rows: list[Any], *,
             single: bool) -> tuple[Any, Any]:
    """Predictions, or a 400 naming the first overflowing row (values are checked already)."""
    y, design = _rows(st, model, columns, plain=False)
    if not (math.isfinite(y) if single else np.isfinite(y).all()):
        i = 0 if single else int(np.flatnonzero(~np.isfinite(y))[0])
        where = "" if single else f"instances[{i}]: "
        raise APIError(f"{where}the prediction is not finite; feature values are too large",
                       code="invalid_features")
    return y, design


def _bad_body(body: Any) -> APIError:
    if type(body) is dict and "features" in body and "instances" in body:
        return APIError("give either 'features' or 'instances', not both")
    if type(body) is dict:
        extra = sorted(k for k in body if k not in ("features", "instances", *OPTION_KEYS))
        if extra:
            return APIError(f"unknown key {extra[0][:50]!r}; expected 'features' or "
                            "'instances' (and optionally 'interval', 'explain')")
    return APIError(
        "request body must be a JSON object with 'features' (one row) "
        f"or 'instances' (a list of rows), got {json_type(body)}"
    )


def _checked_columns(model: Any, rows: list[Any], *, single: bool) -> list[list[Any]]:
    """The rows' values, one list per feature, after checking every row: its keys (every
    feature, nothing unknown; the target and columns dropped at training are ignored) and
    each value against its feature's kind. The first problem is a 400 naming row and field."""
    names = model.feature_names
    expected = set(names)
    allowed = expected | set(ignored_columns(model))
    features = model.schema.features
    for i, row in enumerate(rows):
        where = "" if single else f"instances[{i}]: "
        if type(row) is not dict:
            subject = "'features'" if single else f"instances[{i}]"
            raise APIError(f"{subject} must be an object of feature values, got "
                           f"{json_type(row)}", code="invalid_features")
        for name in names:
            if name not in row:
                raise APIError(f"{where}feature {name!r} is missing", code="invalid_features")
        for key in row:
            if key not in allowed:
                raise APIError(f"{where}unknown feature {key[:50]!r}; the model's features are "
                               f"{', '.join(names)}", code="invalid_features")
        for feature in features:
            _check_value(feature, row[feature.name], where)
    return [[row[name] for row in rows] for name in names]


def _check_value(feature: Any, value: Any, where: str) -> None:
    try:
        if feature.kind == CATEGORICAL:
            feature.code(value)
        else:
            feature.number(value)
    except ValueProblem as problem:
        raise APIError(f"{where}{problem}, got {json_text(value)}",
                       code="invalid_features") from None
    except OverflowError:  # an integer beyond float range
        raise APIError(f"{where}feature {feature.name!r} must be a finite number, got "
                       f"{json_text(value)}", code="invalid_features") from None
