"""The prediction blueprint: ``POST /predict`` with one row (``features``) or a batch
(``instances``), features by name.

This is the hot path. msgspec decodes the body straight into typed rows for the served model's
features (service/http/rows.py): floats for a model that needs no encoding, the JSON types of
each feature's kind otherwise (text levels, null for an empty value). A body it refuses is
parsed with orjson and checked field by field, only to answer with the first bad row and field.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from flask import Blueprint, Response, request

from ..engine.schema import CATEGORICAL, ValueProblem
from .body import json_text, json_type, parse_json, read_json_body, release_after_sending
from .errors import APIError, json_response
from .rows import decoder_for_model, ignored_columns, mixed_decoder_for
from .state import ServiceState, state

bp = Blueprint("predict", __name__)


@bp.post("/predict")
def predict() -> Response:
    """Predict one row (``features``) or a batch (``instances``)."""
    st = state()
    req = request._get_current_object()  # one proxy lookup, not one per use
    data = read_json_body(req)
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
            try:
                y = model.predict_columns(columns) if plain else _encoded(st, model, columns)
            except ValueProblem:
                pass  # the general path names the row
            else:
                if math.isfinite(y) if single else np.isfinite(y).all():
                    response = _predicted(st, version, y, single)
                    if not single:
                        release_after_sending(response, parsed, data)
                    return response
    # The general path: a body the typed decoder refused (or whose prediction overflowed) is
    # parsed as plain JSON and checked field by field, to answer with the first bad row and field.
    body = parse_json(data)
    version, model = st.served()
    if type(body) is not dict or len(body) != 1:
        raise _bad_body(body)
    if "features" in body:
        row = body["features"]
        columns = _checked_columns(model, [row], single=True)
        y = _predict(st, model, [c[0] for c in columns], [row], single=True)
        return _predicted(st, version, y, True)
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
    y = _predict(st, model, columns, rows, single=False)
    return _predicted(st, version, y, False)


def _encoded(st: ServiceState, model: Any, columns: Any) -> Any:
    """Encode by the model's schema, count what was imputed or unseen, predict."""
    encoded = model.encode(columns)
    if encoded.imputed or encoded.unseen:
        st.metrics.encoded(encoded.imputed, encoded.unseen)
    return model.predict_design(encoded.values, encoded.codes)


def _predicted(st: ServiceState, version: str, y: Any, single: bool) -> Response:
    headers = {"X-Model-Version": version}
    if single:
        st.metrics.rows_predicted(1)
        return json_response({"prediction": y, "model_version": version}, headers=headers)
    st.metrics.rows_predicted(len(y))
    return json_response({"predictions": y, "model_version": version}, headers=headers)


def _predict(st: ServiceState, model: Any, columns: Any, rows: list[Any], *,
             single: bool) -> Any:
    """Predictions, or a 400 naming the first overflowing row (values are checked already)."""
    y = _encoded(st, model, columns)
    if not (math.isfinite(y) if single else np.isfinite(y).all()):
        i = 0 if single else int(np.flatnonzero(~np.isfinite(y))[0])
        where = "" if single else f"instances[{i}]: "
        raise APIError(f"{where}the prediction is not finite; feature values are too large",
                       code="invalid_features")
    return y


def _bad_body(body: Any) -> APIError:
    if type(body) is dict and "features" in body and "instances" in body:
        return APIError("give either 'features' or 'instances', not both")
    if type(body) is dict:
        extra = sorted(k for k in body if k not in ("features", "instances"))
        if extra:
            return APIError(f"unknown key {extra[0]!r}; expected 'features' or 'instances'")
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
