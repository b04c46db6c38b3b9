"""What to do about scheduled times that passed unfired (SPEC §5 `catchup`): a pure plan.

Given a schedule, its cursor (the last decided scheduled time, or when it became active) and
now, every scheduled time after the cursor is one of:

- *late*: within `misfireGraceTime` of now: fired as usual, whatever the policy;
- *in the window*: older, but within `catchupWindow`: `all` fires each, `latest` fires the
  newest and records the others missed, `none` records them missed;
- *older than the window*: recorded missed.

Missed times are recorded as ranges (one fire log row each), so a week without a scheduler does
not write a row per minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from runner.spec.durations import format_duration
from runner.triggers.cron import FireTimes

#: The most scheduled times one plan enumerates per range (fires past it are counted as "more").
MAX_ENUMERATED = 10_000


@dataclass(frozen=True, slots=True)
class Missed:
    """A range of scheduled times that will not run, and why."""

    first: datetime
    last: datetime
    count: int
    reason: str


@dataclass(slots=True)
class CatchUpPlan:
    """The times to fire now (oldest first) and the ranges to record as missed."""

    fire: list[datetime] = field(default_factory=list)
    missed: list[Missed] = field(default_factory=list)


def plan(
    times: FireTimes,
    cursor: datetime,
    now: datetime,
    *,
    policy: str,
    window: float,
    grace: float,
) -> CatchUpPlan:
    """The plan for scheduled times in (`cursor`, `now`] (module docstring)."""
    result = CatchUpPlan()
    late_from = now - timedelta(seconds=grace)
    window_from = max(now - timedelta(seconds=window), cursor)
    # Older than the window (and not late): missed.
    cut = min(window_from, late_from)
    old = list(times.between(cursor, cut, MAX_ENUMERATED + 1))
    if old:
        more = len(old) > MAX_ENUMERATED
        old = old[:MAX_ENUMERATED]
        count = f"at least {len(old):,}" if more else f"{len(old):,}"
        result.missed.append(
            Missed(
                old[0],
                old[-1],
                len(old),
                f"{count} scheduled time(s) passed while no scheduler ran, older than "
                f"catchupWindow ({format_duration(window)})",
            )
        )
    # In the window, not late: per the policy.
    start = max(cursor, cut)
    caught = list(times.between(start, late_from, MAX_ENUMERATED)) if start < late_from else []
    if caught:
        if policy == "all":
            result.fire.extend(caught)
        else:
            kept = caught[-1:] if policy == "latest" else []
            dropped = caught[:-1] if policy == "latest" else caught
            if dropped:
                why = (
                    f"catchup: latest runs only the newest missed time ({kept[0].isoformat()})"
                    if kept
                    else "catchup: none"
                )
                result.missed.append(
                    Missed(
                        dropped[0],
                        dropped[-1],
                        len(dropped),
                        f"{len(dropped):,} scheduled time(s) passed while no scheduler ran; {why}",
                    )
                )
            result.fire.extend(kept)
    # Late but within the grace: fired as usual.
    result.fire.extend(times.between(max(cursor, late_from), now, MAX_ENUMERATED))
    return result
