"""The HTTP service: the Flask app factory, blueprints, body decoding, errors, reload, metrics.

    app.py       create_app: settings, per-process state, blueprints, one JSON error shape
    state.py     ServiceState: the store, the model holder and the metrics of one process
    predict.py   POST /predict                     rows.py    typed decoding of its bodies
    retrain.py   POST /retrain, GET /retrain/<id>  auth.py    the bearer token
    models.py    /model, /models, activation       body.py    reading bodies
    ops.py       /health, /ready, /metrics, /openapi.json
    v2.py        the Open Inference Protocol
    reload.py    ModelHolder: a worker's model, re-checked against CURRENT
    metrics.py   Prometheus, summed over workers   openapi.py the OpenAPI document
    errors.py    APIError and the error handlers

Run it with ``gunicorn 'service.http:create_app()'`` or ``sgdserve serve``.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
