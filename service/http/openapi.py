"""The OpenAPI 3.0.3 document of the HTTP API, served at ``/openapi.json``.

Written by hand next to the handlers it describes and checked by tests with
openapi-spec-validator; accurate enough for a client generator and for schemathesis.
"""

from __future__ import annotations

import functools
from typing import Any

from .. import __version__
from ..params import TRAINING_PARAMS
from ..store import JobStatus
from ..store.ids import JOB_PATTERN, VERSION_PATTERN
from .openapi_protocols import protocol_paths, protocol_schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ref("Error"))}


_MODEL_HEADERS = {
    "X-Model-Version": {
        "description": "The model version that answered.",
        "schema": {"type": "string"},
    },
}

_CACHE_HEADERS = {
    "ETag": {
        "description": "The entity tag of this answer (for /model, the version id in quotes); "
        "send it back in If-None-Match to get 304 while it still holds.",
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "no-cache: a client may keep the answer but must revalidate it.",
        "schema": {"type": "string"},
    },
}

_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "An ETag this client holds: 304 with no body while it is still current.",
    "schema": {"type": "string"},
}

_NOT_MODIFIED = {
    "description": "Not modified: the If-None-Match tag is still current (no body).",
    "headers": _CACHE_HEADERS,
}

_AUTH_ERRORS = {
    "401": {
        "description": "Missing or wrong bearer token.",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        "content": _json(_ref("Error")),
    },
    "403": _error("Write endpoints are disabled: no SGDSERVE_API_TOKEN is configured."),
}


def _parameter_properties() -> dict[str, Any]:
    """The retrain parameters (service/params.py), typed as in a JSON body; forms and queries
    send the same names as text."""
    return {p.name: p.json_schema() for p in TRAINING_PARAMS if p.http}


def _form_properties() -> dict[str, Any]:
    """The same parameters as multipart form fields: text, except the file."""
    props: dict[str, Any] = {
        "file": {"type": "string", "format": "binary", "description": "The CSV data."},
    }
    for name, schema in _parameter_properties().items():
        props[name] = {"type": "string", "description": schema.get("description", name)}
    return props


def _query_parameters(wait_limit: float) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": "wait",
            "in": "query",
            "required": False,
            "description": "Seconds to wait for the job to finish; 200 with the result if it "
            "does, else 202.",
            "schema": {"type": "number", "minimum": 0, "maximum": wait_limit},
        }
    ]
    for name, schema in _parameter_properties().items():
        if name == "features":
            schema = {"type": "string", "minLength": 1,
                      "description": "Comma-separated column names, or a JSON list."}
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": "Training parameter (the usual place with a text/csv body; "
                "must not also be given in the body).",
                "schema": schema,
            }
        )
    return params


_VALUE_SCHEMAS: dict[str, dict[str, Any]] = {
    "numeric": {"type": "number", "nullable": True,
                "description": "A number; null is an empty value (the training mean)."},
    "boolean": {"oneOf": [{"type": "boolean", "nullable": True},
                          {"type": "number", "enum": [0, 1]},
                          {"type": "string", "description": "yes/no, true/false or y/n"}],
                "description": "true/false, 1/0 or a yes/no word; null is an empty value."},
    "categorical": {"type": "string", "nullable": True,
                    "description": "One of the feature's levels (GET /model); a level never "
                    "kept in training counts as 'other'; null is the empty level."},
}


def _feature_row(fields: tuple[tuple[str, str], ...] | None,
                 ignored: tuple[str, ...] = ()) -> dict[str, Any]:
    """One row of features: the served model's (name, kind) pairs when known, else any
    numbers by name."""
    row: dict[str, Any] = {
        "type": "object",
        "description": "Feature values by name: the active model's features (GET /model); "
        "its target and the columns it dropped in training are accepted and ignored.",
    }
    if fields:
        properties = {name: dict(_VALUE_SCHEMAS[kind]) for name, kind in fields}
        properties.update({name: {"description": "Ignored (the target, or a column the model "
                                  "dropped in training)."} for name in ignored})
        row.update(required=[name for name, _ in fields], properties=properties,
                   additionalProperties=False)
    else:
        row.update(
            minProperties=1,
            additionalProperties={"type": "number", "nullable": True},
            example={"sqft": 1500, "bedrooms": 3, "bathrooms": 2, "age_years": 20},
        )
    return row


