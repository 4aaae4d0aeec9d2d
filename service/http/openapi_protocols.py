"""The compatibility protocols' part of the OpenAPI document: the Open Inference Protocol
(``/v2``, with the binary tensor data extension), KServe V1 and MLflow's scoring protocol.

Built by :func:`service.http.openapi.document`; the extension routes sgdserve does not implement
come from :data:`service.http.v2.UNSUPPORTED`, the datatypes from the codecs.
"""

from __future__ import annotations

from typing import Any

from .codecs.mlflow import FORMATS
from .codecs.oip_binary import HEADER
from .codecs.tensors import DATATYPES
from .v2 import UNSUPPORTED, VERSION_ALIASES

__all__ = ["protocol_paths", "protocol_schemas"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _v2_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ref("V2Error"))}


def _mlflow_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ref("MLflowError"))}


_MODEL_HEADERS = {
    "X-Model-Version": {
        "description": "The model version that answered.",
        "schema": {"type": "string"},
    },
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "The model name (SGDSERVE_MODEL_NAME, default house-price)."}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "The version served: its id, its number among the stored versions "
            "(1 is the oldest, as GET /models lists them), or "
            f"{' or '.join(VERSION_ALIASES)}. Any other version is a 404."}
_ANY = {"name": "region", "in": "path", "required": True, "schema": {"type": "string"}}
_CONTENT_ENCODING = {
    "name": "Content-Encoding", "in": "header", "required": False,
    "schema": {"type": "string", "enum": ["gzip", "deflate", "identity"]},
    "description": "A compressed body; SGDSERVE_MAX_BODY_BYTES applies to it decompressed too.",
}


# /v2's outputs: predict, each row's id, and when asked the interval and the contributions.
_OUTPUTS = ("predict", "prediction_id", "interval_lower", "interval_upper", "contributions")


