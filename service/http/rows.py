"""Typed decoding of ``/predict`` bodies: JSON rows of named numbers to a float matrix, fast.

A :class:`RowDecoder` is made once per feature list (:func:`decoder_for` caches it) and turns
``{"features": {...}}`` or ``{"instances": [{...}, ...]}`` into Python floats (one row) or a
d x n matrix (a batch). msgspec checks the body's shape, every name and every type while it
parses: a boolean, string or null, a missing or unknown feature, a number beyond float range,
or malformed JSON makes :meth:`RowDecoder.decode` answer None, and the caller's general path
(orjson and field-by-field checks in ``api.py``) finds the first bad row and field to name.

Where the time goes on a 10,000 x 4 batch here (docs/benchmarks-serving.md): parsing into
typed rows 1.8 ms, against 2.9 ms for orjson into dicts; taking the columns out of the rows
0.5 ms, against 1.7 ms for one ``attrgetter`` pass per feature. The columns come out by
encoding the rows to MessagePack, where every float is the byte 0xcb and its 8 bytes big-endian
at a fixed offset in every row, and reading those with a numpy view: no Python object per
value. The layout is checked (length and every 0xcb) before it is trusted; if it ever differs
the columns are taken row by row instead.
"""

from __future__ import annotations

import functools
import operator
import struct
from itertools import chain
from typing import Any, NamedTuple

import msgspec
import numpy as np

__all__ = ["FLOAT_TYPES", "INT_TYPES", "NUMERIC_TYPES", "OPTION_KEYS", "UINT_TYPES", "Decoded",
           "RowDecoder", "decoder_for", "float_array"]

# The Open Inference Protocol's numeric tensor datatypes (/v2 reads every one as float64).
FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64"})
UINT_TYPES = frozenset({"UINT8", "UINT16", "UINT32", "UINT64"})
NUMERIC_TYPES = FLOAT_TYPES | INT_TYPES | UINT_TYPES

_FLOAT64 = 0xCB  # MessagePack's type byte for a float 64, followed by 8 bytes big-endian
_PACKED_FLOAT = np.dtype([("t", "u1"), ("v", ">f8")])
_packer = msgspec.msgpack.Encoder()


def _array_header(n: int) -> int:
    """Bytes of MessagePack's header for an array of n items."""
    return 1 if n < 16 else 3 if n < 1 << 16 else 5


def float_array(values: list[float]) -> np.ndarray:
    """A list of Python floats as a float64 array, bit for bit, without a Python-level pass:
    packed to MessagePack (each float 0xcb and 8 bytes) and read through a numpy view; about
    5x faster than ``np.fromiter`` on 40,000 values. Anything but floats: ``np.fromiter``."""
    n = len(values)
    packed = _packer.encode(values)
    if len(packed) == _array_header(n) + 9 * n:
        view = np.frombuffer(packed, dtype=_PACKED_FLOAT, count=n, offset=_array_header(n))
        if (view["t"] == _FLOAT64).all():
            return view["v"].astype(np.float64)
    return np.fromiter(values, np.float64, n)


# The options a prediction body may carry beside its rows: a conformal interval's level and
# whether to explain. A wrong type makes the typed decoder refuse the body, and the general
# path names the problem.
OPTION_FIELDS = (("interval", float | msgspec.UnsetType, msgspec.UNSET),
                 ("explain", bool | msgspec.UnsetType, msgspec.UNSET))
OPTION_KEYS = ("interval", "explain")


class Decoded(NamedTuple):
    single: bool  # {"features": ...}: columns is a list of floats; else a d x n array
    columns: Any
    parsed: Any  # the decoded body (its ``interval`` and ``explain`` too): the caller may hold
    #              it to free it later (10,000 rows: about 0.35 ms to free, which a client need
    #              not wait for)


