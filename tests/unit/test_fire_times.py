"""When schedules fire (runner/triggers/cron.py) and what catch-up does
(runner/triggers/catchup.py): the 2026 daylight-saving transitions of Europe/Berlin and
America/New_York, and each policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from runner.sync import plan as plans
from runner.triggers import catchup
from runner.triggers.cron import FireTimes, ScheduleTrigger

BERLIN, NEW_YORK, LONDON = "Europe/Berlin", "America/New_York", "Europe/London"


def local(zone: str, *fields: int, fold: int = 0) -> datetime:
    return datetime(*fields, tzinfo=ZoneInfo(zone), fold=fold)


def fires(cron: str, zone: str, start: datetime, end: datetime) -> list[str]:
    """Fire instants in (start, end] as local wall-clock text with the UTC offset."""
    times = FireTimes(cron, zone)
    return [
        t.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M%z")
        for t in times.between(start, end, 1000)
    ]


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        # Clocks go 02:00 -> 03:00: 02:30 does not exist and fires once, at 03:00.
        (BERLIN, (2026, 3, 29), ["03-28 02:30+0100", "03-29 03:00+0200", "03-30 02:30+0200"]),
        (NEW_YORK, (2026, 3, 8), ["03-07 02:30-0500", "03-08 03:00-0400", "03-09 02:30-0400"]),
    ],
)
def test_a_daily_time_in_the_skipped_hour_fires_once_when_the_gap_ends(zone, day, expected):
    start = local(zone, *day, 12) - timedelta(days=2)
    assert fires("30 2 * * *", zone, start, start + timedelta(days=3)) == expected


@pytest.mark.parametrize(
    ("zone", "cron", "day", "expected"),
    [
        # 02:30 happens twice (CEST, then CET): it fires at the first.
        (BERLIN, "30 2 * * *", (2026, 10, 25), ["10-24 02:30+0200", "10-25 02:30+0200",
                                                 "10-26 02:30+0100"]),
        # 01:30 happens twice (EDT, then EST).
        (NEW_YORK, "30 1 * * *", (2026, 11, 1), ["10-31 01:30-0400", "11-01 01:30-0400",
                                                   "11-02 01:30-0500"]),
    ],
)  # fmt: skip
def test_a_daily_time_in_the_repeated_hour_fires_once(zone, cron, day, expected):
    start = local(zone, *day, 12) - timedelta(days=2)
    assert fires(cron, zone, start, start + timedelta(days=3)) == expected


def test_every_quarter_hour_across_the_skipped_hour_fires_once_at_its_end():
    start, end = local(BERLIN, 2026, 3, 29, 1, 30), local(BERLIN, 2026, 3, 29, 3, 30)
    assert fires("*/15 * * * *", BERLIN, start, end) == [
        "03-29 01:45+0100", "03-29 03:00+0200", "03-29 03:15+0200", "03-29 03:30+0200",
    ]  # fmt: skip


def test_every_half_hour_across_the_repeated_hour_fires_each_wall_time_once():
    start, end = local(NEW_YORK, 2026, 11, 1, 0, 30), local(NEW_YORK, 2026, 11, 1, 2, 30)
    assert fires("*/30 * * * *", NEW_YORK, start, end) == [
        "11-01 01:00-0400", "11-01 01:30-0400", "11-01 02:00-0500", "11-01 02:30-0500",
    ]  # fmt: skip


def test_from_inside_the_second_pass_of_the_repeated_hour_the_next_fire_is_after_it():
    times = FireTimes("*/30 * * * *", BERLIN)
    second_pass = local(BERLIN, 2026, 10, 25, 2, 10, fold=1)
    assert times.next_after(second_pass) == local(BERLIN, 2026, 10, 25, 3, 0)


def test_the_apscheduler_trigger_fires_after_the_previous_fire_else_from_now():
    trigger = ScheduleTrigger(FireTimes("*/2 * * * * *"))
    now = datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, now) == now.replace(second=4)
    previous = now.replace(second=0)
    assert trigger.get_next_fire_time(previous, now) == now.replace(second=2)


def test_an_invalid_cron_or_zone_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="fields, not 5 or 6"):
        FireTimes("* * *", "UTC")
    with pytest.raises(ValueError, match="not an IANA time zone"):
        FireTimes("0 9 * * *", "Europe/Londn")


def scheduler_times(cron: str, zone: str, now: datetime, count: int) -> list[datetime]:
    """The times the scheduler fires, asked as APScheduler asks its job's trigger: from now
    when the job is added, then after each run from the time it ran."""
    trigger = ScheduleTrigger(FireTimes(cron, zone))
    times = [trigger.get_next_fire_time(None, now)]
    while len(times) < count:
        times.append(trigger.get_next_fire_time(times[-1], times[-1]))
    return times


@pytest.mark.parametrize(
    ("zone", "cron", "now", "expected"),
    [
        # Clocks go back at 02:00 BST: 01:30 of the 25th happens twice, and fires once.
        (LONDON, "30 1 * * *", "2026-10-24T12:00:00",
         ["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00", "2026-10-27T01:30:00+00:00"]),
        # Clocks go forward at 01:00 GMT: 01:30 of the 29th does not exist; it fires at 01:00Z.
        (LONDON, "30 1 * * *", "2026-03-28T12:00:00",
         ["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00", "2026-03-31T01:30:00+01:00"]),
        (NEW_YORK, "30 1 * * *", "2026-10-31T12:00:00",
         ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00", "2026-11-03T01:30:00-05:00"]),
        (NEW_YORK, "30 2 * * *", "2026-03-07T12:00:00",
         ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]),
        (NEW_YORK, "*/30 1 * * *", "2026-10-31T12:00:00",
         ["2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:00:00-05:00"]),
    ],
)  # fmt: skip
def test_dwf_plan_lists_the_times_the_scheduler_fires_on_dst_days(zone, cron, now, expected):
    moment = datetime.fromisoformat(now).replace(tzinfo=UTC)
    listed = plans.next_fire_times(cron, zone, moment)
    assert listed == expected
    fired = scheduler_times(cron, zone, moment, len(expected))
    assert [datetime.fromisoformat(t) for t in listed] == fired
    assert len(set(listed)) == len(listed)


# -- catch-up -------------------------------------------------------------------------------------

EVERY_MINUTE = FireTimes("* * * * *")
NOW = datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)


def at(minute: int, hour: int = 12) -> datetime:
    return datetime(2026, 5, 1, hour, minute, tzinfo=UTC)


def plan(policy: str, cursor: datetime, *, window: float = 600, grace: float = 20):
    return catchup.plan(EVERY_MINUTE, cursor, NOW, policy=policy, window=window, grace=grace)


def test_nothing_to_catch_up_when_the_cursor_is_current():
    result = plan("all", at(0))
    assert result.fire == [] and result.missed == []


def test_catchup_all_fires_every_missed_time_in_the_window_and_misses_older_ones():
    result = plan("all", at(40, 11))  # 11:41 .. 12:00 passed; the window is 10 minutes
    assert result.fire == [at(m, 11) for m in range(51, 60)] + [at(0)]
    [older] = result.missed
    assert (older.first, older.last, older.count) == (at(41, 11), at(50, 11), 10)
    assert "older than catchupWindow (10m)" in older.reason


def test_catchup_latest_fires_only_the_newest_missed_time():
    result = plan("latest", at(55, 11))
    assert result.fire == [at(0)]
    [dropped] = result.missed
    assert (dropped.first, dropped.last, dropped.count) == (at(56, 11), at(59, 11), 4)
    assert "catchup: latest" in dropped.reason


def test_catchup_none_fires_nothing_and_records_the_missed_times():
    result = plan("none", at(57, 11))
    assert result.fire == []
    [dropped] = result.missed
    assert dropped.count == 3 and "catchup: none" in dropped.reason


def test_a_time_within_the_grace_fires_whatever_the_policy():
    now = at(0) + timedelta(seconds=5)
    result = catchup.plan(EVERY_MINUTE, at(58, 11), now, policy="none", window=600, grace=20)
    assert result.fire == [at(0)]
    assert [m.count for m in result.missed] == [1]  # 11:59, older than the grace


def test_a_long_outage_is_recorded_as_one_range_not_a_row_per_time():
    result = plan("latest", NOW - timedelta(days=30), window=3600)
    [older, dropped] = result.missed
    assert older.count == catchup.MAX_ENUMERATED and older.reason.startswith("at least")
    assert dropped.count == 59 and result.fire == [at(0)]
