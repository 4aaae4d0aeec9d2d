"""The model store: every trained version, which one is active, the trainer's lock, job files.

    ModelStore (base.py)    the contract every backend keeps
    └── LocalStore          a directory: os.replace, fsync, fcntl.flock (local.py)

:func:`open_store` picks the backend for the configured model directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import ANY, MANIFEST_FILE, MODEL_FILE, ModelStore
from .jobs import JobFiles, JobStatus
from .local import FAULT_STEPS, LocalStore

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["ANY", "FAULT_STEPS", "MANIFEST_FILE", "MODEL_FILE", "JobFiles", "JobStatus",
           "LocalStore", "ModelStore", "open_store"]


def open_store(settings: Settings) -> ModelStore:
    """The store that ``settings`` (model_dir, model_name, keep_versions) points at."""
    return LocalStore(settings.model_dir, settings.model_name, keep=settings.keep_versions)
