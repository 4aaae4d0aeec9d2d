"""service.http.body: compressed bodies, inflated with the body limit applied to what comes out."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import pytest
from test_app import ROW, build, error_of, make_model, post_json

from service.http.body import decode_content
from service.http.errors import APIError
from service.store import LocalStore

pytestmark = pytest.mark.usefixtures("clean_env")  # tests/conftest.py

BODY = b'{"features": {"sqft": 1500, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}'


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(("encoding", "encode"), [
    ("gzip", gzip.compress),
    ("x-gzip", gzip.compress),
    ("GZip", gzip.compress),
    ("deflate", zlib.compress),  # what HTTP calls deflate: zlib's format
    ("deflate", raw_deflate),  # what some clients send under that name
    ("identity", lambda b: b),
    ("gzip, identity", gzip.compress),
    ("deflate, gzip", lambda b: gzip.compress(zlib.compress(b))),  # applied in that order
])
def test_every_coding_inflates_to_the_body(encoding, encode):
    assert decode_content(encode(BODY), encoding, 10_000) == BODY


def test_a_gzip_body_of_several_members_and_trailing_zeros():
    data = gzip.compress(BODY[:20]) + gzip.compress(BODY[20:]) + b"\0" * 8
    assert decode_content(data, "gzip", 10_000) == BODY


def test_a_large_body_inflates_in_steps(tmp_path):
    data = b"x" * (5 << 20)
    assert decode_content(gzip.compress(data), "gzip", len(data)) == data


@pytest.mark.parametrize(("encoding", "data", "status", "message"), [
    ("br", b"anything", 415, "Content-Encoding 'br' is not supported; send gzip, deflate"),
    ("gzip", b"not gzip at all", 400, "the body is not valid gzip data"),
    ("gzip", gzip.compress(BODY)[:-12], 400, "ends early (truncated)"),
    ("deflate", zlib.compress(BODY) + b"junk", 400, "4 bytes follow the compressed data"),
    ("gzip", gzip.compress(b"y" * 10_001), 413, "inflates (gzip) to more than the limit of "
     "10000 bytes (SGDSERVE_MAX_BODY_BYTES)"),
])
def test_bad_codings_name_the_problem(encoding, data, status, message):
    with pytest.raises(APIError) as caught:
        decode_content(data, encoding, 10_000)
    assert caught.value.status_code == status
    assert message in caught.value.message


@pytest.mark.parametrize("members", [1, 64])
def test_a_small_bomb_stops_at_the_limit_without_taking_its_size_in_memory(members):
    # 64 MiB in one member, or 1 GiB in 64 (a gzip file may hold many): about 64 KB per member
    member = gzip.compress(b"\0" * ((64 if members == 1 else 16) << 20), compresslevel=9)
    bomb = member * members
    assert len(bomb) < 1_100_000
    tracemalloc.start()
    try:
        with pytest.raises(APIError) as caught:
            decode_content(bomb, "gzip", 16 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.status_code == 413
    assert peak < 40 << 20  # the limit and a step, not the gigabyte


def test_predict_takes_a_compressed_body(tmp_path):
    add = LocalStore(tmp_path / "models", "house-price")
    version = add.save(make_model(), {}, parent=None)
    add.activate(version)
    client = build(tmp_path, max_body_bytes=2000).test_client()
    plain = post_json(client, "/predict", {"features": ROW}).get_json()
    assert plain.pop("prediction_id")  # every answer has its own id
    for encoding, data in (("gzip", gzip.compress(BODY)), ("deflate", zlib.compress(BODY))):
        r = client.post("/predict", data=data, content_type="application/json",
                        headers={"Content-Encoding": encoding})
        assert r.status_code == 200, r.get_json()
        answer = r.get_json()
        assert answer.pop("prediction_id") and answer == plain
    r = client.post("/predict", data=gzip.compress(b" " * 3000 + BODY),
                    content_type="application/json", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413 and error_of(r)["code"] == "body_too_large"
    r = client.post("/predict", data=BODY, content_type="application/json",
                    headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_content_encoding"
