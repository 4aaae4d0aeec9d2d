"""Open Inference Protocol tensors, from JSON or binary, to the model's columns.

An inference request carries its inputs as tensors (name, shape, datatype, values). Either wire
form, JSON ``data`` (:mod:`.oip_json`) or raw little-endian bytes (:mod:`.oip_binary`), becomes
a :class:`Tensor` here whose ``values`` are flat and row-major:

- a numeric datatype (``FP16``..``FP64``, ``INT8``..``INT64``, ``UINT8``..``UINT64``): a float64
  array; integer types must hold integers and unsigned ones no negative value;
- ``BYTES``: a list of ``str`` (JSON strings, or length-prefixed UTF-8 in binary);
- ``BOOL``: a bool array.

:func:`decode_tensors` maps the tensors onto the model's inputs, in one of two layouts: one
input per feature (named like it, shape ``[n]`` or ``[n, 1]``), or one ``[n, d]`` input of every
feature in the model's order. Each input takes the datatype
:func:`~.columns.input_datatypes` says: a numeric input any numeric tensor, a categorical one a
``BYTES`` tensor; anything else is a 400 naming the tensor and the input.
"""

from __future__ import annotations

import math
import struct
from typing import Any, NamedTuple

import numpy as np

from ..body import json_text
from ..errors import APIError
from .columns import BOOL, BYTES, Columns, row_count

__all__ = ["BINARY_DTYPES", "DATATYPES", "FLOAT_TYPES", "INT_TYPES", "NUMERIC_TYPES",
           "UINT_TYPES", "InputHeader", "Tensor", "binary_values", "check_header",
           "decode_tensors", "json_values"]

FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64"})
UINT_TYPES = frozenset({"UINT8", "UINT16", "UINT32", "UINT64"})
NUMERIC_TYPES = FLOAT_TYPES | INT_TYPES | UINT_TYPES
DATATYPES = NUMERIC_TYPES | {"BOOL", "BYTES"}

# The binary form of each fixed-size datatype: little-endian, as the extension specifies.
BINARY_DTYPES = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")  # a BYTES element's length prefix


class InputHeader(NamedTuple):
    """An input as the request's JSON describes it: its values come in ``data`` (a JSON list,
    or a float64 array when the fast decoder already packed it) or, with the binary extension,
    as ``binary_size`` bytes after the JSON."""

    name: str
    shape: list[int]
    datatype: str
    data: Any
    binary_size: int | None


class Tensor(NamedTuple):
    name: str
    shape: list[int]
    datatype: str
    values: Any  # flat, row-major: float64 array, list of str (BYTES) or bool array (BOOL)


def invalid(message: str) -> APIError:
    return APIError(message, code="invalid_input")


def where_of(k: int, name: str) -> str:
    return f"inputs[{k}] ({name[:50]!r})"


class _Where:
    """Where an input is, for a message: formatted only when one is written."""

    __slots__ = ("k", "name")

    def __init__(self, k: int, name: str) -> None:
        self.k = k
        self.name = name

    def __format__(self, spec: str) -> str:
        return where_of(self.k, self.name)


def check_header(header: InputHeader, k: int, d: int, limit: int) -> int:
    """The number of values the input's shape holds, after checking its dimensions, datatype
    and size against the limits: before any of its values is read or allocated."""
    shape = header.shape
    where = _Where(k, header.name)  # formatted only for a message
    if len(shape) not in (1, 2):
        raise invalid(f"{where}: shape {shape[:10]} has {len(shape)} dimensions; an input has 1 "
                      "([n]) or 2 ([n, 1], [n, d])")
    if header.datatype not in DATATYPES:
        raise invalid(f"{where}: datatype {header.datatype[:20]!r} is not a datatype of the "
                      f"protocol; send numbers as FP64 (or {', '.join(sorted(NUMERIC_TYPES))})")
    count = math.prod(shape)
    if shape[0] > limit:
        raise APIError(f"{where}: shape {shape} has {shape[0]} rows; the limit is {limit} "
                       "(SGDSERVE_MAX_BATCH_ROWS)", code="too_many_rows")
    if count > limit * max(d, 1):
        raise APIError(f"{where}: shape {shape} holds {count} values; at most {limit} rows "
                       f"(SGDSERVE_MAX_BATCH_ROWS) of {d} features are accepted",
                       code="too_many_rows")
    return count


