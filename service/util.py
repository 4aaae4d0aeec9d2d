"""Small facts every layer shares: how a time is written, and what a JSON value may be.

One home for each, so the store, the job files, the scheduler's log and the HTTP answers write
times the same way and never disagree on what a stored number looks like.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["to_json", "utc_iso", "utc_now"]


def utc_now() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def utc_iso(when: dt.datetime | None = None) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``: ``2026-12-01T18:27:20.123Z``."""
    when = utc_now() if when is None else when.astimezone(dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_json(value: Any, where: str = "value") -> Any:
    """``value`` reduced to strict JSON: numpy to Python, non-finite floats to None, paths and
    datetimes to strings. Anything else is a ``TypeError`` naming ``where``."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist(), where)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dt.datetime):
        return utc_iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"{where} is not JSON-serialisable: {type(value).__name__}")