class RowDecoder:
    """Decoder of prediction bodies whose rows hold exactly ``names``, as JSON numbers."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = tuple(names)
        # Python-side names f0, f1, ... so any feature name works; ``rename`` maps them to keys.
        fields = [f"f{j}" for j in range(len(names))]
        self._row = msgspec.defstruct(
            "Row",
            [(f, float) for f in fields],
            rename=dict(zip(fields, names, strict=True)),
            forbid_unknown_fields=True,
            gc=False,  # rows hold only floats: nothing for the cycle collector to track
        )
        body = msgspec.defstruct(
            "PredictBody",
            [("features", self._row | msgspec.UnsetType, msgspec.UNSET),
             ("instances", list[self._row] | msgspec.UnsetType, msgspec.UNSET),  # type: ignore[name-defined]
             *OPTION_FIELDS],
            forbid_unknown_fields=True,
            gc=False,
        )
        self._json = msgspec.json.Decoder(body)
        self._pack = _packer
        self._row_values = msgspec.structs.astuple
        self._layout = self._packed_layout()

    def decode(self, data: bytes, limit: int) -> Decoded | None:
        """One row as floats, a batch of 1 to ``limit`` rows as a d x n matrix, or None for
        any body this decoder does not accept whole."""
        try:
            body = self._json.decode(data)
        except msgspec.MsgspecError:
            return None
        features, rows = body.features, body.instances
        if rows is msgspec.UNSET:
            if features is msgspec.UNSET:
                return None
            return Decoded(True, list(self._row_values(features)), body)
        if features is not msgspec.UNSET or not rows or len(rows) > limit:
            return None
        return Decoded(False, self.columns(rows), body)

    def columns(self, rows: list[Any]) -> np.ndarray:
        """The rows' values as a d x n float64 matrix, feature by feature in ``names`` order."""
        X = self._columns_packed(rows)
        return self._columns_by_row(rows) if X is None else X

    # -- the two ways to take the columns out ----------------------------------------------------

    def _packed_layout(self) -> tuple[int, np.dtype] | None:
        """Bytes per packed row and a structured dtype over one: each value ('v<j>', big-endian
        float64) and the type byte before it ('t<j>'). Found by packing a row of distinct
        values and looking each up, so nothing about key encodings is assumed."""
        d = len(self.names)
        values = [1.0 + j / (d + 1) for j in range(d)]  # distinct, exactly representable
        packed = self._pack.encode(self._row(*values))
        offsets = []
        for value in values:
            found = packed.find(bytes([_FLOAT64]) + struct.pack(">d", value))
            if found < 0:
                return None
            offsets.append(found)
        dtype = np.dtype({
            "names": [f"v{j}" for j in range(d)] + [f"t{j}" for j in range(d)],
            "formats": [">f8"] * d + ["u1"] * d,
            "offsets": [o + 1 for o in offsets] + offsets,
            "itemsize": len(packed),
        })
        return len(packed), dtype

    def _columns_packed(self, rows: list[Any]) -> np.ndarray | None:
        if self._layout is None:
            return None
        size, dtype = self._layout
        n = len(rows)
        packed = self._pack.encode(rows)
        header = _array_header(n)
        if len(packed) != header + n * size:
            return None
        view = np.frombuffer(packed, dtype=dtype, count=n, offset=header)
        X = np.empty((len(self.names), n))
        for j in range(len(self.names)):
            if not (view[f"t{j}"] == _FLOAT64).all():
                return None
            X[j] = view[f"v{j}"]
        return X

    def _columns_by_row(self, rows: list[Any]) -> np.ndarray:
        n, d = len(rows), len(self.names)
        flat = np.fromiter(chain.from_iterable(map(self._row_values, rows)), np.float64, n * d)
        return np.ascontiguousarray(flat.reshape(n, d).T)


@functools.lru_cache(maxsize=32)
def decoder_for(names: tuple[str, ...]) -> RowDecoder:
    """The decoder for a feature list, made once (a process serves one model at a time)."""
    return RowDecoder(names)


