"""Tests of service/schedule.py: intervals, cron (against croniter), the scheduler loop, signals."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import CroniterBadDateError, croniter

from service.errors import DataError, LockHeldError
from service.schedule import (
    CronSchedule,
    IntervalSchedule,
    Scheduler,
    parse_every,
    parse_schedule,
    run_schedule,
)

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------
# parse_every
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("6h", timedelta(hours=6)),
        ("1d", timedelta(days=1)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("2d3h4m5s", timedelta(days=2, hours=3, minutes=4, seconds=5)),
        ("1h0m", timedelta(hours=1)),
        (" 5m ", timedelta(minutes=5)),
        ("007s", timedelta(seconds=7)),
    ],
)
def test_parse_every_accepts(text, expected):
    assert parse_every(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is not valid"),
        ("   ", "is not valid"),
        ("0s", "must be greater than zero"),
        ("0h0m", "must be greater than zero"),
        ("-5m", "is not valid"),
        ("5", "is not valid"),
        ("5x", "is not valid"),
        ("5 m", "is not valid"),
        ("1.5h", "is not valid"),
        ("30S", "is not valid"),
        ("1w", "is not valid"),
        ("1m1h", "is not valid"),
        ("1h1h", "is not valid"),
        ("m", "is not valid"),
        ("99999999999d", "is too long"),
    ],
)
def test_parse_every_rejects_with_value_and_examples(text, problem):
    with pytest.raises(ValueError) as info:
        parse_every(text)
    message = str(info.value)
    assert repr(text) in message
    assert problem in message
    assert "e.g. 30s, 15m, 6h, 1d or 1h30m" in message


def test_interval_schedule_runs_at_start_then_every_interval_of_elapsed_time():
    schedule = IntervalSchedule(timedelta(hours=1))
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2024, 3, 31, 1, 30, tzinfo=berlin)  # 30 min before clocks go forward
    assert schedule.first_run(start) == start
    nxt = schedule.next_after(start)
    assert nxt - start == timedelta(hours=1)  # aware subtraction across zones is elapsed time
    assert nxt.astimezone(berlin).hour == 3  # 01:30 CET + 1h elapsed is 03:30 CEST
    assert str(schedule) == "every 1h"


def test_interval_schedule_refuses_zero_and_naive_datetimes():
    with pytest.raises(ValueError, match="greater than zero"):
        IntervalSchedule(timedelta(0))
    with pytest.raises(ValueError, match="timezone-aware"):
        IntervalSchedule(timedelta(seconds=1)).next_after(datetime(2024, 1, 1))


# --------------------------------------------------------------------------------------------
# Cron against croniter (the test reference; service/ never imports it)
# --------------------------------------------------------------------------------------------

CRON_CASES = [
    "* * * * *",
    "*/15 * * * *",
    "10-50/10 * * * *",
    "1-59/2 * * * *",
    "*/90 * * * *",
    "0 3 * * *",
    "30 2 1 * *",
    "59 23 31 12 *",
    "0 0 31 * *",  # only months with 31 days
    "0 0 30 * *",
    "0 0 29 2 *",  # leap years only (2100 is not one)
    "0 0 28-31 2 *",
    "0 0 31 1,3,5 *",
    "0 */6 * * *",
    "15,45 8-18/2 * * 1-5",
    "0 12 * * mon-fri",
    "0 0 * * 0",
    "0 0 * * 7",  # 7 is Sunday too
    "0 0 * * 5-7",
    "0 0 * * sun,sat",
    "0 0 * * */2",
    "0 0 * * 1-7/2",
    "0 0 13 * fri",  # day-of-month OR day-of-week
    "0 0 1,15 * 1",
    "0 0 1-7 * 1",
    "0 0 */10 * */3",
    "0 0 */2 * mon",  # a stepped star is restricted: OR rule
    "0 0 1-31 * mon",
    "0 0 13 * *,fri",  # a list with a bare * is unrestricted: AND rule
    "0 0 *,5 * fri",
    "0 0 29 2 mon",  # OR rule inside February
    "5 4 * jan,jul *",
    "0 0 1 feb-apr/2 *",
    "0 0 * JAN MON",
    "0 9 * Dec Sat",
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
]

START_TIMES = [
    datetime(2024, 1, 1, 0, 0, tzinfo=UTC),
    datetime(2024, 2, 28, 23, 59, 59, 999999, tzinfo=UTC),  # leap February
    datetime(2023, 2, 28, 23, 59, 30, tzinfo=UTC),  # common February
    datetime(2100, 2, 27, 12, 0, tzinfo=UTC),  # century, not a leap year
    datetime(2000, 2, 28, 12, 0, tzinfo=UTC),  # divisible by 400, a leap year
    datetime(2023, 12, 31, 23, 59, 0, tzinfo=UTC),  # year end, exactly on a minute
    datetime(2024, 4, 30, 23, 0, tzinfo=UTC),  # 30-day month end
    datetime(2025, 7, 13, 10, 7, 31, 250000, tzinfo=UTC),
]


def _croniter_times(expr: str, start: datetime, n: int) -> list[datetime]:
    it = croniter(expr, start)
    return [it.get_next(datetime) for _ in range(n)]


def _our_times(schedule: CronSchedule, start: datetime, n: int) -> list[datetime]:
    times, t = [], start
    for _ in range(n):
        t = schedule.next_after(t)
        times.append(t)
    return times


@pytest.mark.parametrize("expr", CRON_CASES)
def test_cron_next_after_matches_croniter(expr):
    schedule = CronSchedule(expr)
    for start in START_TIMES:
        assert _our_times(schedule, start, 6) == _croniter_times(expr, start, 6), (expr, start)


def _random_field(rng: random.Random, low: int, high: int, names: list[str]) -> str:
    def value(v: int) -> str:
        return names[v - low] if names and rng.random() < 0.3 else str(v)

    items = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        kind = rng.choice(["star", "step", "value", "range", "range-step"])
        if kind == "star":
            items.append("*")
        elif kind == "step":
            items.append(f"*/{rng.randint(1, high - low + 2)}")
        elif kind == "value":
            items.append(value(rng.randint(low, high)))
        else:
            # Equal or reversed ranges are left out: croniter reads them differently (see docs).
            a = rng.randint(low, high - 1)
            b = rng.randint(a + 1, high)
            step = f"/{rng.randint(1, 10)}" if kind == "range-step" else ""
            items.append(f"{value(a)}-{value(b)}{step}")
    return ",".join(items)


def _random_expression(rng: random.Random) -> str:
    months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    weekdays = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    fields = [
        _random_field(rng, 0, 59, []),
        _random_field(rng, 0, 23, []),
        "*" if rng.random() < 0.4 else _random_field(rng, 1, 31, []),
        "*" if rng.random() < 0.5 else _random_field(rng, 1, 12, months),
        "*" if rng.random() < 0.4 else _random_field(rng, 0, 6, weekdays),
    ]
    if rng.random() < 0.1:  # Sunday written as 7
        fields[4] = rng.choice(["7", "5-7", "1,7", "6-7"])
    return " ".join(fields)


def test_cron_matches_croniter_on_a_seeded_random_sample():
    rng = random.Random(20240229)
    checked = never = 0
    for _ in range(400):
        expr = _random_expression(rng)
        start = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(100 * 365 * 86400)
        )
        try:
            schedule = CronSchedule(expr)
        except ValueError as exc:
            # The only expressions we refuse that croniter parses are the impossible dates,
            # where croniter gives up when asked for the next time.
            assert "can never match" in str(exc), expr
            with pytest.raises(CroniterBadDateError):
                croniter(expr, start).get_next(datetime)
            never += 1
            continue
        assert _our_times(schedule, start, 4) == _croniter_times(expr, start, 4), (expr, start)
        checked += 1
    assert checked > 350  # the sample really exercised the comparison


def test_cron_in_a_time_zone_without_dst_matches_croniter():
    tokyo = ZoneInfo("Asia/Tokyo")
    for expr in ["0 3 * * *", "30 23 * * fri", "0 0 1 * *", "*/20 9-17 * * 1-5"]:
        schedule = CronSchedule(expr, tz=tokyo)
        for start in START_TIMES[:4]:
            ours = _our_times(schedule, start, 5)
            assert ours == _croniter_times(expr, start.astimezone(tokyo), 5), (expr, start)
            assert all(t.tzinfo is UTC for t in ours)  # matched in Tokyo, returned in UTC
    three_am_tokyo = CronSchedule("0 3 * * *", tz=tokyo)
    assert three_am_tokyo.next_after(START_TIMES[0]) == datetime(2024, 1, 1, 18, 0, tzinfo=UTC)


def test_cron_is_utc_by_default_and_strictly_after():
    schedule = CronSchedule("0 3 * * *")
    on_tick = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
    assert schedule.next_after(on_tick) == datetime(2024, 5, 2, 3, 0, tzinfo=UTC)
    assert schedule.next_after(on_tick - timedelta(microseconds=1)) == on_tick
    assert schedule.next_after(on_tick).tzinfo is UTC
    # A start given in another zone is the same instant: 05:00 in Berlin is 03:00 UTC.
    berlin_start = datetime(2024, 5, 1, 5, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert schedule.next_after(berlin_start) == datetime(2024, 5, 2, 3, 0, tzinfo=UTC)
    berlin_before = berlin_start - timedelta(minutes=1)
    assert schedule.next_after(berlin_before) == datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2024, 5, 1))


BERLIN = ZoneInfo("Europe/Berlin")  # 2024: clocks go forward 31 Mar 02:00, back 27 Oct 03:00


def _berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)


def test_cron_dst_gap_runs_the_gap_length_later():
    schedule = CronSchedule("30 2 * * *", tz=BERLIN)
    first = schedule.next_after(_berlin(2024, 3, 30, 12, 0))
    assert first == datetime(2024, 3, 31, 1, 30, tzinfo=UTC)  # 03:30 CEST: 02:30 does not exist
    assert schedule.next_after(first) == _berlin(2024, 4, 1, 2, 30)
    # An every-minute schedule keeps ticking a minute apart in elapsed time across the gap.
    every_minute = CronSchedule("* * * * *", tz=BERLIN)
    before = _berlin(2024, 3, 31, 1, 59)
    # (Subtract in UTC: Python subtracts wall clocks when both sides share a tzinfo.)
    after = every_minute.next_after(before)
    assert after - before.astimezone(UTC) == timedelta(minutes=1)
    assert after.astimezone(BERLIN).hour == 3


def test_cron_repeated_hour_runs_once_at_the_first_occurrence():
    schedule = CronSchedule("30 2 * * *", tz=BERLIN)
    first = schedule.next_after(_berlin(2024, 10, 26, 12, 0))
    assert first == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # 02:30 CEST, the first one
    assert schedule.next_after(first) == _berlin(2024, 10, 28, 2, 30)
    # From inside the second 02:xx hour, the first 02:30 is already past.
    second_hour = _berlin(2024, 10, 27, 2, 10, fold=1)
    assert schedule.next_after(second_hour) == _berlin(2024, 10, 28, 2, 30)
    hourly = CronSchedule("0 * * * *", tz=BERLIN)
    after_first_two = _berlin(2024, 10, 27, 2, 0)
    assert hourly.next_after(after_first_two) == datetime(2024, 10, 27, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 25 * * *", "cron field 'hour' value 25 is out of range 0-23"),
        ("60 * * * *", "cron field 'minute' value 60 is out of range 0-59"),
        ("0 0 0 * *", "cron field 'day-of-month' value 0 is out of range 1-31"),
        ("0 0 32 * *", "cron field 'day-of-month' value 32 is out of range 1-31"),
        ("0 0 * 13 *", "cron field 'month' value 13 is out of range 1-12"),
        ("0 0 * * 8", "cron field 'day-of-week' value 8 is out of range 0-7"),
        ("0 0 * 0-5 *", "cron field 'month' value 0 is out of range 1-12"),
        ("*/0 * * * *", "cron field 'minute' step 0 must be at least 1"),
        ("0 */x * * *", "cron field 'hour' step 'x' is not a number"),
        ("0 0 * foo *", "cron field 'month' value 'foo' is not a number or a name"),
        ("0 0 * * funday", "cron field 'day-of-week' value 'funday' is not a number or a name"),
        ("mon * * * *", "cron field 'minute' value 'mon' is not a number"),
        ("0 0 * jan *x", "cron field 'day-of-week' value '\\*x' is not a number or a name"),
        ("-5 * * * *", "cron field 'minute' value '-5' is not a number"),
        ("1-2-3 * * * *", "cron field 'minute' value '2-3' is not a number"),
        ("1,,2 * * * *", "cron field 'minute' has an empty list item in '1,,2'"),
        ("5/15 * * * *", "cron field 'minute' value '5/15': a step needs \\* or a range"),
        ("0 0 * * 5-1", "cron field 'day-of-week' range '5-1' runs backwards \\(5 > 1\\)"),
        ("0 0 * * mon-sun", "range 'mon-sun' runs backwards \\(1 > 0\\); write Sunday as 7"),
        ("0 0 * dec-jan *", "cron field 'month' range 'dec-jan' runs backwards \\(12 > 1\\)"),
        ("0 0 * *", "cron expression '0 0 \\* \\*' has 4 fields; expected 5"),
        ("0 0 * * * *", "has 6 fields; expected 5 \\(minute hour day-of-month month day-of-week"),
        ("", "cron expression '' is empty"),
        ("   ", "cron expression '   ' is empty"),
        ("@reboot", "unknown cron alias '@reboot'; use one of @hourly, @daily"),
        ("0 0 30 2 *", "'0 0 30 2 \\*' can never match: day-of-month '30' does not occur"),
        ("0 0 31 4,6,9,11 *", "can never match"),
    ],
)
def test_malformed_cron_is_refused_with_field_and_value(expr, message):
    with pytest.raises(ValueError, match=message):
        CronSchedule(expr)


def test_impossible_day_is_fine_when_day_of_week_also_matches():
    # OR rule: Feb 30 never happens, but every Monday in February does.
    schedule = CronSchedule("0 0 30 2 mon")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    assert schedule.next_after(start) == datetime(2024, 2, 5, tzinfo=UTC)


def test_parse_schedule_needs_exactly_one():
    assert parse_schedule("30s", None) == IntervalSchedule(timedelta(seconds=30))
    cron = parse_schedule(None, "0 3 * * *", tz=BERLIN)
    assert isinstance(cron, CronSchedule) and cron.tz is BERLIN
    with pytest.raises(ValueError, match="exactly one of --every or --cron, got both"):
        parse_schedule("30s", "0 3 * * *")
    with pytest.raises(ValueError, match="exactly one of --every or --cron, got neither"):
        parse_schedule(None, None)
    with pytest.raises(ValueError, match="interval '' is not valid"):
        parse_schedule("", None)


# --------------------------------------------------------------------------------------------
# Scheduler with a fake clock
# --------------------------------------------------------------------------------------------

T0 = datetime(2025, 1, 6, 10, 7, 30, tzinfo=UTC)


class FakeClock:
    """A clock that only moves when the scheduler sleeps or a fake run takes time."""

    def __init__(self, now: datetime = T0):
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _scheduler(schedule, run_once, clock: FakeClock) -> tuple[Scheduler, list[dict]]:
    lines: list[dict] = []
    scheduler = Scheduler(schedule, run_once, log=lines.append, clock=clock, sleep=clock.sleep)
    return scheduler, lines


def _retrains(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["event"] == "retrain"]


def test_interval_ticks_from_each_run_start_and_logs_one_line_per_run():
    clock = FakeClock()
    calls: list[datetime] = []

    def run_once():
        calls.append(clock())
        clock.advance(5)  # training takes 5 s
        return {"status": "promoted", "version": f"v{len(calls)}", "metrics": {"rmse": 1.5}}

    scheduler, lines = _scheduler(IntervalSchedule(timedelta(seconds=30)), run_once, clock)
    assert scheduler.run(max_runs=3) == 3
    assert calls == [T0, T0 + timedelta(seconds=30), T0 + timedelta(seconds=60)]
    runs = _retrains(lines)
    assert [r["run"] for r in runs] == [1, 2, 3]
    first = runs[0]
    assert first["started_at"] == "2025-01-06T10:07:30.000+00:00"
    assert first["finished_at"] == "2025-01-06T10:07:35.000+00:00"
    assert first["duration_s"] == 5.0
    assert first["status"] == "promoted"
    assert first["outcome"] == {"status": "promoted", "version": "v1", "metrics": {"rmse": 1.5}}
    assert first["next_run_at"] == "2025-01-06T10:08:00.000+00:00"  # start + 30 s, not end + 30 s
    assert first["missed_ticks"] == 0
    assert runs[-1]["next_run_at"] is None
    assert lines[0]["event"] == "scheduler_started"
    assert lines[0]["schedule"] == "every 30s"
    assert lines[-1] == {"event": "scheduler_stopped", "reason": "max_runs reached", "runs": 3,
                         "at": "2025-01-06T10:08:35.000+00:00"}
    assert clock.sleeps == [25.0, 25.0]


def test_cron_first_tick_waits_for_the_schedule():
    clock = FakeClock()  # 10:07:30
    calls: list[datetime] = []

    def run_once():
        calls.append(clock())
        return {"status": "rejected"}

    scheduler, lines = _scheduler(CronSchedule("*/15 * * * *"), run_once, clock)
    scheduler.run(max_runs=2)
    assert calls == [T0.replace(minute=15, second=0), T0.replace(minute=30, second=0)]
    assert lines[0]["next_run_at"] == "2025-01-06T10:15:00.000+00:00"
    assert _retrains(lines)[0]["next_run_at"] == "2025-01-06T10:30:00.000+00:00"
    assert max(clock.sleeps) <= 60  # the clock is re-read at least once a minute


def test_ticks_missed_during_a_long_run_are_skipped_not_queued():
    clock = FakeClock()
    calls: list[datetime] = []

    def run_once():
        calls.append(clock())
        clock.advance(75 if len(calls) == 1 else 1)
        return {"status": "promoted"}

    scheduler, lines = _scheduler(IntervalSchedule(timedelta(seconds=30)), run_once, clock)
    scheduler.run(max_runs=2)
    assert calls == [T0, T0 + timedelta(seconds=90)]
    assert _retrains(lines)[0]["missed_ticks"] == 2


def test_lock_held_is_logged_as_skipped_and_the_scheduler_goes_on():
    clock = FakeClock()
    results = iter([LockHeldError("store lock held by pid 4242 (sgdserve train)"),
                    {"status": "promoted", "version": "v2"}])

    def run_once():
        result = next(results)
        if isinstance(result, Exception):
            raise result
        return result

    scheduler, lines = _scheduler(IntervalSchedule(timedelta(minutes=1)), run_once, clock)
    assert scheduler.run(max_runs=2) == 2
    skipped, promoted = _retrains(lines)
    assert skipped["status"] == "skipped"
    assert skipped["outcome"] == {"status": "skipped",
                                  "reason": "store lock held by pid 4242 (sgdserve train)"}
    assert skipped["next_run_at"] == "2025-01-06T10:08:30.000+00:00"
    assert promoted["outcome"] == {"status": "promoted", "version": "v2"}


def test_failures_are_logged_without_traceback_on_stdout_and_the_scheduler_goes_on(capsys):
    clock = FakeClock()
    errors = iter([ZeroDivisionError("division by zero"),
                   DataError("column 'price' is missing", column="price")])

    def run_once():
        error = next(errors, None)
        if error is not None:
            raise error
        return {"status": "promoted"}

    scheduler = Scheduler(IntervalSchedule(timedelta(seconds=10)), run_once,
                          clock=clock, sleep=clock.sleep)
    assert scheduler.run(max_runs=3) == 3
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]  # stdout is JSON lines only
    runs = _retrains(lines)
    assert len(runs) == 3
    assert runs[0]["outcome"] == {"status": "failed", "error": "ZeroDivisionError",
                                  "reason": "division by zero"}
    assert runs[1]["outcome"] == {"status": "failed", "error": "DataError",
                                  "reason": "column 'price' is missing"}
    assert runs[2]["status"] == "promoted"
    assert "Traceback" not in out
    # An unexpected error leaves a traceback on stderr; an expected SGDServeError does not.
    assert err.count("Traceback") == 1 and "ZeroDivisionError" in err


def test_run_once_returning_a_non_dict_is_a_failed_run():
    clock = FakeClock()
    scheduler, lines = _scheduler(IntervalSchedule(timedelta(seconds=1)), lambda: 42, clock)
    scheduler.run(max_runs=1)
    assert _retrains(lines)[0]["outcome"]["reason"] == "run_once returned int, expected a dict"


def test_to_dict_results_and_numpy_values_are_logged_as_json(capsys):
    np = pytest.importorskip("numpy")

    class Result:
        def to_dict(self):
            return {"status": "promoted", "coef": np.array([1.5, -2.0]),
                    "metrics": {"rmse": np.float64(0.25), "n": np.int64(7)},
                    "at": datetime(2025, 1, 6, 11, 0, tzinfo=BERLIN)}

    clock = FakeClock()
    scheduler = Scheduler(IntervalSchedule(timedelta(seconds=1)), Result, clock=clock,
                          sleep=clock.sleep)
    scheduler.run(max_runs=1)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    outcome = _retrains(lines)[0]["outcome"]
    assert outcome["metrics"] == {"rmse": 0.25, "n": 7}
    assert outcome["coef"] == [1.5, -2.0]
    assert outcome["at"] == "2025-01-06T10:00:00.000+00:00"


def test_stop_during_a_run_lets_it_finish_then_exits():
    clock = FakeClock()
    scheduler: Scheduler

    def run_once():
        scheduler.stop()
        clock.advance(3)
        return {"status": "promoted"}

    scheduler, lines = _scheduler(IntervalSchedule(timedelta(seconds=30)), run_once, clock)
    assert scheduler.run() == 1
    run = _retrains(lines)[0]
    assert run["status"] == "promoted" and run["duration_s"] == 3.0
    assert run["next_run_at"] is None
    assert lines[-1]["reason"] == "stop() called"


def test_stop_from_another_thread_ends_a_real_wait():
    calls: list[int] = []
    lines: list[dict] = []
    scheduler = Scheduler(IntervalSchedule(timedelta(hours=1)),
                          lambda: calls.append(1) or {"status": "promoted"}, log=lines.append)
    worker = threading.Thread(target=scheduler.run)
    worker.start()
    while not calls:
        time.sleep(0.01)
    scheduler.stop("test")
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert len(calls) == 1
    assert lines[-1]["event"] == "scheduler_stopped" and lines[-1]["reason"] == "test"


def test_max_runs_must_be_positive():
    scheduler, _ = _scheduler(IntervalSchedule(timedelta(seconds=1)), dict, FakeClock())
    with pytest.raises(ValueError, match="max_runs must be at least 1 or None, got 0"):
        scheduler.run(max_runs=0)


def test_run_schedule_restores_signal_handlers_and_returns_zero():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    lines: list[dict] = []
    code = run_schedule(IntervalSchedule(timedelta(hours=1)), lambda: {"status": "promoted"},
                        max_runs=1, log=lines.append)
    assert code == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert len(_retrains(lines)) == 1


# --------------------------------------------------------------------------------------------
# A real process and real signals
# --------------------------------------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, time
    from service.schedule import parse_schedule, run_schedule

    ticks = pathlib.Path(sys.argv[1])
    gate = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else None

    def run_once():
        with ticks.open("a") as f:
            f.write("started\\n")
        while gate is not None and not gate.exists():
            time.sleep(0.01)
        with ticks.open("a") as f:
            f.write("done\\n")
        return {"status": "promoted", "version": "v1"}

    sys.exit(run_schedule(parse_schedule("1h", None), run_once))
    """
)


