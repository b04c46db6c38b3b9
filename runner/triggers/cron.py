"""When a schedule fires: the instants of a cron expression in a time zone, daylight saving right.

A cron expression names wall-clock times. Each matching wall-clock time fires exactly once:

- a time that occurs twice (the repeated hour when clocks go back) fires at its first
  occurrence only;
- a time that does not exist (the hour skipped when clocks go forward) fires once at the first
  valid instant after the gap (several such times, e.g. every 15 minutes, make one fire there).

APScheduler's own CronTrigger fires a repeated time twice and moves a skipped one by the size of
the gap, so the cron fields are matched here on naive wall-clock time (through
`runner.spec.triggers.cron_trigger` read in UTC, the one translation from cron text that lint
uses too) and each match is mapped to its instant. Pure: no I/O, no clock.

The one source of fire times: the scheduler's jobs (`ScheduleTrigger`), catch-up, the trigger
documents of the API and `dwf triggers`, and `dwf plan` all ask `fire_times`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger

from runner.spec.triggers import cron_trigger

_SECOND = timedelta(seconds=1)
_TICK = timedelta(microseconds=1)


class FireTimes:
    """The fire instants (UTC) of one cron expression in one IANA time zone."""

    def __init__(self, cron: str, timezone: str = "UTC") -> None:
        cron_trigger(cron, timezone)  # ValueError saying why the expression or zone is invalid
        self.cron, self.timezone = cron, timezone
        self._wall = cron_trigger(cron, "UTC")  # matches naive wall-clock times, read as UTC
        self._zone = ZoneInfo(timezone)
        # Shared by every schedule with this cron and zone (`fire_times`): a thousand of them
        # due at once ask the same question a thousand times, answered once.
        self._memo = functools.lru_cache(maxsize=256)(self._next_after)

    def __repr__(self) -> str:
        return f"FireTimes({self.cron!r}, {self.timezone!r})"

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire instant strictly after `moment` (aware), or None if there is none."""
        return self._memo(moment)

    def _next_after(self, moment: datetime) -> datetime | None:
        wall = moment.astimezone(self._zone).replace(tzinfo=None)
        # Instants grow with wall-clock times (a repeated time maps to its first occurrence, a
        # skipped one to the gap's end), and the wall-clock time of `moment` maps to `moment`
        # or earlier: so the answer is the instant of the first match at or after it that
        # lies past `moment`. Inside a repeated hour this walks past its first occurrence.
        match = self._wall.get_next_fire_time(None, wall.replace(tzinfo=UTC))
        while match is not None:
            instant = self.instant(match.replace(tzinfo=None))
            if instant > moment:
                return instant
            match = self._wall.get_next_fire_time(None, match + _SECOND)
        return None

    def first_from(self, moment: datetime) -> datetime | None:
        """The first fire instant at or after `moment`."""
        return self.next_after(moment - _TICK)

    def between(self, after: datetime, until: datetime, limit: int) -> Iterator[datetime]:
        """Fire instants in (`after`, `until`], oldest first, at most `limit` of them."""
        moment = after
        for _ in range(limit):
            found = self.next_after(moment)
            if found is None or found > until:
                return
            yield found
            moment = found

    def instant(self, wall: datetime) -> datetime:
        """The instant (UTC) a naive wall-clock time of this zone fires at (module docstring)."""
        first = wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)
        if first.astimezone(self._zone).replace(tzinfo=None) == wall:
            return first  # it exists; fold=0 is its first occurrence when it occurs twice
        # In a gap: fold=0 reads it with the offset before the change (an instant after the
        # gap), fold=1 with the offset after it (an instant before the gap). The change lies
        # between: find it to the second.
        low = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        high = first
        before = low.astimezone(self._zone).utcoffset()
        while high - low > _SECOND:
            middle = low + (high - low) / 2
            if middle.astimezone(self._zone).utcoffset() == before:
                low = middle
            else:
                high = middle
        return high.replace(microsecond=0) if high.microsecond else high


@functools.lru_cache(maxsize=4096)
def fire_times(cron: str, timezone: str = "UTC") -> FireTimes:
    """The (shared, immutable) FireTimes of a schedule; ValueError when it is invalid."""
    return FireTimes(cron, timezone)


class ScheduleTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no types
    """An APScheduler trigger firing at a schedule's FireTimes."""

    def __init__(self, times: FireTimes) -> None:
        self.times = times

    def __str__(self) -> str:
        return f"cron[{self.times.cron} {self.times.timezone}]"

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """After the previous fire (APScheduler collects late ones this way), else from now."""
        if previous_fire_time is not None:
            return self.times.next_after(previous_fire_time)
        return self.times.first_from(now)