# -- the production loop: intervals, explanations, ids, feedback, monitoring -------------------

_PREDICT_OPTIONS = {
    "interval": {"type": "number", "exclusiveMinimum": True, "minimum": 0,
                 "exclusiveMaximum": True, "maximum": 1, "example": 0.9,
                 "description": "Add a split conformal prediction interval per row at this "
                 "level (any level the version's holdout residuals support: up to n/(n+1))."},
    "explain": {"type": "boolean", "description": "Add each feature's contribution per row "
                "(they sum with base_value to the prediction)."},
}

_REQUEST_ID = {
    "name": "X-Request-Id", "in": "header", "required": False,
    "description": "The client's id for this request (1 to 200 visible ASCII characters): "
    "echoed, and written in the access log and the prediction log.",
    "schema": {"type": "string", "maxLength": 200},
}

_ID_HEADERS = {
    "X-Prediction-Id": {"description": "The prediction's id (a batch's: each row's id is "
                        "<this>.<row>).", "schema": {"type": "string"}},
    "X-Request-Id": {"description": "The client's X-Request-Id, else X-Prediction-Id.",
                     "schema": {"type": "string"}},
}

_NULLABLE_NUMBER = {"type": "number", "nullable": True}


def _loop_schemas(max_batch_rows: int) -> dict[str, Any]:
    item = {
        "type": "object",
        "required": ["actual"],
        "additionalProperties": False,
        "properties": {
            "prediction_id": {"type": "string", "description": "An id /predict answered."},
            "features": {"type": "object", "description": "A labelled row never predicted: "
                         "the served model's features, as /predict takes them."},
            "actual": {"type": "number", "description": "The value that really happened."},
        },
    }
    drift = {
        "type": "object",
        "properties": {
            "kind": {"type": "string"},
            "rows": {"type": "integer"},
            "psi": {**_NULLABLE_NUMBER, "description": "Population stability index against "
                    "the training deciles (numeric) or level frequencies (categorical); 0.1 "
                    "warn, 0.25 act."},
            "unseen_share": {**_NULLABLE_NUMBER, "description": "Levels never seen in "
                             "training; for numbers, values outside the training range."},
            "missing_share": _NULLABLE_NUMBER,
            "status": {"type": "string", "enum": ["ok", "warn", "act", "few_rows", "unknown"]},
        },
    }
    version = {
        "type": "object",
        "required": ["model_version", "rows_with_feedback", "live", "holdout",
                     "interval_coverage", "drift"],
        "properties": {
            "model_version": {"type": "string", "nullable": True},
            "predictions": {"type": "integer"},
            "rows_with_feedback": {"type": "integer"},
            "live": {"type": "object", "properties": {"rmse": _NULLABLE_NUMBER,
                                                      "mae": _NULLABLE_NUMBER}},
            "holdout": {"type": "object", "properties": {"rmse": _NULLABLE_NUMBER,
                                                         "mae": _NULLABLE_NUMBER}},
            "interval_coverage": {"type": "object", "properties": {
                "level": {"type": "number"}, "observed": _NULLABLE_NUMBER,
                "rows": {"type": "integer"}}},
            "drift": {"type": "object", "additionalProperties": _ref("FeatureDrift")},
            "alerts": {"type": "array", "items": {"type": "string"}},
        },
    }
    return {
        "Interval": {
            "type": "object",
            "required": ["lower", "upper", "level"],
            "properties": {"lower": {"type": "number"}, "upper": {"type": "number"},
                           "level": {"type": "number"}},
        },
        "Explanation": {
            "type": "object",
            "required": ["base_value", "contributions"],
            "properties": {
                "base_value": {"type": "number", "description": "The prediction for the "
                               "training means."},
                "contributions": {"type": "object", "additionalProperties": {"type": "number"},
                                  "description": "Per input feature, in target units (a "
                                  "categorical feature's is its level's)."},
                "scale": {"type": "string", "enum": ["log"], "description": "Present for a "
                          "model of log(target): the parts sum to log(prediction)."},
            },
        },
        "FeedbackItem": item,
        "Feedback": {
            "oneOf": [item, {
                "type": "object", "required": ["feedback"], "additionalProperties": False,
                "properties": {"feedback": {"type": "array", "minItems": 1,
                                            "maxItems": max_batch_rows, "items": item}}}],
        },
        "FeedbackAccepted": {
            "type": "object",
            "required": ["accepted", "unknown", "unknown_ids"],
            "properties": {
                "accepted": {"type": "integer"},
                "unknown": {"type": "integer", "description": "Ids this service never "
                            "issued (counted, not an error)."},
                "unknown_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 100},
                "unknown_ids_truncated": {"type": "boolean"},
                "labelled": {"type": "integer"},
            },
        },
        "FeatureDrift": drift,
        "VersionMonitoring": version,
        "Monitoring": {
            "allOf": [version, {"type": "object", "properties": {
                "window": {"type": "object"},
                "versions": {"type": "array", "items": _ref("VersionMonitoring")},
                "feedback": {"type": "object"},
                "logs": {"type": "object"},
                "generated_at": {"type": "string"}}}],
        },
    }


