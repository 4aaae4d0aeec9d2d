"""Retraining schedules (fixed interval or cron) and the long-running scheduler loop.

    parse_every("1h30m")            -> timedelta(hours=1, minutes=30)
    CronSchedule("0 3 * * *")       -> 03:00 UTC every day
    parse_schedule(every, cron)     -> IntervalSchedule | CronSchedule
    Scheduler(schedule, run_once)   -> waits for each tick, runs, logs one JSON line per run
    run_schedule(schedule, run_once) -> the ``sgdserve schedule`` command minus argument parsing

The cron parser is written here rather than taken from a library; docs/scheduling.md says why
and documents the grammar, the time zone rules and the log format.
"""

from __future__ import annotations

import bisect
import calendar
import json
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from types import FrameType
from typing import Any, Protocol

from service.errors import LockHeldError, SGDServeError

__all__ = [
    "CronSchedule",
    "IntervalSchedule",
    "Schedule",
    "Scheduler",
    "parse_every",
    "parse_schedule",
    "run_schedule",
]

# ---------------------------------------------------------------------------------------------
# Intervals: --every
# ---------------------------------------------------------------------------------------------

_EVERY_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
_EVERY_EXAMPLES = "e.g. 30s, 15m, 6h, 1d or 1h30m"


def parse_every(text: str) -> timedelta:
    """Parse an interval such as ``30s``, ``15m``, ``6h``, ``1d`` or ``1h30m`` into a timedelta."""
    value = text.strip()
    match = _EVERY_RE.fullmatch(value)
    if not value or match is None:
        raise ValueError(
            f"interval {text!r} is not valid: write whole numbers with units d, h, m, s in that "
            f"order, {_EVERY_EXAMPLES}"
        )
    days, hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    try:
        interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ValueError(f"interval {text!r} is too long, {_EVERY_EXAMPLES}") from None
    if interval <= timedelta(0):
        raise ValueError(f"interval {text!r} must be greater than zero, {_EVERY_EXAMPLES}")
    return interval