def _start(tmp_path: Path, *, gated: bool) -> tuple[subprocess.Popen, Path, Path]:
    ticks, gate = tmp_path / "ticks.txt", tmp_path / "go"
    args = [sys.executable, "-c", SCRIPT, str(ticks)] + ([str(gate)] if gated else [])
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc, ticks, gate


def _wait_for(ticks: Path, text: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while not (ticks.exists() and text in ticks.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no {text!r} in {ticks}"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_waiting_exits_cleanly_and_promptly(tmp_path, signum):
    proc, ticks, _ = _start(tmp_path, gated=False)
    try:
        _wait_for(ticks, "done", proc)
        time.sleep(0.2)  # let it reach the hour-long wait
        sent = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill() if proc.poll() is None else None
    print(f"{signum.name}: exited {elapsed * 1000:.0f} ms after the signal")
    assert proc.returncode == 0, err
    assert elapsed < 3.0  # generous: the wait ends at once, well under 1 s on an idle machine
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["event"] for line in lines] == ["scheduler_started", "retrain",
                                                 "scheduler_stopped"]
    assert lines[-1]["reason"] == signum.name
    assert ticks.read_text() == "started\ndone\n"


@pytest.mark.slow
def test_signal_during_a_run_lets_it_finish_and_a_second_signal_forces_exit(tmp_path):
    proc, ticks, gate = _start(tmp_path, gated=True)
    try:
        _wait_for(ticks, "started", proc)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert proc.poll() is None  # still running the tick
        gate.touch()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    run = _retrains(lines)[0]
    assert run["status"] == "promoted" and run["next_run_at"] is None
    assert lines[-1] == {**lines[-1], "event": "scheduler_stopped", "reason": "SIGTERM", "runs": 1}
    assert ticks.read_text() == "started\ndone\n"

    # A second signal while the run is still going takes the default action.
    (tmp_path / "second").mkdir()
    proc, ticks, gate = _start(tmp_path / "second", gated=True)
    try:
        _wait_for(ticks, "started", proc)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == -signal.SIGTERM
    assert ticks.read_text() == "started\n"