# -- values from JSON --------------------------------------------------------------------------


def json_values(header: InputHeader, count: int, where: Any) -> Any:
    """The values of an input sent as JSON ``data``: flat, or nested as the shape."""
    data, shape, datatype = header.data, header.shape, header.datatype
    if isinstance(data, np.ndarray):  # packed by the fast decoder: flat numbers
        values = data
    else:
        if type(data) is not list:
            raise invalid(f"{where}: 'data' must be a list of {_kind(datatype)} (flat, or "
                          "nested as the shape)")
        nested = any(type(v) is list for v in data)
        flat: list[Any] = []
        _flatten(data, shape if nested else None, flat, where, "data", datatype)
        if datatype == BYTES:
            values = flat
        elif datatype == "BOOL":
            values = np.array(flat, dtype=bool)
        else:
            values = np.array(flat, dtype=np.float64)
    if len(values) != count:
        raise invalid(f"{where}: shape {shape} holds {count} values, data has {len(values)}")
    if datatype in INT_TYPES or datatype in UINT_TYPES:
        bad = np.flatnonzero(values != np.trunc(values))
        if bad.size:
            raise invalid(f"{where}: data[{bad[0]}] is {float(values[bad[0]])!r}, not an "
                          f"integer as {datatype} says")
        if datatype in UINT_TYPES and (values < 0).any():
            i = int(np.flatnonzero(values < 0)[0])
            raise invalid(f"{where}: data[{i}] is negative, but {datatype} is unsigned")
    return values


def _kind(datatype: str) -> str:
    return {"BYTES": "strings", "BOOL": "booleans"}.get(datatype, "numbers")


_ONE = {"BYTES": "a string", "BOOL": "a boolean"}


def _flatten(data: list[Any], shape: list[int] | None, out: list[Any], where: Any, path: str,
             datatype: str) -> None:
    """Append the elements of ``data`` to ``out`` (numbers as floats); nested lists must
    follow ``shape``."""
    if shape is not None:
        if not shape or len(data) != shape[0]:
            raise invalid(f"{where}: {path} has {len(data)} items where shape {shape} needs "
                          f"{shape[0] if shape else 'none'}; nest data as the shape, or send it "
                          "flat")
        if len(shape) > 1:
            for i, sub in enumerate(data):
                if type(sub) is not list:
                    raise invalid(f"{where}: {path}[{i}] must be a list (nested as the shape)")
                _flatten(sub, shape[1:], out, where, f"{path}[{i}]", datatype)
            return
    wanted = {"BYTES": (str,), "BOOL": (bool,)}.get(datatype, (int, float))
    for i, value in enumerate(data):
        if type(value) not in wanted:
            raise invalid(f"{where}: {path}[{i}] must be {_ONE.get(datatype, 'a number')}, got "
                          f"{json_text(value)}")
        if wanted[0] is int:
            try:
                value = float(value)
            except OverflowError:
                raise invalid(f"{where}: {path}[{i}] is out of range for a float") from None
        out.append(value)


# -- values from the binary extension ----------------------------------------------------------


def binary_values(header: InputHeader, count: int, raw: memoryview, where: Any) -> Any:
    """The values of an input sent as ``binary_data_size`` raw bytes (``raw``, already cut to
    that size and checked against the body)."""
    datatype, shape = header.datatype, header.shape
    if datatype == BYTES:
        return _bytes_elements(raw, count, shape, where)
    dtype = BINARY_DTYPES[datatype]
    need = count * dtype.itemsize
    if len(raw) != need:
        raise invalid(f"{where}: binary_data_size is {len(raw)} bytes, but shape {shape} of "
                      f"{datatype} is {need} bytes ({count} x {dtype.itemsize})")
    values = np.frombuffer(raw, dtype=dtype, count=count)
    if datatype == "BOOL":
        return values.copy()
    return values.astype(np.float64)


