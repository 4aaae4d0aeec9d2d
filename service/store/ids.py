"""Version and job ids: one pattern each, and how fresh ones are made.

A version id is the UTC time of its creation with microseconds and a random suffix,
``20261126T230209.059740Z-22870d``; a job id is the same with ``job-`` in front. Both sort in
creation order as plain strings. The OpenAPI document takes its patterns from here.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterable

from ..util import utc_now

__all__ = ["JOB_PATTERN", "JOB_RE", "VERSION_PATTERN", "VERSION_RE", "is_version_id",
           "new_job_id", "new_version_id"]

_STAMP = r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}"
VERSION_PATTERN = rf"^{_STAMP}$"
JOB_PATTERN = rf"^job-{_STAMP}$"
VERSION_RE = re.compile(_STAMP)
JOB_RE = re.compile(rf"job-{_STAMP}")
_TS_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def is_version_id(text: object) -> bool:
    return isinstance(text, str) and VERSION_RE.fullmatch(text) is not None


def _stamp(when: dt.datetime) -> str:
    return f"{when.strftime(_TS_FORMAT)}-{secrets.token_hex(3)}"


def new_version_id(existing: Iterable[str] = ()) -> str:
    """A fresh version id greater than every id in ``existing``, even if the clock went back."""
    now = utc_now()
    latest = max(existing, default=None)
    if latest is not None:
        last = dt.datetime.strptime(latest.split("-")[0], _TS_FORMAT).replace(tzinfo=dt.UTC)
        if now <= last:
            now = last + dt.timedelta(microseconds=1)
    return _stamp(now)


def new_job_id() -> str:
    """A fresh job id; ids sort by creation time."""
    return "job-" + _stamp(utc_now())