def _format_interval(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _require_aware(dt: datetime) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {dt.isoformat()}")


class Schedule(Protocol):
    """When the scheduler runs: the first tick after it starts, then the tick after each tick."""

    def first_run(self, start: datetime) -> datetime:
        """Time of the first tick for a scheduler started at ``start``."""
        ...

    def next_after(self, dt: datetime) -> datetime:
        """Time of the first tick strictly after ``dt`` (both timezone-aware)."""
        ...


@dataclass(frozen=True)
class IntervalSchedule:
    """A tick every ``interval`` of elapsed time; the first tick is at once, at the start."""

    interval: timedelta

    def __post_init__(self) -> None:
        if self.interval <= timedelta(0):
            raise ValueError(f"interval must be greater than zero, got {self.interval}")

    def first_run(self, start: datetime) -> datetime:
        """The first tick is the start itself."""
        _require_aware(start)
        return start.astimezone(UTC)

    def next_after(self, dt: datetime) -> datetime:
        """``dt`` plus the interval, added in UTC so a DST change does not stretch it."""
        _require_aware(dt)
        return dt.astimezone(UTC) + self.interval

    def __str__(self) -> str:
        return f"every {_format_interval(self.interval)}"


# ---------------------------------------------------------------------------------------------
# Cron: --cron
# ---------------------------------------------------------------------------------------------

_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = {name: i for i, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_WEEKDAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int  # highest value accepted when written; day-of-week accepts 7 for Sunday
    star_high: int  # highest value ``*`` expands to
    names: Mapping[str, int]


_FIELDS = (
    _Field("minute", 0, 59, 59, {}),
    _Field("hour", 0, 23, 23, {}),
    _Field("day-of-month", 1, 31, 31, {}),
    _Field("month", 1, 12, 12, _MONTHS),
    _Field("day-of-week", 0, 7, 6, _WEEKDAYS),
)
_NUMBER_RE = re.compile(r"[0-9]+", re.ASCII)
# Feb 29 recurs at most 8 years apart (2096 -> 2104); the search gives up well after that.
_SEARCH_YEARS = 12


def _parse_value(field: _Field, token: str, item: str) -> int:
    if _NUMBER_RE.fullmatch(token):
        value = int(token)
    elif token.lower() in field.names:
        value = field.names[token.lower()]
    else:
        kind = "a number or a name" if field.names else "a number"
        shown = token if token else item
        raise ValueError(f"cron field {field.name!r} value {shown!r} is not {kind}")
    if not field.low <= value <= field.high:
        raise ValueError(
            f"cron field {field.name!r} value {value} is out of range {field.low}-{field.high}"
        )
    return value


def _parse_field(field: _Field, text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"cron field {field.name!r} has an empty list item in {text!r}")
        span, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER_RE.fullmatch(step_text):
                raise ValueError(f"cron field {field.name!r} step {step_text!r} is not a number")
            step = int(step_text)
            if step < 1:
                raise ValueError(f"cron field {field.name!r} step {step} must be at least 1")
        if span == "*":
            start, end = field.low, field.star_high
        elif "-" in span:
            first, _, last = span.partition("-")
            start = _parse_value(field, first, item)
            end = _parse_value(field, last, item)
            if start > end:
                sunday_last = field.names is _WEEKDAYS and end == 0
                hint = "; write Sunday as 7 at the end of a range" if sunday_last else ""
                raise ValueError(
                    f"cron field {field.name!r} range {span!r} runs backwards "
                    f"({start} > {end}){hint}"
                )
        elif slash:
            # Vixie-derived crons refuse "5/15", croniter reads it as 5-59/15: do not guess.
            raise ValueError(
                f"cron field {field.name!r} value {item!r}: a step needs * or a range, "
                f"e.g. */15 or 5-59/15"
            )
        else:
            start = end = _parse_value(field, span, item)
        values.update(range(start, end + 1, step))
    if field.names is _WEEKDAYS and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


class CronSchedule:
    """A standard 5-field cron expression (or an @alias), evaluated in ``tz`` (UTC by default)."""

    def __init__(self, expr: str, tz: tzinfo | None = None):
        self.expr = expr
        self.tz = UTC if tz is None else tz
        text = expr.strip()
        if not text:
            raise ValueError(
                f"cron expression {expr!r} is empty; expected 5 fields "
                "(minute hour day-of-month month day-of-week), e.g. '0 3 * * *'"
            )
        if text.startswith("@"):
            if text.lower() not in _ALIASES:
                raise ValueError(
                    f"unknown cron alias {text!r}; use one of {', '.join(_ALIASES)}"
                )
            text = _ALIASES[text.lower()]
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(
                f"cron expression {expr!r} has {len(parts)} fields; expected 5 "
                f"(minute hour day-of-month month day-of-week), e.g. '0 3 * * *'"
            )
        minutes, hours, days, months, weekdays = (
            _parse_field(field, part) for field, part in zip(_FIELDS, parts, strict=True)
        )
        self._minutes = sorted(minutes)
        self._hours = sorted(hours)
        self._days = days
        self._months = sorted(months)
        self._weekdays = weekdays
        # When both day fields are restricted a day matches if EITHER does (POSIX). A field is
        # unrestricted only if it is "*" or a list with a "*" item; "*/2" and "1-31" restrict.
        self._day_or = "*" not in parts[2].split(",") and "*" not in parts[4].split(",")
        if not self._day_or and not any(
            day <= _days_in_month(month, leap=True) for month in months for day in days
        ):
            raise ValueError(
                f"cron expression {expr!r} can never match: day-of-month {parts[2]!r} "
                f"does not occur in month {parts[3]!r}"
            )

    def first_run(self, start: datetime) -> datetime:
        """The first tick strictly after the start, like any other."""
        return self.next_after(start)

    def next_after(self, dt: datetime) -> datetime:
        """First time strictly after ``dt`` that matches, returned in UTC.

        Matching is done on the wall clock of ``self.tz``. A wall time skipped by a DST jump
        runs the jump's length later (02:30 -> 03:30); one that occurs twice runs once, the
        first time. UTC results avoid Python's rule that a datetime in a repeated hour never
        compares equal to one in another zone.
        """
        _require_aware(dt)
        after = dt.astimezone(UTC)
        wall = dt.astimezone(self.tz).replace(tzinfo=None, second=0, microsecond=0)
        wall += timedelta(minutes=1)
        while True:
            wall = self._next_wall_time(wall)
            # fold=0: a skipped wall time maps past the gap, a repeated one to its first instant.
            instant = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
            if instant > after:
                return instant
            wall += timedelta(minutes=1)

    def _day_matches(self, day: datetime) -> bool:
        dom = day.day in self._days
        dow = (day.weekday() + 1) % 7 in self._weekdays
        return (dom or dow) if self._day_or else (dom and dow)

    def _next_wall_time(self, t: datetime) -> datetime:
        """First naive wall time at or after ``t`` (whole minute) that matches every field."""
        last_year = t.year + _SEARCH_YEARS
        while t.year <= last_year:
            if t.month not in self._months:
                i = bisect.bisect_right(self._months, t.month)
                if i < len(self._months):
                    t = datetime(t.year, self._months[i], 1)
                else:
                    t = datetime(t.year + 1, self._months[0], 1)
                continue
            if not self._day_matches(t):
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            if t.hour not in self._hours:
                i = bisect.bisect_right(self._hours, t.hour)
                if i < len(self._hours):
                    t = t.replace(hour=self._hours[i], minute=0)
                else:
                    t = datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            if t.minute not in self._minutes:
                i = bisect.bisect_right(self._minutes, t.minute)
                if i < len(self._minutes):
                    t = t.replace(minute=self._minutes[i])
                else:
                    t = t.replace(minute=0) + timedelta(hours=1)
                continue
            return t
        raise ValueError(
            f"cron expression {self.expr!r} has no time within {_SEARCH_YEARS} years of {t.year}"
        )

    def __str__(self) -> str:
        return f"cron {self.expr!r} ({self.tz})"

    def __repr__(self) -> str:
        return f"CronSchedule({self.expr!r}, tz={self.tz!r})"


def _days_in_month(month: int, *, leap: bool) -> int:
    return calendar.monthrange(2024 if leap else 2023, month)[1]


def parse_schedule(
    every: str | None, cron: str | None, *, tz: tzinfo | None = None
) -> Schedule:
    """Build the schedule from exactly one of ``every`` (an interval) or ``cron``."""
    if (every is None) == (cron is None):
        got = "both" if every is not None else "neither"
        raise ValueError(f"give exactly one of --every or --cron, got {got}")
    if every is not None:
        return IntervalSchedule(parse_every(every))
    assert cron is not None
    return CronSchedule(cron, tz=tz)


# ---------------------------------------------------------------------------------------------
# The scheduler loop
# ---------------------------------------------------------------------------------------------

# Re-read the clock at least this often while waiting, so a wall-clock step is noticed.
_MAX_SLEEP_S = 60.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).isoformat(timespec="milliseconds")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays in metrics
        return value.tolist()
    return str(value)


def _print_json_line(record: dict) -> None:
    sys.stdout.write(json.dumps(record, default=_jsonable) + "\n")
    sys.stdout.flush()


class Scheduler:
    """Run ``run_once`` on every tick of ``schedule`` until stopped, logging one line per run."""

    def __init__(
        self,
        schedule: Schedule,
        run_once: Callable[[], Mapping[str, Any]],
        *,
        log: Callable[[dict], None] | None = None,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], object] | None = None,
    ):
        self.schedule = schedule
        self.run_once = run_once
        self.log = _print_json_line if log is None else log
        self.clock = clock
        self._stop = threading.Event()
        # Waiting on the event is what lets stop() end a wait at once.
        self.sleep = self._stop.wait if sleep is None else sleep
        self.stop_reason: str | None = None
        self._previous_handlers: dict[int, Any] = {}

    @property
    def stopped(self) -> bool:
        """True once stop() was called or a signal arrived; a stopped scheduler stays stopped."""
        return self.stop_reason is not None

    def stop(self, reason: str = "stop() called") -> None:
        """End the current wait at once; a run in progress finishes first."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def run(self, max_runs: int | None = None) -> int:
        """Run every tick until stopped or after ``max_runs`` runs; return the number of runs."""
        if max_runs is not None and max_runs < 1:
            raise ValueError(f"max_runs must be at least 1 or None, got {max_runs}")
        start = self.clock()
        _require_aware(start)
        due = self.schedule.first_run(start)
        self.log({"event": "scheduler_started", "schedule": str(self.schedule),
                  "at": _iso(start), "next_run_at": _iso(due)})
        runs = 0
        while self._wait_until(due):
            started = self.clock()
            outcome = self._call_run_once()
            finished = self.clock()
            runs += 1
            last = self.stopped or (max_runs is not None and runs >= max_runs)
            next_due, missed = (None, 0) if last else self._next_due(due, finished)
            self.log({
                "event": "retrain",
                "run": runs,
                "status": outcome.get("status"),
                "started_at": _iso(started),
                "finished_at": _iso(finished),
                "duration_s": round((finished - started).total_seconds(), 3),
                "outcome": outcome,
                "missed_ticks": missed,
                "next_run_at": _iso(next_due),
            })
            if next_due is None:
                break
            due = next_due
        reason = self.stop_reason if self.stopped else "max_runs reached"
        self.log({"event": "scheduler_stopped", "reason": reason, "runs": runs,
                  "at": _iso(self.clock())})
        return runs

    def _wait_until(self, due: datetime) -> bool:
        """Sleep until ``due``; False if stopped first."""
        while not self.stopped:
            remaining = (due - self.clock()).total_seconds()
            if remaining <= 0:
                return True
            self.sleep(min(remaining, _MAX_SLEEP_S))
        return False

    def _next_due(self, due: datetime, finished: datetime) -> tuple[datetime, int]:
        """The next tick after ``due`` that is not already past; ticks missed while running are
        skipped, not queued."""
        next_due = self.schedule.next_after(due)
        missed = 0
        while next_due <= finished:
            next_due = self.schedule.next_after(next_due)
            missed += 1
        return next_due, missed

    def _call_run_once(self) -> dict[str, Any]:
        try:
            result = self.run_once()
        except LockHeldError as exc:
            return {"status": "skipped",
                    "reason": str(exc) or "another training holds the store lock"}
        except Exception as exc:
            if not isinstance(exc, SGDServeError):
                # An unexpected error is a bug worth a traceback, but stdout stays JSON lines.
                traceback.print_exc(file=sys.stderr)
            return {"status": "failed", "error": type(exc).__name__,
                    "reason": str(exc) or type(exc).__name__}
        if hasattr(result, "to_dict"):
            result = result.to_dict()
        if not isinstance(result, Mapping):
            return {"status": "failed", "error": "TypeError",
                    "reason": f"run_once returned {type(result).__name__}, expected a dict"}
        return dict(result)

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGINT call stop(); a second signal ends the process at once."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def restore_signal_handlers(self) -> None:
        """Put back the handlers that install_signal_handlers() replaced."""
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # The next SIGTERM/SIGINT takes the default action: an operator can always force exit.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        if self.stop_reason is None:
            self.stop_reason = signal.Signals(signum).name
        # Event.set() takes a lock that the interrupted main thread may be holding inside
        # Event.wait(); setting it from another thread cannot deadlock.
        threading.Thread(target=self._stop.set, daemon=True).start()


def run_schedule(
    schedule: Schedule,
    run_once: Callable[[], Mapping[str, Any]],
    *,
    max_runs: int | None = None,
    log: Callable[[dict], None] | None = None,
) -> int:
    """Run a scheduler that stops on SIGTERM/SIGINT (main thread only); return exit code 0."""
    scheduler = Scheduler(schedule, run_once, log=log)
    scheduler.install_signal_handlers()
    try:
        scheduler.run(max_runs=max_runs)
    finally:
        scheduler.restore_signal_handlers()
    return 0