def _loop_paths(max_batch_rows: int) -> dict[str, Any]:
    def query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "description": description,
                "schema": schema}

    return {
        "/feedback": {
            "post": {
                "operationId": "feedback",
                "summary": "Record what really happened: actual values by prediction id, or "
                "labelled rows never predicted.",
                "security": [{"bearerAuth": []}],
                "requestBody": {"required": True, "content": _json(_ref("Feedback"))},
                "responses": {
                    "202": {"description": "Kept in this worker's feedback log; the last "
                            "value per id wins.", "content": _json(_ref("FeedbackAccepted"))},
                    "400": _error("A malformed item (the message names it), an empty list, or "
                                  f"more than {max_batch_rows} items."),
                    **_AUTH_ERRORS,
                    "413": _error("Body over SGDSERVE_MAX_BODY_BYTES."),
                    "415": _error("Content-Type is not application/json."),
                    "503": _error("The feedback could not be stored (nothing was accepted), "
                                  "or a labelled row came before any model."),
                },
            }
        },
        "/monitoring": {
            "get": {
                "operationId": "monitoring",
                "summary": "Live quality and drift from the prediction and feedback logs.",
                "parameters": [
                    query("window", "How far back (e.g. 24h, 7d, or all); default "
                          "SGDSERVE_MONITOR_WINDOW.", {"type": "string"}),
                    query("level", "The interval level whose coverage is checked; default "
                          "SGDSERVE_MONITOR_LEVEL.", {"type": "number"}),
                    query("refresh", "Join the logs now instead of reading a report younger "
                          "than SGDSERVE_MONITOR_REFRESH.", {"type": "boolean"}),
                ],
                "responses": {
                    "200": {"description": "The report (the active version at the top).",
                            "content": _json(_ref("Monitoring"))},
                    "400": _error("An unknown parameter or a bad window, level or refresh."),
                },
            }
        },
    }