def protocol_schemas(max_batch_rows: int) -> dict[str, Any]:
    """The payloads of the compatibility protocols, as sgdserve accepts and answers them."""
    tensor_meta = {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                       "shape": {"type": "array", "items": {"type": "integer"}}},
    }
    row_value = {"oneOf": [{"type": "number"}, {"type": "string", "nullable": True}],
                 "description": "A number for a numeric feature (a string, or null for missing, "
                 "for a categorical one)."}
    rows = {"type": "array", "minItems": 1, "maxItems": max_batch_rows, "items": {"oneOf": [
        {"type": "array", "items": row_value,
         "description": "Values in the model's feature order (GET /v2/models/<name>)."},
        {"type": "object", "additionalProperties": row_value,
         "description": "Values by feature name."}]}}
    columns = {"type": "object", "additionalProperties": {"type": "array", "items": row_value},
               "description": "A list of values per feature, by name."}
    return {
        "V2Error": {
            "type": "object",
            "required": ["error"],
            "description": "The error object of the Open Inference Protocol (and KServe V1); "
            "'code' is sgdserve's stable code.",
            "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
        },
        "V2ServerMetadata": {
            "type": "object",
            "required": ["name", "version", "extensions"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                           "extensions": {"type": "array", "items": {"type": "string"}}},
        },
        "V2TensorMetadata": tensor_meta,
        "V2ModelMetadata": {
            "type": "object",
            "required": ["name", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": _ref("V2TensorMetadata"),
                           "description": "One per feature, in the model's order; datatype "
                           "FP64 for a numeric feature, BYTES for a categorical one."},
                "outputs": {"type": "array", "items": _ref("V2TensorMetadata")},
            },
        },
        "V2Ready": {
            "type": "object",
            "required": ["ready"],
            "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"},
                           "error": {"type": "string", "description": "Why not ready."}},
        },
        "V2TensorData": {
            "type": "array",
            "description": "Row-major values: flat, or nested lists as the shape. Numbers for "
            "the numeric datatypes, strings for BYTES, booleans for BOOL.",
            "items": {"oneOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"},
                                _ref("V2TensorData")]},
        },
        "V2RequestInput": {
            "type": "object",
            "required": ["name", "shape", "datatype"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "description": "A feature's name (shape [n] or "
                         "[n, 1]), or any name for one [n, d] input of every feature."},
                "shape": {"type": "array", "minItems": 1, "maxItems": 2,
                          "items": {"type": "integer", "minimum": 0}},
                "datatype": {"type": "string", "enum": sorted(DATATYPES),
                             "description": "A numeric input takes any numeric datatype (read "
                             "as float64), a categorical one BYTES; BOOL is for neither."},
                "parameters": {
                    "type": "object",
                    "properties": {"binary_data_size": {
                        "type": "integer", "minimum": 0,
                        "description": "Binary tensor data: the input's bytes after the JSON "
                        "header, instead of 'data'."}},
                },
                "data": _ref("V2TensorData"),
            },
        },
        "V2InferenceRequest": {
            "type": "object",
            "required": ["inputs"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "description": "Echoed in the response."},
                "model_name": {"type": "string", "description": "If given, the path's name."},
                "model_version": {"type": "string",
                                  "description": "If given, the version served."},
                "parameters": {
                    "type": "object",
                    "description": "Accepted and ignored, but for binary_data_output, "
                    "interval and explain.",
                    "properties": {"binary_data_output": {
                        "type": "boolean",
                        "description": "Answer outputs not asked otherwise as binary data."},
                        "interval": {"type": "number", "description": "Add interval_lower and "
                                     "interval_upper: a split conformal interval at this level "
                                     "in (0, 1)."},
                        "explain": {"type": "boolean", "description": "Add contributions "
                                    "[n, d]: each feature's part of each prediction."}},
                },
                "inputs": {"type": "array", "minItems": 1,
                           "items": _ref("V2RequestInput")},
                "outputs": {
                    "type": "array",
                    "items": {"type": "object", "required": ["name"],
                              "additionalProperties": False,
                              "properties": {
                                  "name": {"type": "string", "enum": list(_OUTPUTS)},
                                  "parameters": {"type": "object", "properties": {
                                      "binary_data": {"type": "boolean"}}}}},
                },
            },
            "description": f"At most {max_batch_rows} rows (SGDSERVE_MAX_BATCH_ROWS).",
        },
        "V2InferenceResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "shape", "datatype"],
                        "properties": {
                            "name": {"type": "string", "enum": list(_OUTPUTS)},
                            "shape": {"type": "array", "items": {"type": "integer"}},
                            "datatype": {"type": "string", "enum": ["FP64", "BYTES"]},
                            "data": {"type": "array", "items": {
                                "oneOf": [{"type": "number"}, {"type": "string"}]},
                                "description": "prediction_id is BYTES (strings); the "
                                "others FP64."},
                            "parameters": {"type": "object", "properties": {
                                "binary_data_size": {"type": "integer"}}},
                        },
                    },
                },
            },
        },
        "V1PredictRequest": {
            "type": "object",
            "description": "'instances' (or 'inputs'), a list of rows.",
            "properties": {"instances": rows, "inputs": rows},
            "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
        },
        "Predictions": {
            "type": "object",
            "required": ["predictions", "model_version"],
            "properties": {"predictions": {"type": "array", "items": {"type": "number"}},
                           "model_version": {"type": "string"}},
        },
        "MLflowRequest": {
            "type": "object",
            "description": "Exactly one of " + ", ".join(FORMATS) + "; 'params' is accepted "
            "and ignored, other keys are ignored (as MLflow does).",
            "properties": {
                "dataframe_split": {
                    "type": "object", "required": ["data"],
                    "properties": {
                        "columns": {"type": "array", "items": {"type": "string"}},
                        "data": {"type": "array", "items": {"type": "array",
                                                             "items": row_value}},
                        "index": {"type": "array"}},
                },
                "dataframe_records": {"type": "array",
                                      "items": {"type": "object",
                                                "additionalProperties": row_value}},
                "instances": {"oneOf": [rows, columns]},
                "inputs": {"oneOf": [rows, columns]},
                "params": {"type": "object"},
            },
        },
        "MLflowError": {
            "type": "object",
            "required": ["error", "error_code", "message"],
            "description": "sgdserve's error object, with MLflow's error_code and message "
            "beside it.",
            "properties": {
                "error": {"type": "object", "required": ["code", "message"],
                          "properties": {"code": {"type": "string"},
                                         "message": {"type": "string"}}},
                "error_code": {"type": "string", "example": "BAD_REQUEST"},
                "message": {"type": "string"},
            },
        },
    }


def _op(operation_id: str, spec: dict[str, Any], *params: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec, operationId=operation_id)
    if params:
        out["parameters"] = list(params)
    return out


