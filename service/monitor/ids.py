"""Prediction ids that any worker can check without a lookup: a keyed MAC inside the id.

An id is 24 bytes in URL-safe base64 (32 characters):

    6 bytes   the time it was issued, in milliseconds since the epoch
    4 bytes   a random nonce drawn once per process (again after a fork)
    3 bytes   a counter in that process
    3 bytes   the rows of the batch it names (0: a single prediction)
    8 bytes   keyed BLAKE2b of the 16 bytes above

The rows of a batch are ``<id>.<row>``, so a 10,000-row answer costs one MAC, not 10,000. Every
worker of every replica that has the same key (``SGDSERVE_ID_KEY``, or one derived from
``SGDSERVE_API_TOKEN``) recognises an id the moment it was answered; a forged one would have to
guess 64 bits. The time inside lets the join find an id's prediction in its window without an
index. Ids are unique across workers and restarts: (time, nonce, counter) repeats only if two
processes draw the same 32-bit nonce and issue in the same millisecond with the same count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import os
import struct
import time
from dataclasses import dataclass

__all__ = ["IdIssuer", "ParsedId", "derive_key"]

_MAC_BYTES = 8
_PAYLOAD = struct.Struct(">6s4s3s3s")
ID_LENGTH = 32  # characters of a single id (24 bytes, base64 without padding)
MAX_ROWS = (1 << 24) - 1


def derive_key(id_key: str | None, api_token: str | None) -> bytes:
    """The MAC key: ``id_key`` when set, else one derived from the API token, else a random one
    for this process (no token: no /feedback to check ids against, and nothing to forge)."""
    if id_key:
        return hashlib.blake2b(id_key.encode(), digest_size=32,
                               person=b"sgdserve-id-key").digest()
    if api_token:
        return hashlib.blake2b(api_token.encode(), digest_size=32,
                               person=b"sgdserve-id-tok").digest()
    return os.urandom(32)


@dataclass(frozen=True)
class ParsedId:
    """What a valid id says: when it was issued, its batch id, and the row in the batch."""

    issued_ms: int
    base: str
    row: int | None  # None for a single prediction


class IdIssuer:
    """Issues and verifies prediction ids with one key."""

    def __init__(self, key: bytes) -> None:
        # Keyed once: copying the keyed state costs less than keying every hash.
        self._keyed = hashlib.blake2b(key=bytes(key), digest_size=_MAC_BYTES)
        self._pid = -1
        self._nonce = b""
        self._count = itertools.count()

    def _fresh(self) -> None:
        # After a fork the child must not repeat its parent's (nonce, counter) pairs.
        self._pid = os.getpid()
        self._nonce = os.urandom(4)
        self._count = itertools.count()

    def _mac(self, payload: bytes) -> bytes:
        h = self._keyed.copy()
        h.update(payload)
        return h.digest()

    def issue(self, rows: int = 0) -> str:
        """A new id: for one prediction (``rows`` 0) or for a batch of ``rows`` rows, whose row
        i is ``f"{id}.{i}"``."""
        if self._pid != os.getpid():
            self._fresh()
        if not 0 <= rows <= MAX_ROWS:
            raise ValueError(f"a batch id names at most {MAX_ROWS} rows, got {rows}")
        now = time.time_ns() // 1_000_000
        count = next(self._count) & 0xFFFFFF
        payload = (now.to_bytes(6, "big") + self._nonce
                   + ((count << 24) | rows).to_bytes(6, "big"))
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode()

    def parse(self, text: object) -> ParsedId | None:
        """The parts of an id this key issued, or None for anything else (never raises)."""
        if type(text) is not str:
            return None
        base, dot, row_text = text.partition(".")
        if len(base) != ID_LENGTH:
            return None
        try:
            raw = base64.urlsafe_b64decode(base)
        except (binascii.Error, ValueError):
            return None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(payload) != _PAYLOAD.size or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        if base64.urlsafe_b64encode(raw).decode() != base:  # one spelling per id ('+' for '-')
            return None
        issued, _, _, rows = _PAYLOAD.unpack(payload)
        n = int.from_bytes(rows, "big")
        if not dot:
            return ParsedId(int.from_bytes(issued, "big"), base, None) if n == 0 else None
        if n == 0 or not row_text.isascii() or not row_text.isdigit() or (
                len(row_text) > 1 and row_text[0] == "0"):
            return None
        row = int(row_text)
        return ParsedId(int.from_bytes(issued, "big"), base, row) if row < n else None
