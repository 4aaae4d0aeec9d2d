"""sgdserve's app with ``GET /model`` answering a fixture and ``POST /predict`` recording bodies.

For tests/test_page_browser.py only: it lets the real page script, in a real browser, render a
``/model`` with boolean and categorical features (the schema contract of the tabular-data work,
which no model in this branch can produce yet) and shows exactly what the page would send to
``/predict``. It is not a model: the answer is a constant, and the test checks the request.
Run by gunicorn as ``page_fixture_app:create()``; ``PAGE_FIXTURE_DIR`` is where bodies go.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from flask import Flask, Response, request

from service.http import create_app
from service.http.errors import json_response

VERSION = "20260101T000000.000000Z-fa1e00"
PREDICTION = 123456.5

SCHEMA = [
    {"name": "sqft", "kind": "numeric", "mean": 1523.4, "coefficient": 110.5,
     "standardized": 0.61, "min": 334.0, "max": 5642.0, "imputes": False},
    {"name": "lot_area", "kind": "numeric", "mean": 10147.9, "coefficient": 0.75,
     "standardized": 0.08, "min": 1300.0, "max": 215245.0, "imputes": True},
    {"name": "central_air", "kind": "boolean", "true": ["Y"], "false": ["N"],
     "coefficient": 9100.0},
    {"name": "neighborhood", "kind": "categorical", "imputes": False,
     "levels": [{"level": "NAmes", "weight": -11200.0, "count": 443},
                {"level": "CollgCr", "weight": 4100.0, "count": 267},
                {"level": "StoneBr", "weight": 61200.0, "count": 51}],
     "other": {"weight": -2500.0, "count": 37, "pooled": 4}},
    {"name": "alley", "kind": "categorical", "imputes": True,
     "levels": [{"level": "", "weight": 0.0, "count": 2732},
                {"level": "Grvl", "weight": -6400.0, "count": 120},
                {"level": "Pave", "weight": 2100.0, "count": 78}],
     "other": {"weight": 0.0, "count": 0, "pooled": 0}},
]

MODEL = {
    "name": "ames-fixture",
    "model_version": VERSION,
    "target": "price",
    "features": [f["name"] for f in SCHEMA],
    "schema": SCHEMA,
    "coefficients": {},
    "intercept": 23500.0,
    "target_scale": 79886.0,
    "metrics": {"train": {"rmse": 21000.0, "mae": 15000.0, "r2": 0.93, "rows": 2344},
                "holdout": {"rmse": 24000.0, "mae": 16500.0, "r2": 0.91, "rows": 586},
                "active_holdout": None},
    "manifest": {
        "id": VERSION, "created_at": "2026-01-01T00:00:00.000Z", "parent": None,
        "data": {"file": "ames.csv", "rows": 2930, "sha256": "ab" * 32, "source": "ames.csv"},
        "gate": {"reason": "no active model: the first model is promoted"},
        "loss_history": [0.5, 0.2, 0.1, 0.08],
        "holdout_sample": {"actual": [200000.0, 150000.0, 310000.0],
                           "predicted": [195000.0, 160000.0, 300000.0], "of_rows": 586},
    },
}


def create() -> Flask:
    """The app, with the two views replaced."""
    app = create_app()
    bodies = Path(os.environ["PAGE_FIXTURE_DIR"])

    def model_info() -> Response:
        return json_response(MODEL, headers={"X-Model-Version": VERSION})

    def predict() -> Response:
        body = request.get_data()
        count = len(list(bodies.glob("predict-*.json")))
        (bodies / f"predict-{count}.json").write_bytes(body)
        orjson.loads(body)  # a body that is not JSON fails the request, and so the test
        return json_response({"prediction": PREDICTION, "model_version": VERSION})

    app.view_functions["models.model_info"] = model_info
    app.view_functions["predict.predict"] = predict
    return app
