"""Small facts every layer shares: how a time is written, and what a JSON value may be.

One home for each, so the store, the job files, the scheduler's log and the HTTP answers write
times the same way and never disagree on what a stored number looks like.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["parse_duration", "to_json", "utc_iso", "utc_now"]


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


_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)


def parse_duration(text: str) -> float:
    """Seconds in ``"7d"``, ``"24h"``, ``"1h30m"``, ``"90s"`` or a plain number of seconds."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        match = _DURATION.fullmatch(value)
        if not value or match is None:
            raise ValueError(f"{text!r} is not a duration: write e.g. 7d, 24h, 1h30m, 90s or "
                             "seconds") from None
        d, h, m, s = (int(p) if p else 0 for p in match.groups())
        seconds = float(((d * 24 + h) * 60 + m) * 60 + s)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{text!r} is not a duration: it must be more than 0 seconds")
    return seconds
