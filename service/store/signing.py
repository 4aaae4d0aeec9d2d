"""Signed versions: HMAC-SHA256 over a version's model file and manifest.

A sha256 in the manifest catches a damaged file, not a writer who rewrites both. With
``SGDSERVE_SIGNING_KEY`` set, every version saved is signed and every load verifies the
signature before the model file is decoded: a version without a valid signature by an accepted
key is a :class:`~service.errors.SignatureError`.

A signature is a file (an object) of its own beside the version, never an edit of it::

    versions/<id>/signatures/<key-id>.json   {"algorithm", "key_id", "version", "model_sha256",
                                              "manifest_sha256", "signed_at", "mac"}

``mac`` is HMAC-SHA256, under the key, of ``sgdserve-signature-v1``, the version id, and the
sha256 of the model file's and of the manifest's exact bytes, each separated by a NUL. The
digests in the document are informative: verification recomputes them from the bytes read.
``key-id`` is derived from the key (an HMAC of a fixed string; the key cannot be recovered from
it), so a reader looks up the one file for each key it accepts and rotation needs no listing:
the current key signs and verifies, old keys (``SGDSERVE_SIGNING_OLD_KEYS``) only verify.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SignatureError
from ..util import utc_iso

__all__ = ["ALGORITHM", "SIGNATURES_DIR", "Signer", "key_id"]

ALGORITHM = "HMAC-SHA256"
SIGNATURES_DIR = "signatures"
_CONTEXT = b"sgdserve-signature-v1"


def key_id(key: str) -> str:
    """A short public name for ``key`` (16 hex digits), the same on every host."""
    return hmac.new(key.encode(), b"sgdserve-key-id", hashlib.sha256).hexdigest()[:16]


def _mac(key: str, version_id: str, model_sha256: str, manifest_sha256: str) -> str:
    message = b"\0".join([_CONTEXT, version_id.encode(), model_sha256.encode(),
                          manifest_sha256.encode()])
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


# (key id) -> that signature file's bytes, or None when the version has none by that key.
ReadSignature = Callable[[str], "bytes | None"]


@dataclass(frozen=True, repr=False)
class Signer:
    """The current signing key and the old ones still accepted (never shown in a repr)."""

    key: str
    old_keys: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r}, old={[key_id(k) for k in self.old_keys]})"

    @classmethod
    def from_keys(cls, key: str | None, old_keys: Sequence[str] = ()) -> Signer | None:
        """A signer, or None when no key is configured (versions are then not signed)."""
        return cls(key, tuple(old_keys)) if key else None

    @property
    def key_id(self) -> str:
        return key_id(self.key)

    def accepted(self) -> list[tuple[str, str]]:
        """(key id, key) of every key a signature may be made with, the current one first."""
        return [(key_id(k), k) for k in (self.key, *self.old_keys)]

    def sign(self, version_id: str, model_bytes: bytes, manifest_bytes: bytes) -> bytes:
        """The signature document of a version, by the current key."""
        model_sha = hashlib.sha256(model_bytes).hexdigest()
        manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
        document = {
            "algorithm": ALGORITHM,
            "key_id": self.key_id,
            "version": version_id,
            "model_sha256": model_sha,
            "manifest_sha256": manifest_sha,
            "signed_at": utc_iso(),
            "mac": _mac(self.key, version_id, model_sha, manifest_sha),
        }
        return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"

    def check(self, version_id: str, model_bytes: bytes, manifest_bytes: bytes,
              read: ReadSignature) -> str:
        """The id of the accepted key whose signature matches; else :class:`SignatureError`."""
        model_sha = hashlib.sha256(model_bytes).hexdigest()
        manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
        found = []
        for kid, key in self.accepted():
            raw = read(kid)
            if raw is None:
                continue
            found.append(kid)
            mac = _read_mac(raw)
            expected = _mac(key, version_id, model_sha, manifest_sha)
            if mac is not None and hmac.compare_digest(mac, expected):
                return kid
        if not found:
            raise SignatureError(
                f"version {version_id!r} is not signed by an accepted key (key ids "
                f"{', '.join(k for k, _ in self.accepted())}); refused. Sign a store made "
                "before signing was turned on with `sgdserve models sign`"
            )
        raise SignatureError(
            f"version {version_id!r}: the signature by key {found[0]} does not match its "
            "model file and manifest (tampered); refused"
        )

    def status(self, version_id: str, model_bytes: bytes, manifest_bytes: bytes,
               read: ReadSignature) -> str:
        """``"signed"`` (a valid signature by the current key), ``"old"`` (by an old key
        only), ``"unsigned"`` (none by any accepted key) or ``"tampered"``."""
        try:
            kid = self.check(version_id, model_bytes, manifest_bytes, read)
        except SignatureError as exc:
            return "tampered" if "does not match" in str(exc) else "unsigned"
        return "signed" if kid == self.key_id else "old"


def _read_mac(raw: bytes) -> str | None:
    try:
        document: Any = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("algorithm") != ALGORITHM:
        return None
    mac = document.get("mac")
    return mac if isinstance(mac, str) else None