def _bytes_elements(raw: memoryview, count: int, shape: list[int], where: Any) -> list[str]:
    """BYTES elements: each a 4-byte little-endian length, then that many bytes of UTF-8."""
    size = len(raw)
    if count * _LENGTH.size > size:  # before reading any: a shape the bytes cannot hold
        raise invalid(f"{where}: shape {shape} holds {count} BYTES elements, which need at "
                      f"least {count * _LENGTH.size} bytes; binary_data_size is {size}")
    out: list[str] = []
    pos = 0
    for i in range(count):
        if pos + _LENGTH.size > size:
            raise invalid(f"{where}: BYTES element {i}: its 4-byte length runs past the "
                          f"input's {size} bytes")
        (length,) = _LENGTH.unpack_from(raw, pos)
        pos += _LENGTH.size
        if length > size - pos:
            raise invalid(f"{where}: BYTES element {i} says {length} bytes, but only "
                          f"{size - pos} of the input's {size} are left")
        try:
            out.append(str(raw[pos:pos + length], "utf-8"))
        except UnicodeDecodeError as exc:
            raise invalid(f"{where}: BYTES element {i} is not valid UTF-8 ({exc.reason} at "
                          f"byte {exc.start})") from None
        pos += length
    if pos != size:
        raise invalid(f"{where}: {size - pos} bytes are left after the {count} BYTES elements "
                      f"of shape {shape}; binary_data_size is {size}")
    return out


# -- a request's inputs to the model's columns -------------------------------------------------


def decode_tensors(headers: list[InputHeader], raw: memoryview | None, names: tuple[str, ...],
                   datatypes: tuple[str, ...], limit: int) -> Columns:
    """The model's columns from a request's inputs: their values from JSON ``data``, or from
    consecutive slices of ``raw`` (the bytes after the binary extension's JSON header, None
    without it) in input order.

    Everything the headers say is checked before any value is read: dimensions, sizes against
    the limits, the layout (one input per feature, or one ``[n, d]`` input) and the datatype
    each input takes; then each input's byte size against its shape and the body."""
    d = len(names)
    counts = [check_header(header, k, d, limit) for k, header in enumerate(headers)]
    order, n = _layout(headers, names, datatypes, limit)
    tensors = _tensors(headers, counts, raw)
    if order is None:  # one [n, d] input
        t = tensors[0]
        if t.datatype == BYTES:
            return Columns([t.values[j::d] for j in range(d)], n)
        values = _finite(t, 0)
        if n == 1:  # Python floats: numpy costs more than the rest of a one-row request
            return Columns([[v] for v in values.tolist()], 1)
        return Columns(list(np.ascontiguousarray(values.reshape(n, d).T)), n)
    columns = []
    for k in order:
        t = tensors[k]
        if t.datatype == BYTES:
            columns.append(t.values)
        elif t.datatype == BOOL:
            values = np.asarray(t.values, dtype=np.float64)
            columns.append(values.tolist() if n == 1 else values)
        else:
            values = _finite(t, k)
            columns.append(values.tolist() if n == 1 else values)
    return Columns(columns, n)


def _tensors(headers: list[InputHeader], counts: list[int], raw: memoryview | None
             ) -> list[Tensor]:
    tensors = []
    offset = 0
    for k, (header, count) in enumerate(zip(headers, counts, strict=True)):
        where = _Where(k, header.name)
        if header.binary_size is None:
            values = json_values(header, count, where)
        else:
            if raw is None:
                raise invalid(f"{where}: parameters.binary_data_size is given, but the request "
                              "has no Inference-Header-Content-Length header (the length of "
                              "its JSON part, in the binary tensor data extension)")
            end = offset + header.binary_size
            if end > len(raw):
                raise invalid(f"{where}: binary_data_size is {header.binary_size} bytes, but "
                              f"only {len(raw) - offset} bytes of the body are left for it "
                              f"({len(raw)} follow the JSON header)")
            values = binary_values(header, count, raw[offset:end], where)
            offset = end
        tensors.append(Tensor(header.name, header.shape, header.datatype, values))
    if raw is not None and offset != len(raw):
        raise invalid(f"{len(raw) - offset} bytes of the body follow the binary data of every "
                      f"input: the inputs' binary_data_size add up to {offset}, but {len(raw)} "
                      "bytes follow the JSON header")
    return tensors


