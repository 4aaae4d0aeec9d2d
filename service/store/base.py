"""The model store's contract, shared by every backend.

A store keeps the versions of one model, which one is active (``CURRENT``), a history of
promotions, the trainer's lock and the retrain job files. Every backend keeps these rules:

- A version is written completely before it can be seen, and never rewritten.
- ``activate`` checks that the version loads before it switches, and takes an expected-current
  precondition (:data:`ANY` for none): a writer that read a stale ``CURRENT`` gets a
  :class:`~service.errors.CurrentChangedError` naming what is current now, never a lost update.
- Loading verifies the artifact's sha256 (and, with a signing key, its signature) before it is
  decoded, and decodes it with an unpickler that admits only plain data (safe_pickle.py); a
  mismatch is an :class:`~service.errors.IntegrityError`.
- One trainer or promoter at a time holds :meth:`ModelStore.lock`; a retrain job takes it with
  :meth:`ModelStore.take_lock` and hands it to its child process (:class:`HeldLock`).

Backends implement the abstract methods; the rest is written once here.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
import json
import platform
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, NamedTuple

import joblib
import numpy as np

from .. import __version__
from ..engine.model import LinearModel
from ..errors import (
    CurrentChangedError,
    IntegrityError,
    NoActiveModelError,
    SignatureError,
    VersionNotFoundError,
)
from . import safe_pickle
from .ids import VERSION_RE, is_version_id
from .jobs import JobFiles
from .signing import Signer

__all__ = ["ANY", "MODEL_FILE", "MANIFEST_FILE", "Artifact", "HeldLock", "LockContext",
           "ModelStore"]

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"


LockContext = contextlib.AbstractContextManager[dict[str, Any]]


class _Any:
    def __repr__(self) -> str:
        return "ANY"


# ``activate(..., expected_current=ANY)``: no precondition.
ANY: Final = _Any()


class Artifact(NamedTuple):
    """A version as stored: its parsed manifest, and the exact bytes of both files."""

    manifest: dict[str, Any]
    manifest_bytes: bytes
    model_bytes: bytes


# (holder description, seconds waited) -> whether to keep trying although the wait is over.
Patience = Callable[[Mapping[str, Any], float], bool]


class HeldLock(abc.ABC):
    """The store's lock, taken in one process and handed to a child process that does the work
    (a retrain job): a locked descriptor it inherits, or a lease it takes over and renews."""

    holder: dict[str, Any]

    @abc.abstractmethod
    def child_argv(self) -> list[str]:
        """Arguments that tell ``python -m service.retrain`` how to take the lock over."""

    def pass_fds(self) -> tuple[int, ...]:
        """Descriptors the child must inherit."""
        return ()

    @abc.abstractmethod
    def handed_over(self) -> None:
        """The child has started: let go of this process's part (it keeps the lock)."""

    @abc.abstractmethod
    def release(self) -> None:
        """Free the lock: the child will not start after all."""

    def child_exited(self) -> None:  # noqa: B027 - most locks free themselves
        """The child has exited: free the lock if it still holds it (it was killed)."""
        return None


