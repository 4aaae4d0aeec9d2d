"""The model store: every trained version, which one is active, the trainer's lock, job files.

    ModelStore (base.py)    the contract every backend keeps
    ├── LocalStore          a directory: os.replace, fsync, fcntl.flock (local.py)
    └── S3Store             S3-compatible object storage: create-only versions, CURRENT by
                            ETag compare-and-swap, a lease for the trainer (s3.py)

:func:`open_store` picks the backend for the configured model directory; the S3 backend (and
boto3) is imported only when an ``s3://`` URL is configured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .base import ANY, MANIFEST_FILE, MODEL_FILE, HeldLock, ModelStore
from .jobs import JobFiles, JobStatus
from .local import FAULT_STEPS, LocalStore
from .signing import Signer

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["ANY", "FAULT_STEPS", "MANIFEST_FILE", "MODEL_FILE", "HeldLock", "JobFiles",
           "JobStatus", "LocalStore", "ModelStore", "Signer", "open_location", "open_store"]


def open_store(settings: Settings) -> ModelStore:
    """The store that ``settings`` (model_dir, model_name, keep_versions, signing keys) names."""
    signer = Signer.from_keys(settings.signing_key, settings.old_keys())
    return open_location(settings.model_dir, settings.model_name, settings.keep_versions,
                         signer=signer)


def open_location(model_dir: str | os.PathLike[str], name: str, keep: int, *,
                  signer: Signer | None = None) -> ModelStore:
    """A store at a directory or an ``s3://bucket/prefix`` URL."""
    if isinstance(model_dir, str) and model_dir.startswith("s3://"):
        from .s3 import S3Store

        return S3Store(model_dir, name, keep=keep, signer=signer)
    return LocalStore(Path(model_dir), name, keep=keep, signer=signer)