def _v2_paths() -> dict[str, Any]:
    """The Open Inference Protocol (v2) REST paths."""
    metadata = {
        "summary": "Open Inference Protocol: server metadata (the extensions supported).",
        "responses": {"200": {"description": "Name, version, extensions.",
                              "content": _json(_ref("V2ServerMetadata"))}},
    }
    ready_responses = {
        "200": {"description": "Ready.", "content": _json(_ref("V2Ready"))},
        "503": {"description": "Not ready, with the reason.",
                "content": _json(_ref("V2Ready"))},
    }
    model_ready = {
        "summary": "Open Inference Protocol: the model is loaded and a smoke prediction is "
        "finite.",
        "responses": dict(ready_responses, **{
            "404": _v2_error("Unknown model name, or a version that is not the active one."),
        }),
    }
    model_metadata = {
        "summary": "Open Inference Protocol: the model's inputs (one per feature) and output.",
        "responses": {
            "200": {"description": "Metadata.", "headers": _MODEL_HEADERS,
                    "content": _json(_ref("V2ModelMetadata"))},
            "404": _v2_error("Unknown model name, or a version that is not the active one."),
            "503": _v2_error("No model has been trained yet."),
        },
    }
    ihcl = {"description": "With binary outputs: the length of the JSON header.",
            "schema": {"type": "integer"}}
    infer = {
        "summary": "Open Inference Protocol: predict from tensors (one input per feature, or "
        "one [n, d] input), as JSON or with the binary tensor data extension.",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("V2InferenceRequest")},
            "application/octet-stream": {"schema": {
                "type": "string", "format": "binary",
                "description": f"The binary tensor data extension: {HEADER} bytes of JSON "
                "(a V2InferenceRequest whose binary inputs give parameters.binary_data_size), "
                "then each binary input's raw bytes in input order: little-endian values, or "
                "for BYTES a 4-byte little-endian length before each element. Also sent with "
                "no Content-Type (Triton's client) or as JSON; the body decides."}}}},
        "responses": {
            "200": {"description": "One output, 'predict', shape [n], FP64: as JSON, or as "
                    "binary data when the request asks (an output's binary_data, else "
                    "binary_data_output).",
                    "headers": dict(_MODEL_HEADERS, **{HEADER: ihcl}),
                    "content": {
                        "application/json": {"schema": _ref("V2InferenceResponse")},
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}}}},
            "400": _v2_error("Malformed JSON or binary data (sizes that disagree with the "
                             "shape, the header or the body), a missing, unknown or misshapen "
                             "input, a datatype the input does not take (BYTES for a numeric "
                             "feature), a bad value, an empty batch, or more rows than "
                             "SGDSERVE_MAX_BATCH_ROWS."),
            "404": _v2_error("Unknown model name, or a version that is not the active one."),
            "413": _v2_error("Body over SGDSERVE_MAX_BODY_BYTES, compressed or decompressed."),
            "415": _v2_error("A Content-Type other than none, JSON or "
                             "application/octet-stream; a Content-Encoding other than gzip "
                             "or deflate."),
            "503": _v2_error("No model has been trained yet."),
        },
    }
    head = {"name": HEADER, "in": "header", "required": False, "schema": {"type": "integer"},
            "description": "The binary tensor data extension: the JSON part's length."}
    paths: dict[str, Any] = {
        "/v2": {"get": _op("v2_server_metadata", metadata)},
        "/v2/": {"get": _op("v2_server_metadata_slash", metadata)},
        "/v2/health/live": {"get": _op("v2_server_live", {
            "summary": "Open Inference Protocol: liveness.",
            "responses": {"200": {"description": "Alive.", "content": _json(
                {"type": "object", "required": ["live"],
                 "properties": {"live": {"type": "boolean"}}})}},
        })},
        "/v2/health/ready": {"get": _op("v2_server_ready", {
            "summary": "Open Inference Protocol: readiness of the server (its one model).",
            "responses": ready_responses,
        })},
        "/v2/models/{name}": {"get": _op("v2_model_metadata", model_metadata, _NAME)},
        "/v2/models/{name}/versions/{version}": {
            "get": _op("v2_model_version_metadata", model_metadata, _NAME, _VERSION)},
        "/v2/models/{name}/ready": {"get": _op("v2_model_ready", model_ready, _NAME)},
        "/v2/models/{name}/versions/{version}/ready": {
            "get": _op("v2_model_version_ready", model_ready, _NAME, _VERSION)},
        "/v2/models/{name}/infer": {
            "post": _op("v2_infer", infer, _NAME, head, _CONTENT_ENCODING)},
        "/v2/models/{name}/versions/{version}/infer": {
            "post": _op("v2_infer_version", infer, _NAME, _VERSION, head, _CONTENT_ENCODING)},
    }
    for extension, method, rules in UNSUPPORTED:
        for rule in rules:
            path = "/v2" + rule.replace("<", "{").replace(">", "}")
            params = [p for p in (_NAME, _VERSION, _ANY) if "{" + p["name"] + "}" in path]
            operation_id = "v2_unsupported_" + method.lower() + path.replace("/", "_").replace(
                "{", "").replace("}", "")
            paths.setdefault(path, {})[method.lower()] = _op(operation_id, {
                "summary": f"Not supported: the {extension} extension (answers 501, saying so).",
                "responses": {"501": _v2_error("The extension is not supported.")},
            }, *params)
    return paths