class ModelStore(abc.ABC):
    """Versions of one model, the active pointer, the trainer's lock and the job files."""

    name: str
    keep: int
    jobs: JobFiles
    signer: Signer | None = None
    # Whether reads cross a network: workers then poll CURRENT from a thread of their own, so
    # no request waits on it (service/http/reload.py).
    remote: bool = False

    # -- what a backend provides -------------------------------------------------------------

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the store is, for messages (a directory, or s3://bucket/prefix/name)."""

    @abc.abstractmethod
    def save(self, model: LinearModel, manifest: Mapping[str, Any], *, parent: str | None,
             status: str = "candidate") -> str:
        """Write a new version (not yet active) and return its id."""

    @abc.abstractmethod
    def get(self, version_id: str) -> dict[str, Any]:
        """The manifest of a version."""

    @abc.abstractmethod
    def read_artifact(self, version_id: str) -> Artifact:
        """A version's manifest and the raw bytes of its manifest and model file."""

    @abc.abstractmethod
    def read_signature(self, version_id: str, key_id: str) -> bytes | None:
        """The version's signature file by key ``key_id``, or None when there is none."""

    @abc.abstractmethod
    def write_signature(self, version_id: str, key_id: str, data: bytes) -> bool:
        """Add a signature file (create-only); False when one by that key exists already."""

    @abc.abstractmethod
    def version_ids(self) -> list[str]:
        """Ids of every stored version, oldest first."""

    @abc.abstractmethod
    def active_version(self) -> str | None:
        """The id in ``CURRENT``, or None when nothing has been promoted.

        A ``CURRENT`` that holds anything but a version id is a
        :class:`~service.errors.CurrentDamagedError`.
        """

    @abc.abstractmethod
    def current_stamp(self) -> Any:
        """A cheap value that changes whenever ``CURRENT`` comes to name another version (None
        when absent): a file's inode and mtime, an object's ETag (the MD5 of its content)."""

    @abc.abstractmethod
    def activate(self, version_id: str, *, expected_current: Any = ANY) -> str | None:
        """Make a version active after checking it loads; returns the previous id.

        ``expected_current`` (a version id, None for "nothing active", or :data:`ANY`) is
        checked against ``CURRENT`` as part of the switch.
        """

    @abc.abstractmethod
    def history(self) -> list[dict[str, Any]]:
        """Every promotion recorded (time, version, previous), oldest first."""

    @abc.abstractmethod
    def prune(self) -> list[str]:
        """Delete versions beyond the newest ``keep`` (never the active one or its parent)."""

    @abc.abstractmethod
    def lock(self, wait: bool | float = False, owner: str = "") -> LockContext:
        """Hold the store's exclusive lock for a ``with`` block; yields the holder description.

        ``wait=False`` fails fast with :class:`~service.errors.LockHeldError`, ``True`` blocks,
        a number waits up to that many seconds.
        """

    @abc.abstractmethod
    def is_locked(self) -> dict[str, Any] | None:
        """The holder's description when the lock is held, else None."""

    @abc.abstractmethod
    def take_lock(self, owner: str, *, patience: Patience | None = None,
                  **extra: Any) -> HeldLock:
        """Take the lock without waiting, to hand it to a child process (``extra`` joins the
        holder description, e.g. ``job_id``); held: :class:`~service.errors.LockHeldError`."""

    @abc.abstractmethod
    def adopt_lock(self, handle: str, owner: str, **extra: Any) -> LockContext:
        """In the child: hold the lock a parent handed over (``handle`` is what
        :meth:`HeldLock.child_argv` passed) for a ``with`` block, as this process."""

    @abc.abstractmethod
    def reopen_argv(self) -> list[str]:
        """``--model-dir``, ``--name`` and ``--keep`` that open this store in a child process."""

    # -- written once for every backend -------------------------------------------------------

    def load(self, version_id: str) -> tuple[LinearModel, dict[str, Any]]:
        """The model and manifest of a version, after checking its signature (with a signing
        key) and its sha256; decoded by the restricted unpickler."""
        artifact = self.read_artifact(version_id)
        if self.signer is not None:
            self.signer.check(version_id, artifact.model_bytes, artifact.manifest_bytes,
                              lambda kid: self.read_signature(version_id, kid))
        return decode_model(version_id, artifact.manifest, artifact.model_bytes), \
            artifact.manifest

    def sign_versions(self) -> list[tuple[str, str]]:
        """Sign, in place, every version that has no signature by the current key.

        Each version's sha256 is checked and its model decoded first; a version that fails, or
        whose existing signature does not match, is refused and left as it is. Returns
        ``(version, outcome)`` pairs: ``signed``, ``already signed`` or ``refused: <why>``.
        """
        if self.signer is None:
            raise SignatureError("no signing key: set SGDSERVE_SIGNING_KEY to sign the store")
        outcomes = []
        for version_id in self.version_ids():
            try:
                artifact = self.read_artifact(version_id)
                decode_model(version_id, artifact.manifest, artifact.model_bytes)
                status = self.signer.status(version_id, artifact.model_bytes,
                                            artifact.manifest_bytes,
                                            lambda kid, v=version_id: self.read_signature(v, kid))
                if status == "tampered":
                    raise SignatureError(f"version {version_id!r}: its signature does not match "
                                         "its files (tampered); not signed again")
            except VersionNotFoundError:
                continue  # pruned meanwhile
            except IntegrityError as exc:
                outcomes.append((version_id, f"refused: {exc}"))
                continue
            if status == "signed":
                outcomes.append((version_id, "already signed"))
                continue
            data = self.signer.sign(version_id, artifact.model_bytes, artifact.manifest_bytes)
            written = self.write_signature(version_id, self.signer.key_id, data)
            outcomes.append((version_id, "signed" if written else "already signed"))
        return outcomes

    def _signature_for(self, version_id: str, model_bytes: bytes,
                       manifest_bytes: bytes) -> tuple[str, bytes] | None:
        """(key id, signature document) for a version being saved, or None when unsigned."""
        if self.signer is None:
            return None
        return self.signer.key_id, self.signer.sign(version_id, model_bytes, manifest_bytes)

    def active(self) -> tuple[str, LinearModel, dict[str, Any]]:
        """The active version's id, model and manifest."""
        version_id = self.active_version()
        if version_id is None:
            raise NoActiveModelError(
                f"no active model in {self.location}; train one with "
                "`sgdserve train --data FILE --target COL`"
            )
        try:
            model, manifest = self.load(version_id)
        except VersionNotFoundError:
            raise IntegrityError(
                f"CURRENT names version {version_id!r}, which is missing from {self.location}"
            ) from None
        return version_id, model, manifest

    def list(self) -> list[dict[str, Any]]:
        """Manifests of every version sorted by id; unreadable ones have status "corrupt"."""
        result = []
        for version_id in self.version_ids():
            try:
                result.append(self.get(version_id))
            except VersionNotFoundError:
                continue  # pruned while we listed
            except IntegrityError as exc:
                result.append({"id": version_id, "status": "corrupt", "error": str(exc)})
        return result

    def last_promotion(self) -> dict[str, Any] | None:
        """The latest promotion (time, version, previous), or None when there was none."""
        history = self.history()
        return history[-1] if history else None

    def protected_versions(self) -> set[str]:
        """Versions retention must keep: the active one and its parent."""
        protected: set[str] = set()
        with contextlib.suppress(IntegrityError):
            active = self.active_version()
            if active is not None:
                protected.add(active)
                with contextlib.suppress(IntegrityError, VersionNotFoundError):
                    parent = self.get(active).get("parent")
                    if isinstance(parent, str):
                        protected.add(parent)
        return protected

    def _not_found(self, version_id: object) -> VersionNotFoundError:
        shown = version_id[:80] if isinstance(version_id, str) else version_id
        return VersionNotFoundError(f"version {shown!r} not found in {self.location}")

    def _check_id(self, version_id: object) -> str:
        if not is_version_id(version_id):
            raise self._not_found(version_id)
        assert isinstance(version_id, str)
        return version_id


def check_save_args(store: ModelStore, model: Any, manifest: Any, parent: Any,
                    status: Any) -> None:
    """Refuse arguments of :meth:`ModelStore.save` that cannot make a version."""
    if not isinstance(model, LinearModel):
        raise TypeError(f"model must be a LinearModel, got {type(model).__name__}")
    if not isinstance(manifest, Mapping):
        raise TypeError(f"manifest must be a mapping, got {type(manifest).__name__}")
    if parent is not None:
        store._check_id(parent)
    if not isinstance(status, str) or not status:
        raise ValueError(f"status must be a non-empty string, got {status!r}")


def check_expected(expected: Any, current: str | None) -> None:
    """Raise :class:`CurrentChangedError` when ``expected`` is set and is not ``current``."""
    if expected is ANY or expected == current:
        return
    raise CurrentChangedError(
        f"the active version is {current or 'none'}, not {expected or 'none'} as expected; "
        "it changed meanwhile: look again and retry",
        current=current,
    )


def manifest_fields(model: LinearModel, version_id: str, created_at: str, sha256: str,
                    parent: str | None, status: str) -> dict[str, Any]:
    """The fields every backend adds to a manifest when it saves a version."""
    return {
        "id": version_id,
        "created_at": created_at,
        "sha256": sha256,
        "parent": parent,
        "status": status,
        "features": list(model.feature_names),
        "target": model.target,
        "library_versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "joblib": joblib.__version__,
            "sgdserve": __version__,
        },
    }