@functools.lru_cache(maxsize=32)
def document(
    max_batch_rows: int = 10_000,
    wait_limit: float = 25.0,
    fields: tuple[tuple[str, str], ...] | None = None,
    ignored: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The OpenAPI document for the given limits and the served model's features, as
    (name, kind) pairs, and the keys a row may carry that it ignores.

    Cached per argument tuple; callers must not modify the result.
    """
    row = _feature_row(fields, ignored)
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "example": "invalid_features"},
                        "message": {
                            "type": "string",
                            "example": "instances[3]: feature 'sqft' is missing",
                        },
                        "job_id": {
                            "type": "string",
                            "description": "The running job (409 retrain_in_progress).",
                        },
                        "parameter": {
                            "type": "string",
                            "description": "The invalid parameter (400 invalid_parameter).",
                        },
                    },
                }
            },
        },
        "FeatureRow": row,
        "PredictOne": {
            "type": "object",
            "required": ["features"],
            "additionalProperties": False,
            "properties": {"features": _ref("FeatureRow"), **_PREDICT_OPTIONS},
        },
        "PredictBatch": {
            "type": "object",
            "required": ["instances"],
            "additionalProperties": False,
            "properties": {
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": max_batch_rows,
                    "items": _ref("FeatureRow"),
                },
                **_PREDICT_OPTIONS,
            },
        },
        "Prediction": {
            "type": "object",
            "required": ["prediction", "prediction_id", "model_version"],
            "properties": {
                "prediction": {"type": "number"},
                "prediction_id": {"type": "string", "description": "Send it to /feedback "
                                  "with the actual value, once known."},
                "model_version": {"type": "string"},
                "interval": _ref("Interval"),
                "explanation": _ref("Explanation"),
            },
        },
        "Predictions": {
            "type": "object",
            "required": ["predictions", "prediction_ids", "model_version"],
            "properties": {
                "predictions": {"type": "array", "items": {"type": "number"}},
                "prediction_ids": {"type": "array", "items": {"type": "string"},
                                   "description": "One per row: <batch id>.<row>."},
                "model_version": {"type": "string"},
                "intervals": {"type": "array", "items": _ref("Interval")},
                "explanations": {"type": "array", "items": _ref("Explanation")},
            },
        },
        **_loop_schemas(max_batch_rows),
        "RetrainRows": {
            "type": "object",
            "required": ["rows"],
            "properties": {
                "rows": {
                    "type": "array",
                    "minItems": 1,
                    "description": "Training rows; every row has the same columns.",
                    "items": {
                        "type": "object",
                        "minProperties": 1,
                        "additionalProperties": {
                            "oneOf": [{"type": "number"}, {"type": "string"},
                                      {"type": "boolean"}],
                        },
                    },
                },
                **_parameter_properties(),
            },
            "additionalProperties": False,
        },
        "RetrainForm": {
            "type": "object",
            "required": ["file"],
            "properties": _form_properties(),
            "additionalProperties": False,
        },
        "RetrainAccepted": {
            "type": "object",
            "required": ["job_id", "status", "status_url"],
            "properties": {
                "job_id": {"type": "string", "pattern": JOB_PATTERN},
                "status": {"type": "string", "enum": [JobStatus.QUEUED.value]},
                "status_url": {"type": "string"},
                "notes": {"type": "array", "items": {"type": "string"},
                          "description": "E.g. an old spelling of a parameter that was read."},
            },
        },
        "Metrics": {
            "type": "object",
            "description": "Model quality; train and holdout each have rmse, mae and r2.",
            "additionalProperties": True,
        },
        "RetrainJob": {
            "type": "object",
            "required": ["job_id", "status", "status_url"],
            "properties": {
                "job_id": {"type": "string", "pattern": JOB_PATTERN},
                "status": {
                    "type": "string",
                    "enum": [status.value for status in JobStatus],
                },
                "status_url": {"type": "string"},
                "version": {"type": "string", "nullable": True,
                            "description": "The candidate version trained by the job."},
                "promoted": {"type": "boolean"},
                "reason": {"type": "string", "nullable": True},
                "metrics": {"allOf": [_ref("Metrics")], "nullable": True},
                "request": {"type": "object", "description": "The validated parameters."},
                "superseded_by": {
                    "type": "string", "nullable": True,
                    "description": "A promoted job whose version is no longer active: the "
                    "version active now."},
                "created_at": {"type": "string"},
                "started_at": {"type": "string"},
                "finished_at": {"type": "string"},
                "updated_at": {"type": "string"},
            },
        },
        "Model": {
            "type": "object",
            "required": [
                "model_version", "target", "features", "coefficients", "intercept", "manifest",
            ],
            "properties": {
                "model_version": {"type": "string"},
                "target": {"type": "string"},
                "features": {"type": "array", "items": {"type": "string"}},
                "name": {"type": "string", "description": "The model's name "
                         "(SGDSERVE_MODEL_NAME)."},
                "schema": {
                    "type": "array",
                    "description": "Each input feature, in input order: name, kind, and what "
                    "the model learned of it (training mean, slope in original units, and the "
                    "standardised weight: the slope times the feature's standard deviation "
                    "over the target's, comparable across features).",
                    "items": {"type": "object", "required": ["name", "kind"],
                              "properties": {"name": {"type": "string"},
                                             "kind": {"type": "string"},
                                             "mean": {"type": "number"},
                                             "coefficient": {"type": "number"},
                                             "standardized": {"type": "number"}}},
                },
                "target_scale": {"type": "number", "description": "The target's standard "
                                 "deviation in training."},
                "coefficients": {
                    "type": "object",
                    "description": "Slope per feature, in target units per feature unit.",
                    "additionalProperties": {"type": "number"},
                },
                "intercept": {"type": "number"},
                "metrics": {"allOf": [_ref("Metrics")], "nullable": True},
                "manifest": {"type": "object", "description": "The version's manifest.json."},
            },
        },
        "ModelSummary": {
            "type": "object",
            "required": ["id", "active"],
            "properties": {
                "id": {"type": "string"},
                "active": {"type": "boolean"},
                "created_at": {"type": "string"},
                "status": {"type": "string"},
                "parent": {"type": "string", "nullable": True},
                "target": {"type": "string"},
                "features": {"type": "array", "items": {"type": "string"}},
                "metrics": {"allOf": [_ref("Metrics")], "nullable": True},
                "gate": {"type": "object", "description": "The promotion gate's decision: "
                         "reason, compared_with, tolerance, forced."},
                "error": {"type": "string", "description": "Why a corrupt version is unreadable."},
            },
        },
        "ModelList": {
            "type": "object",
            "required": ["active", "models"],
            "properties": {
                "active": {"type": "string", "nullable": True},
                "models": {"type": "array", "items": _ref("ModelSummary")},
                "current_error": {"type": "string",
                                  "description": "Why CURRENT cannot be read (none is active)."},
            },
        },
        "Promotion": {
            "type": "object",
            "required": ["time", "version", "previous"],
            "properties": {
                "time": {"type": "string", "description": "When it became active (UTC)."},
                "version": {"type": "string"},
                "previous": {"type": "string", "nullable": True,
                             "description": "The version it replaced."},
            },
        },
        "PromotionHistory": {
            "type": "object",
            "required": ["history"],
            "properties": {"history": {"type": "array", "items": _ref("Promotion"),
                                       "description": "Oldest first."}},
        },
        "Activated": {
            "type": "object",
            "required": ["active", "previous", "model_version"],
            "properties": {
                "active": {"type": "string"},
                "previous": {"type": "string", "nullable": True},
                "model_version": {"type": "string", "nullable": True},
            },
        },
    }

    paths: dict[str, Any] = {
        "/predict": {
            "post": {
                "operationId": "predict",
                "summary": "Predict one row or a batch of rows (with intervals and "
                "explanations when asked).",
                "parameters": [_REQUEST_ID],
                "requestBody": {
                    "required": True,
                    "content": _json({"oneOf": [_ref("PredictOne"), _ref("PredictBatch")]}),
                },
                "responses": {
                    "200": {
                        "description": "Predictions by the active model.",
                        "headers": {**_MODEL_HEADERS, **_ID_HEADERS},
                        "content": _json(
                            {"oneOf": [_ref("Prediction"), _ref("Predictions")]}
                        ),
                    },
                    "400": _error("Malformed JSON, a missing, unknown, non-numeric or "
                                  "non-finite feature (the message names row and field), an "
                                  "empty batch, more rows than SGDSERVE_MAX_BATCH_ROWS, an "
                                  "interval level the calibration residuals cannot support "
                                  "(invalid_interval), or a bad X-Request-Id."),
                    "413": _error("Body over SGDSERVE_MAX_BODY_BYTES."),
                    "415": _error("Content-Type is not application/json."),
                    "503": _error("No model has been trained yet."),
                },
            }
        },
        "/retrain": {
            "post": {
                "operationId": "retrain",
                "summary": "Train a new version in a background process; promote it if good.",
                "security": [{"bearerAuth": []}],
                "parameters": _query_parameters(wait_limit),
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": _ref("RetrainForm"),
                            "encoding": {"file": {"contentType": "text/csv"}},
                        },
                        "text/csv": {"schema": {"type": "string"}},
                        "application/json": {"schema": _ref("RetrainRows")},
                    },
                },
                "responses": {
                    "200": {
                        "description": "The job finished within ?wait seconds.",
                        "content": _json(_ref("RetrainJob")),
                    },
                    "202": {
                        "description": "The job was started.",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": _json(_ref("RetrainAccepted")),
                        "links": {
                            "GetRetrainJob": {
                                "operationId": "getRetrainJob",
                                "parameters": {"job_id": "$response.body#/job_id"},
                            }
                        },
                    },
                    "400": _error("Invalid parameter or data (names the parameter)."),
                    **_AUTH_ERRORS,
                    "409": _error("A retrain is running (names the job)."),
                    "413": _error("Upload over SGDSERVE_MAX_UPLOAD_BYTES (JSON rows: over "
                                  "SGDSERVE_MAX_BODY_BYTES)."),
                    "415": _error("Unsupported Content-Type."),
                    "503": _error("The training process could not be started."),
                },
            }
        },
        "/retrain/{job_id}": {
            "get": {
                "operationId": "getRetrainJob",
                "summary": "A retrain job's status, metrics and reason.",
                "parameters": [
                    {
                        "name": "job_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": JOB_PATTERN},
                    }
                ],
                "responses": {
                    "200": {"description": "The job.", "content": _json(_ref("RetrainJob"))},
                    "404": _error("No such job."),
                },
            }
        },
        "/model": {
            "get": {
                "operationId": "getModel",
                "summary": "The active model: manifest, features, coefficients, metrics.",
                "parameters": [_IF_NONE_MATCH],
                "responses": {
                    "200": {
                        "description": "The model this worker serves.",
                        "headers": dict(_MODEL_HEADERS, **_CACHE_HEADERS),
                        "content": _json(_ref("Model")),
                    },
                    "304": _NOT_MODIFIED,
                    "503": _error("No model has been trained yet."),
                },
            }
        },
        "/models": {
            "get": {
                "operationId": "listModels",
                "summary": "Every stored version, marking the active one.",
                "parameters": [_IF_NONE_MATCH],
                "responses": {
                    "200": {"description": "The versions.", "headers": _CACHE_HEADERS,
                            "content": _json(_ref("ModelList"))},
                    "304": _NOT_MODIFIED,
                },
            }
        },
        "/models/history": {
            "get": {
                "operationId": "modelHistory",
                "summary": "Every promotion and rollback: which version was live when.",
                "parameters": [_IF_NONE_MATCH],
                "responses": {
                    "200": {"description": "The promotions, oldest first.",
                            "headers": _CACHE_HEADERS,
                            "content": _json(_ref("PromotionHistory"))},
                    "304": _NOT_MODIFIED,
                },
            }
        },
        "/": {
            "get": {
                "operationId": "page",
                "summary": "The browser page: model card, plots, versions with rollback, a "
                "prediction form, retraining. It reads the JSON endpoints above.",
                "responses": {
                    "200": {"description": "HTML (with a strict Content-Security-Policy).",
                            "content": {"text/html": {"schema": {"type": "string"}}}},
                    "304": _NOT_MODIFIED,
                },
            }
        },
        "/static/{name}": {
            "get": {
                "operationId": "pageAsset",
                "summary": "The page's script, style sheet and icon; cached for a year when "
                "the URL's ?v= matches the file's digest (the page's links do).",
                "parameters": [
                    {"name": "name", "in": "path", "required": True,
                     "schema": {"type": "string"}},
                    {"name": "v", "in": "query", "required": False,
                     "schema": {"type": "string"}, "description": "The file's digest."},
                ],
                "responses": {
                    "200": {"description": "The file.",
                            "content": {"text/javascript": {"schema": {"type": "string"}},
                                        "text/css": {"schema": {"type": "string"}},
                                        "image/svg+xml": {"schema": {"type": "string"}}}},
                    "304": _NOT_MODIFIED,
                    "404": _error("No such file."),
                },
            }
        },
        "/models/{version_id}/activate": {
            "post": {
                "operationId": "activateModel",
                "summary": "Make a stored version active (rollback).",
                "security": [{"bearerAuth": []}],
                "parameters": [
                    {
                        "name": "version_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": VERSION_PATTERN},
                    },
                    {
                        "name": "If-Match",
                        "in": "header",
                        "required": False,
                        "description": "Activate only if this version (bare or quoted) is still "
                        "the active one; * or no header: no condition.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "Activated; every worker serves it within a second.",
                        "headers": _MODEL_HEADERS,
                        "content": _json(_ref("Activated")),
                    },
                    **_AUTH_ERRORS,
                    "400": _error("If-Match is not a version id."),
                    "404": _error("No such version."),
                    "409": _error("The store is locked by a training run, or If-Match names a "
                                  "version that is no longer active (code current_changed, "
                                  "with the active version in 'current')."),
                    "422": _error("The version fails its integrity check (integrity_error), or "
                                  "it has no valid signature while SGDSERVE_SIGNING_KEY is set "
                                  "(signature_error)."),
                    "503": _error("The object store cannot be reached (store_unavailable)."),
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: the process answers.",
                "responses": {
                    "200": {
                        "description": "Alive.",
                        "content": _json(
                            {"type": "object", "required": ["status"],
                             "properties": {"status": {"type": "string", "enum": ["ok"]}}}
                        ),
                    }
                },
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: a model is loaded and a smoke prediction is finite.",
                "responses": {
                    "200": {
                        "description": "Ready.",
                        "headers": _MODEL_HEADERS,
                        "content": _json(
                            {
                                "type": "object",
                                "required": ["status", "model_version"],
                                "properties": {
                                    "status": {"type": "string", "enum": ["ready"]},
                                    "store_error": {
                                        "type": "string",
                                        "description": "A problem with the store found since "
                                        "this worker loaded its model (it still serves)."},
                                    "model_version": {"type": "string"},
                                },
                            }
                        ),
                    },
                    "503": _error("Not ready, with the reason."),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics summed over all workers.",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {
                    "200": {"description": "OpenAPI 3.0.3.",
                            "content": _json({"type": "object"})}
                },
            }
        },
    }
    paths.update(_loop_paths(max_batch_rows))
    schemas.update(protocol_schemas(max_batch_rows))
    paths.update(protocol_paths())
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "sgdserve",
            "version": __version__,
            "description": "Linear-regression models trained by SGD, served over HTTP, also "
            "through the Open Inference Protocol (/v2), KServe V1 (/v1) and MLflow's scoring "
            "protocol (/invocations). Every error is {\"error\": {\"code\", \"message\"}}, "
            "except under /v2 and /v1, where it is the protocols' {\"error\": message, "
            "\"code\": code}, and on MLflow's routes, which add MLflow's error_code and "
            "message.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The value of SGDSERVE_API_TOKEN.",
                }
            },
        },
    }
