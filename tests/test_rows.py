"""service.rows: typed decoding of /predict bodies, and the two ways to take out the columns."""

from __future__ import annotations

import struct

import msgspec
import numpy as np
import orjson
import pytest

from service.http.rows import RowDecoder, decoder_for, decoder_for_model

from helpers import hand_model

FEATURES = ("sqft", "bedrooms", "bathrooms", "age_years")


def random_rows(n: int, names=FEATURES, seed: int = 0) -> list[dict]:
    """Rows with awkward values: every binade, subnormals, signed zeros, ints, huge ints."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**64 - 1, size=(n, len(names)), dtype=np.uint64, endpoint=True)
    values = bits.view(np.float64)
    values[~np.isfinite(values)] = 1.5
    values[rng.random(values.shape) < 0.1] = -0.0
    rows = [dict(zip(names, row.tolist(), strict=True)) for row in values]
    for row in rows[::7]:
        row[names[0]] = int(rng.integers(-(2**62), 2**62))
    return rows


def reference(rows: list[dict], names=FEATURES) -> np.ndarray:
    """What the general path makes of the same JSON: orjson, then float() of each value."""
    parsed = orjson.loads(orjson.dumps(rows))
    return np.array([[float(row[name]) for row in parsed] for name in names])


@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 1000, 65_535, 65_536, 70_000])
def test_a_batch_decodes_to_the_exact_columns(n):
    # 15/16 and 65,535/65,536 straddle MessagePack's 1-, 3- and 5-byte array headers.
    rows = random_rows(n, seed=n)
    single, X, _ = decoder_for(FEATURES).decode(orjson.dumps({"instances": rows}), limit=10**6)
    assert single is False
    assert X.shape == (4, n) and X.dtype == np.float64 and X.flags.c_contiguous
    expected = reference(rows)
    assert np.array_equal(X.view(np.uint64), expected.view(np.uint64))  # bit for bit, -0.0 too


def test_both_column_paths_agree_bit_for_bit():
    decoder = RowDecoder(FEATURES)
    rows = decoder._json.decode(orjson.dumps({"instances": random_rows(3000, seed=3)})).instances
    packed = decoder._columns_packed(rows)
    assert packed is not None  # the fast path is taken with this msgspec
    by_row = decoder._columns_by_row(rows)
    assert np.array_equal(packed.view(np.uint64), by_row.view(np.uint64))
    assert by_row.flags.c_contiguous


def test_an_unexpected_packed_layout_falls_back_to_rows(monkeypatch):
    decoder = RowDecoder(FEATURES)
    rows = decoder._json.decode(orjson.dumps({"instances": random_rows(50)})).instances
    expected = decoder._columns_by_row(rows)

    class Float32Packer:  # as if floats were packed as float 32 (type byte 0xca, 4 bytes)
        def encode(self, obj):
            packed = msgspec.msgpack.encode(obj)
            return packed.replace(b"\xcb", b"\xca")  # same length, wrong type bytes

    monkeypatch.setattr(decoder, "_pack", Float32Packer())
    assert decoder._columns_packed(rows) is None
    assert np.array_equal(decoder.columns(rows), expected)

    class Longer:  # a different length than the layout says
        def encode(self, obj):
            return msgspec.msgpack.encode(obj) + b"\x00"

    monkeypatch.setattr(decoder, "_pack", Longer())
    assert decoder._columns_packed(rows) is None


def test_one_row_decodes_to_python_floats_in_feature_order():
    body = orjson.dumps({"features": {"age_years": 20, "bathrooms": 2.5, "bedrooms": 3,
                                      "sqft": 1500}})
    single, values, _ = decoder_for(FEATURES).decode(body, limit=1)
    assert single is True
    assert values == [1500.0, 3.0, 2.5, 20.0]
    assert all(type(v) is float for v in values)


@pytest.mark.parametrize(
    "body",
    [
        b'{"features": {"sqft": true, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}',
        b'{"features": {"sqft": "1", "bedrooms": 3, "bathrooms": 2, "age_years": 20}}',
        b'{"features": {"sqft": null, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}',
        b'{"features": {"bedrooms": 3, "bathrooms": 2, "age_years": 20}}',
        b'{"features": {"sqft": 1, "bedrooms": 3, "bathrooms": 2, "age_years": 20, "x": 1}}',
        b'{"features": {"sqft": 1e309, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}',
        b'{"features": {"sqft": NaN, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}',
        b'{"features": {"sqft": 1, "bedrooms": 3, "bathrooms": 2, "age_years": 20}, '
        b'"instances": []}',
        b'{"instances": []}', b'{"instances": null}', b'{}', b'[]', b'', b'{"features": 1',
        b'{"instances": [{"sqft": 1, "bedrooms": 3, "bathrooms": 2, "age_years": 20}], "x": 1}',
    ],
)
def test_anything_not_accepted_whole_is_none(body):
    assert decoder_for(FEATURES).decode(body, limit=100) is None


def test_more_rows_than_the_limit_is_none():
    body = orjson.dumps({"instances": random_rows(6)})
    assert decoder_for(FEATURES).decode(body, limit=6) is not None
    assert decoder_for(FEATURES).decode(body, limit=5) is None


@pytest.mark.parametrize(
    "names",
    [("x",), ("sq ft", "class", "1st", "Ärea", "f0", "f1"),
     tuple(f"feature_{j}" for j in range(40)), ("a" * 40, "b" * 300, "c" * 70_000)],
    ids=["one", "not-identifiers", "forty", "long-keys"],
)
def test_any_feature_names(names):
    # Long names change MessagePack's string headers (1, 2 and 3 bytes): the layout is found,
    # not assumed. Forty features take a 3-byte map header.
    rows = random_rows(40, names=names, seed=len(names))
    decoder = RowDecoder(names)
    assert decoder._layout is not None
    _, X, _ = decoder.decode(orjson.dumps({"instances": rows}), limit=100)
    assert np.array_equal(X.view(np.uint64), reference(rows, names).view(np.uint64))


def test_the_layout_is_read_from_a_packed_row():
    size, dtype = RowDecoder(("ab", "c"))._layout
    # fixmap(2), fixstr "ab", 0xcb + 8 bytes, fixstr "c", 0xcb + 8 bytes
    assert size == 1 + 3 + 9 + 2 + 9
    assert dtype.fields["t0"][1] == 4 and dtype.fields["v0"][1] == 5
    assert dtype.fields["t1"][1] == 15 and dtype.fields["v1"][1] == 16
    row = msgspec.msgpack.encode({"ab": 2.5, "c": -1.0})
    assert row[4] == 0xCB and struct.unpack(">d", row[5:13])[0] == 2.5


def test_decoders_are_made_once_per_feature_list():
    assert decoder_for(FEATURES) is decoder_for(tuple(FEATURES))
    assert decoder_for(FEATURES) is not decoder_for(FEATURES[:3])


def test_the_decoder_follows_the_model_a_worker_serves():
    # decoder_for_model keeps the last model's decoder; a reloaded model (other features, or
    # the same features in a new object) must never be decoded with the old one's.
    old = hand_model(features=FEATURES)
    new = hand_model(features=("sqft", "lot_size"))
    assert decoder_for_model(old) is decoder_for(FEATURES)
    assert decoder_for_model(old) is decoder_for_model(old)
    assert decoder_for_model(new) is decoder_for(("sqft", "lot_size"))
    body = orjson.dumps({"features": {"sqft": 1.0, "lot_size": 2.0}})
    assert decoder_for_model(new).decode(body, limit=10)[1] == [1.0, 2.0]
    assert decoder_for_model(old).decode(body, limit=10) is None  # old's features are missing