class MixedDecoder:
    """Decoder of prediction bodies for a model with text, boolean or imputed features.

    Each feature's field has the JSON types its kind takes (a number or null; a string or
    null; a bool, a number, a yes/no word or null), the target and the columns the model
    dropped at training are accepted and ignored (a row copied from the training file works as
    it is), and any other key is refused, so a typo stays visible. Columns come out as lists of
    Python values, one per feature, for ``LinearModel.encode``.
    """

    def __init__(self, kinds: tuple[tuple[str, str], ...], ignored: tuple[str, ...]) -> None:
        self.names = tuple(name for name, _ in kinds)
        fields: list[tuple[Any, ...]] = [
            (f"f{j}", _FIELD_TYPES[kind]) for j, (_, kind) in enumerate(kinds)]
        fields += [(f"i{j}", Any, None) for j in range(len(ignored))]
        rename = {f"f{j}": name for j, name in enumerate(self.names)}
        rename.update({f"i{j}": name for j, name in enumerate(ignored)})
        # gc=False: a decoded row holds JSON values only (an ignored column's value is a tree of
        # lists and dicts), which cannot refer back to it, so the cycle collector need not
        # track 10,000 rows per batch.
        self._row = msgspec.defstruct("MixedRow", fields, rename=rename,
                                      forbid_unknown_fields=True, gc=False)
        body = msgspec.defstruct(
            "MixedBody",
            [("features", self._row | msgspec.UnsetType, msgspec.UNSET),
             ("instances", list[self._row] | msgspec.UnsetType, msgspec.UNSET),  # type: ignore[name-defined]
             *OPTION_FIELDS],
            forbid_unknown_fields=True,
            gc=False,
        )
        self._json = msgspec.json.Decoder(body)
        self._d = len(self.names)
        self._getters = [operator.attrgetter(f"f{j}") for j in range(self._d)]

    def decode(self, data: bytes, limit: int) -> Decoded | None:
        """One row as a list of values, a batch as one list per feature, or None."""
        try:
            body = self._json.decode(data)
        except msgspec.MsgspecError:
            return None
        features, rows = body.features, body.instances
        d = self._d
        if rows is msgspec.UNSET:
            if features is msgspec.UNSET:
                return None
            return Decoded(True, list(msgspec.structs.astuple(features)[:d]), body)
        if features is not msgspec.UNSET or not rows or len(rows) > limit:
            return None
        # One attribute getter per feature: 2.6 ms for 10,000 rows of 8 against 5.9 ms to
        # turn each row into a tuple and transpose them.
        columns = [list(map(get, rows)) for get in self._getters]
        return Decoded(False, columns, body)


_FIELD_TYPES: dict[str, Any] = {
    "numeric": float | None,
    "boolean": bool | float | str | None,
    "categorical": str | None,
}


@functools.lru_cache(maxsize=32)
def _mixed_decoder(kinds: tuple[tuple[str, str], ...], ignored: tuple[str, ...]) -> MixedDecoder:
    return MixedDecoder(kinds, ignored)


# The last model asked for and its decoder: a worker serves one model at a time, and building
# the lookup key (each feature's name and kind) took 15% of a single-row /predict's view.
_LAST_DECODER: tuple[Any, Any] = (None, None)


def decoder_for_model(model: Any) -> RowDecoder | MixedDecoder:
    """The decoder for the model a worker serves: the all-float one when nothing needs
    encoding, else one typed per feature kind."""
    global _LAST_DECODER
    last, decoder = _LAST_DECODER  # one read: another thread may replace the pair
    if last is model:
        return decoder
    decoder = decoder_for(model.feature_names) if model.plain else mixed_decoder_for(model)
    _LAST_DECODER = (model, decoder)
    return decoder


def ignored_columns(model: Any) -> tuple[str, ...]:
    """Keys a row may carry that the model does not use: its target and the columns it dropped
    when it was trained."""
    return (model.target, *(name for name, _ in model.schema.dropped))


def mixed_decoder_for(model: Any) -> MixedDecoder:
    """The typed-per-kind decoder even for a model that needs no encoding (rows that carry
    the target, or null for an empty value)."""
    kinds = tuple((f.name, f.kind) for f in model.schema.features)
    ignored = tuple(name for name in ignored_columns(model) if name not in model.feature_names)
    return _mixed_decoder(kinds, ignored)