def _v1_paths() -> dict[str, Any]:
    """KServe V1."""
    ready = {"type": "object", "required": ["name", "ready"],
             "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"},
                            "error": {"type": "string"}}}
    return {
        "/": {"get": _op("v1_live", {
            "summary": "KServe V1: liveness (what KServe's client's is_server_live reads).",
            "responses": {"200": {"description": "Alive.", "content": _json(
                {"type": "object", "required": ["status"],
                 "properties": {"status": {"type": "string", "enum": ["alive"]}}})}},
        })},
        "/v1/models": {"get": _op("v1_models", {
            "summary": "KServe V1: the models served (one).",
            "responses": {"200": {"description": "Names.", "content": _json(
                {"type": "object", "required": ["models"],
                 "properties": {"models": {"type": "array", "items": {"type": "string"}}}})}},
        })},
        "/v1/models/{name}": {"get": _op("v1_model_ready", {
            "summary": "KServe V1: whether the model is ready.",
            "responses": {"200": {"description": "Ready.", "content": _json(ready)},
                          "503": {"description": "Not ready.", "content": _json(ready)},
                          "404": _v2_error("Unknown model name.")},
        }, _NAME)},
        "/v1/models/{name}:predict": {"post": _op("v1_predict", {
            "summary": "KServe V1: predict rows (lists in the feature order, or objects).",
            "requestBody": {"required": True,
                            "content": _json(_ref("V1PredictRequest"))},
            "responses": {
                "200": {"description": "One prediction per instance.",
                        "headers": _MODEL_HEADERS, "content": _json(_ref("Predictions"))},
                "400": _v2_error("Malformed JSON, a row of the wrong length, a missing, "
                                 "unknown or non-numeric feature (the message names row and "
                                 "field), an empty batch or too many rows."),
                "404": _v2_error("Unknown model name."),
                "413": _v2_error("Body over SGDSERVE_MAX_BODY_BYTES."),
                "415": _v2_error("Content-Type is not application/json (or none)."),
                "503": _v2_error("No model has been trained yet."),
            },
        }, _NAME, _CONTENT_ENCODING)},
        "/v1/models/{name}:explain": {"post": _op("v1_explain", {
            "summary": "KServe V1 explanations: not supported (answers 501).",
            "responses": {"501": _v2_error("Not supported.")},
        }, _NAME)},
    }


def _mlflow_paths() -> dict[str, Any]:
    """MLflow's scoring protocol."""
    return {
        "/invocations": {"post": _op("mlflow_invocations", {
            "summary": "MLflow scoring: predict a JSON frame or CSV rows.",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("MLflowRequest")},
                "text/csv": {"schema": {
                    "type": "string",
                    "description": "A header naming the features, then one row per line. Sent "
                    "with no Content-Type, a body is JSON if it starts with { or [, else "
                    "CSV."}}}},
            "responses": {
                "200": {"description": "One prediction per row.", "headers": _MODEL_HEADERS,
                        "content": _json(_ref("Predictions"))},
                "400": _mlflow_error("Not one of MLflow's formats (MLflow's message), or a "
                                     "missing, unknown or bad feature value (named)."),
                "413": _mlflow_error("Body over SGDSERVE_MAX_BODY_BYTES."),
                "415": _mlflow_error("A Content-Type other than application/json or "
                                     "text/csv, or a parameter but charset=utf-8."),
                "503": _mlflow_error("No model has been trained yet."),
            },
        }, _CONTENT_ENCODING)},
        "/ping": {"get": _op("mlflow_ping", {
            "summary": "MLflow (and SageMaker) health check: 200 once a model is ready.",
            "responses": {
                "200": {"description": "Ready.", "headers": _MODEL_HEADERS, "content": _json(
                    {"type": "object", "required": ["status", "model_version"],
                     "properties": {"status": {"type": "string", "enum": ["ready"]},
                                    "model_version": {"type": "string"}}})},
                "503": _mlflow_error("Not ready, with the reason."),
            },
        })},
        "/version": {"get": _op("mlflow_version", {
            "summary": "The server's version, as bare text (as MLflow answers).",
            "responses": {"200": {"description": "The version.",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        })},
    }


def protocol_paths() -> dict[str, Any]:
    """Every path of the compatibility protocols."""
    return {**_v2_paths(), **_v1_paths(), **_mlflow_paths()}