def encode_model(model: LinearModel) -> tuple[bytes, str]:
    """The model file's bytes and their sha256."""
    buffer = io.BytesIO()
    joblib.dump(model.to_state(), buffer)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def check_manifest(version_id: str, manifest: Any) -> dict[str, Any]:
    """A parsed manifest, refused unless it is an object naming this id and a sha256."""
    if not isinstance(manifest, dict):
        raise IntegrityError(f"version {version_id!r}: {MANIFEST_FILE} is not an object")
    if manifest.get("id") != version_id:
        raise IntegrityError(
            f"version {version_id!r}: {MANIFEST_FILE} names id {manifest.get('id')!r}"
        )
    sha256 = manifest.get("sha256")
    if not isinstance(sha256, str) or len(sha256) != 64 or not _is_hex(sha256):
        raise IntegrityError(f"version {version_id!r}: manifest has no valid sha256")
    return manifest


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def decode_model(version_id: str, manifest: Mapping[str, Any], data: bytes) -> LinearModel:
    """The model in ``data`` after checking it against the manifest's sha256."""
    expected = manifest["sha256"]
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise IntegrityError(
            f"version {version_id!r}: {MODEL_FILE} sha256 {actual[:12]}... does not match "
            f"manifest {expected[:12]}... ({len(data)} bytes; tampered or truncated)"
        )
    # Unpickle only the bytes just verified, so a file swapped after hashing is never loaded,
    # and with an unpickler that runs no code: the sha256 is written by the same hand.
    try:
        state = safe_pickle.loads(data)
    except safe_pickle.UnsafePickleError as exc:
        raise IntegrityError(f"version {version_id!r}: {MODEL_FILE} refused: {exc}") from None
    except Exception as exc:  # any unpickling failure means a bad artifact
        raise IntegrityError(
            f"version {version_id!r}: {MODEL_FILE} cannot be loaded ({type(exc).__name__})"
        ) from None
    try:
        return LinearModel.from_state(state)
    except (TypeError, ValueError) as exc:
        raise IntegrityError(f"version {version_id!r}: bad model state: {exc}") from None


def iter_version_ids(names: Iterator[str] | list[str]) -> list[str]:
    """The version ids among ``names``, sorted."""
    return sorted(n for n in names if VERSION_RE.fullmatch(n))


_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")


def check_key_id(key_id: str) -> str:
    """A signing key id (16 hex digits), before it becomes part of a path or key."""
    if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
        raise ValueError(f"not a signing key id: {key_id!r}")
    return key_id


def parse_manifest(version_id: str, raw: bytes) -> dict[str, Any]:
    """A manifest's bytes parsed and checked (valid JSON, an object naming this id, a sha256)."""
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(
            f"version {version_id!r}: {MANIFEST_FILE} is not valid JSON ({exc})"
        ) from None
    return check_manifest(version_id, manifest)