def _layout(headers: list[InputHeader], names: tuple[str, ...], datatypes: tuple[str, ...],
            limit: int) -> tuple[list[int] | None, int]:
    """Which input feeds each feature (None: the one [n, d] input feeds them all) and the row
    count, after checking names, shapes and datatypes."""
    if not headers:
        raise invalid("'inputs' is empty; send one input per feature or one [n, d] input")
    d = len(names)
    if len(headers) == 1 and (d > 1 or headers[0].name not in names):
        h = headers[0]
        if len(h.shape) != 2 or h.shape[1] != d:
            raise invalid(
                f"input {h.name[:50]!r} has shape {h.shape}; send one [n, {d}] input with the "
                f"features in the order {', '.join(names)}, or one input per feature"
            )
        for j in range(d):
            _accepts(h, 0, names[j], datatypes[j])
        return None, row_count(h.shape[0], limit)
    seen: dict[str, int] = {}
    for k, h in enumerate(headers):
        if h.name not in names:
            raise invalid(
                f"unknown input {h.name[:50]!r}; this model's inputs are {', '.join(names)} "
                f"(or one [n, {d}] input)"
            )
        if h.name in seen:
            raise invalid(f"input {h.name!r} is given twice")
        if len(h.shape) == 2 and h.shape[1] != 1:
            raise invalid(f"input {h.name!r} has shape {h.shape}; a feature's input has shape "
                          "[n] or [n, 1]")
        seen[h.name] = k
    missing = [name for name in names if name not in seen]
    if missing:
        raise invalid(f"no input for feature {missing[0]!r}; send one input per feature "
                      f"({', '.join(names)}) or one [n, {d}] input")
    n = headers[seen[names[0]]].shape[0]
    for name in names:
        if headers[seen[name]].shape[0] != n:
            raise invalid(f"input {name!r} has {headers[seen[name]].shape[0]} rows where "
                          f"{names[0]!r} has {n}; every feature needs one value per row")
    for name, datatype in zip(names, datatypes, strict=True):
        _accepts(headers[seen[name]], seen[name], name, datatype)
    return [seen[name] for name in names], row_count(n, limit)


def _accepts(t: InputHeader, k: int, feature: str, datatype: str) -> None:
    """A 400 unless input ``t`` may feed ``feature``, an input taking ``datatype``."""
    where = _Where(k, t.name)
    if datatype == BYTES:
        if t.datatype != BYTES:
            raise invalid(f"{where}: datatype {t.datatype} is not accepted by {feature!r}, a "
                          "categorical input (BYTES): send its values as strings")
        return
    if datatype == BOOL:
        if t.datatype != BOOL and t.datatype not in NUMERIC_TYPES:
            raise invalid(f"{where}: datatype {t.datatype} is not accepted by {feature!r}, a "
                          "yes/no input (BOOL): send booleans, or 0/1 as numbers")
        return
    if t.datatype not in NUMERIC_TYPES:
        raise invalid(f"{where}: datatype {t.datatype} is not accepted by {feature!r}, a "
                      "numeric input (FP64): send numbers as FP64 (or another numeric "
                      "datatype)")


def _finite(t: Tensor, k: int) -> np.ndarray:
    values = t.values
    if len(values) <= 16 and all(map(math.isfinite, values.tolist())):
        return values  # a few values: cheaper than a numpy reduction
    if not np.isfinite(values).all():
        i = int(np.flatnonzero(~np.isfinite(values))[0])
        raise invalid(f"{where_of(k, t.name)}: data[{i}] is {float(values[i])!r}; feature "
                      "values must be finite")
    return values
