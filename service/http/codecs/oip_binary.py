"""The Open Inference Protocol's binary tensor data extension (``binary_tensor_data``).

A request with binary tensors says how long its JSON part is in the
``Inference-Header-Content-Length`` header; the body is that JSON (:mod:`.oip_json`) followed
by each binary input's raw bytes, in input order, with no padding: ``binary_data_size`` bytes
each, little-endian for the fixed-size datatypes, and for ``BYTES`` a 4-byte little-endian
length before each element's bytes (:mod:`.tensors` reads them). A compressed body is
decompressed first: the header's length counts the decompressed bytes.

The response is binary when the request asks (an output's ``parameters.binary_data``, else the
request's ``parameters.binary_data_output``, which Triton's client sets whenever no output is
named): the JSON header names each binary output's ``binary_data_size`` and the raw float64
values follow it. Clients read such a body only with ``Inference-Header-Content-Length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from ..errors import APIError

__all__ = ["HEADER", "WSGI_HEADER", "encode", "split"]

HEADER = "Inference-Header-Content-Length"
WSGI_HEADER = "HTTP_INFERENCE_HEADER_CONTENT_LENGTH"


def split(data: bytes, header_length: str) -> tuple[memoryview, memoryview]:
    """The JSON header and the binary part of a body whose JSON is ``header_length`` bytes."""
    text = header_length.strip()
    if not text.isdigit() or len(text) > 12:  # 12 digits: more than any body limit
        raise APIError(f"{HEADER} must be the byte length of the JSON header, got "
                       f"{header_length[:30]!r}", code="invalid_input")
    n = int(text)
    if not 0 < n <= len(data):
        raise APIError(f"{HEADER} is {n}, but the body (decompressed) has {len(data)} bytes; "
                       "it must be the length of the JSON part in front of the binary data",
                       code="invalid_input")
    view = memoryview(data)
    return view[:n], view[n:]


def encode(body: dict[str, Any], outputs: list[tuple[str, np.ndarray, bool]],
           json_outputs: Sequence[dict[str, Any]] = ()) -> tuple[bytes, dict[str, str]]:
    """The response: ``body`` with its ``outputs`` (name, float64 values, binary?), as JSON
    or as the extension's JSON header and raw bytes, then ``json_outputs`` (whole tensors,
    always JSON data); and the headers that go with it."""
    tensors = []
    raw = []
    for name, values, binary in outputs:
        tensor: dict[str, Any] = {"name": name, "shape": [len(values)], "datatype": "FP64"}
        if binary:
            data = np.ascontiguousarray(values, dtype="<f8").tobytes()
            tensor["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            tensor["data"] = values
        tensors.append(tensor)
    tensors.extend(json_outputs)
    body["outputs"] = tensors
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not raw:
        return header, {"Content-Type": "application/json"}
    return b"".join([header, *raw]), {"Content-Type": "application/octet-stream",
                                      HEADER: str(len(header))}
