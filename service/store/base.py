"""The model store's contract, shared by every backend.

A store keeps the versions of one model, which one is active (``CURRENT``), a history of
promotions, the trainer's lock and the retrain job files. Every backend keeps these rules:

- A version is written completely before it can be seen, and never rewritten.
- ``activate`` checks that the version loads before it switches, and takes an expected-current
  precondition (:data:`ANY` for none): a writer that read a stale ``CURRENT`` gets a
  :class:`~service.errors.CurrentChangedError` naming what is current now, never a lost update.
- Loading verifies the artifact's sha256 before it is decoded; a mismatch is an
  :class:`~service.errors.IntegrityError`.
- One trainer or promoter at a time holds :meth:`ModelStore.lock`.

Backends implement the abstract methods; the rest is written once here.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import io
import platform
from collections.abc import Iterator, Mapping
from typing import Any, Final

import joblib
import numpy as np

from .. import __version__
from ..engine.model import LinearModel
from ..errors import (
    CurrentChangedError,
    IntegrityError,
    NoActiveModelError,
    VersionNotFoundError,
)
from .ids import VERSION_RE, is_version_id
from .jobs import JobFiles

__all__ = ["ANY", "MODEL_FILE", "MANIFEST_FILE", "LockContext", "ModelStore"]

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"


LockContext = contextlib.AbstractContextManager[dict[str, Any]]


class _Any:
    def __repr__(self) -> str:
        return "ANY"


# ``activate(..., expected_current=ANY)``: no precondition.
ANY: Final = _Any()


class ModelStore(abc.ABC):
    """Versions of one model, the active pointer, the trainer's lock and the job files."""

    name: str
    keep: int
    jobs: JobFiles

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
    def read_artifact(self, version_id: str) -> tuple[dict[str, Any], bytes]:
        """A version's manifest and the raw bytes of its model file."""

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
        """A cheap value that changes whenever ``CURRENT`` is replaced (None when absent)."""

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

    # -- written once for every backend -------------------------------------------------------

    def load(self, version_id: str) -> tuple[LinearModel, dict[str, Any]]:
        """The model and manifest of a version, after checking the artifact's sha256."""
        manifest, data = self.read_artifact(version_id)
        return decode_model(version_id, manifest, data), manifest

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
    # Unpickle only the bytes just verified, so a file swapped after hashing is never loaded.
    try:
        state = joblib.load(io.BytesIO(data))
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
