"""Trigger rules: cron expressions, time zones and trigger ids (SPEC §5).

`cron_trigger` is the one translation from a workflow's cron text to an APScheduler trigger; the
scheduler uses it too, so lint accepts exactly the schedules that will fire. Cron expressions
have five fields (minute hour day-of-month month day-of-week) or six with seconds first. The day
of week counts as in cron (0 and 7 are Sunday), not as in APScheduler 3 (0 is Monday). Restricting
both day of month and day of week is refused: cron fires when either matches, APScheduler only
when both do. APScheduler is imported only for a schedule, so `dwf lint` starts fast.
"""

from __future__ import annotations

import functools
import zoneinfo
from typing import TYPE_CHECKING

from runner.spec import structure
from runner.spec.diagnostics import Finding
from runner.spec.model import ScheduleTrigger, WebhookTrigger, Workflow

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

CRON_SHAPE = (
    "minute hour day-of-month month day-of-week, e.g. 0 9 * * 1-5 "
    "(or six fields with seconds first, e.g. 30 0 9 * * 1-5)"
)
_FIELD_NAMES = ("second", "minute", "hour", "day", "month", "day_of_week")
_FIELD_LABELS = {
    "second": "second",
    "minute": "minute",
    "hour": "hour",
    "day": "day-of-month",
    "month": "month",
    "day_of_week": "day-of-week",
}
# Standard cron counts days of the week from Sunday = 0 (7 is Sunday too); APScheduler 3.x counts
# from Monday = 0. Days are translated to names, which mean the same day in both.
_CRON_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_OF_WEEK_HELP = "write 0-7 (0 and 7 are Sunday) or sun-sat, with ranges, lists and steps"


def cron_trigger(expr: str, timezone: str = "UTC") -> CronTrigger:
    """The APScheduler trigger for a cron expression read as cron reads it (module docstring).

    Shared by lint and the scheduler; ValueError says why an expression or time zone is invalid.
    """
    from apscheduler.triggers.cron import CronTrigger

    values = expr.split()
    if len(values) == 5:
        values = ["0", *values]
    elif len(values) != 6:
        raise ValueError(f"it has {len(values)} fields, not 5 or 6")
    fields = dict(zip(_FIELD_NAMES, values, strict=True))
    restricted = not fields["day"].startswith("*") and not fields["day_of_week"].startswith("*")
    for name, value in fields.items():
        try:
            if name == "day_of_week":
                fields[name] = _day_of_week(value)
            CronTrigger.FIELDS_MAP[name](name, fields[name], False)
        except ValueError as exc:
            raise ValueError(f"{_FIELD_LABELS[name]} field `{value}`: {exc}") from exc
    if restricted:
        raise ValueError(
            "it restricts both day-of-month and day-of-week, which cron ORs but the scheduler "
            "would AND; set one of them to * (use two triggers for either-or)"
        )
    zone_problem = timezone_error(timezone)
    if zone_problem is not None:
        raise ValueError(zone_problem)
    return CronTrigger(**fields, timezone=zoneinfo.ZoneInfo(timezone))


def _day_of_week(field: str) -> str:
    """A cron day-of-week field as APScheduler day names (`1-5` -> `mon,tue,wed,thu,fri`)."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        body, slash, step_text = part.partition("/")
        if slash and not (step_text.isdigit() and int(step_text) > 0):
            raise ValueError(f"step `{step_text}` must be 1 or more")
        step = int(step_text) if slash else 1
        if body == "*":
            first, last = 0, 6
        elif "-" in body:
            start, _, end = body.partition("-")
            first, last = _day(start), _day(end)
        else:
            # `a/n` runs from a to the end of the week, as in other cron fields.
            first = _day(body)
            last = 6 if slash else first
        if first > last:
            raise ValueError(f"range `{body}` runs backwards ({_DAY_OF_WEEK_HELP})")
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_CRON_DAY_NAMES[day] for day in sorted(days))


def _day(token: str) -> int:
    """Cron's number for a day: 0-7 (0 and 7 are Sunday) or a three-letter English name."""
    name = token.lower()
    if name in _CRON_DAY_NAMES:
        return _CRON_DAY_NAMES.index(name)
    if token.isdigit() and int(token) <= 7:
        return int(token)
    raise ValueError(f"`{token}` is not a day; {_DAY_OF_WEEK_HELP}")


@functools.lru_cache(maxsize=1024)
def cron_error(expr: str) -> str | None:
    """Why a cron expression is invalid, or None; cached, since schedules repeat across files."""
    try:
        cron_trigger(expr, "UTC")
    except ValueError as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=256)
def timezone_error(name: str) -> str | None:
    """Why `name` is not an IANA time zone (with a likely intended one), or None."""
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        pass
    else:
        return None
    known = _timezones()
    folded = {zone.lower(): zone for zone in known}
    guess = folded.get(name.strip().lower())
    if guess is None:
        import difflib

        matches = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        guess = matches[0] if matches else None
    hint = f"; did you mean `{guess}`?" if guess else ""
    return (
        f"`{name}` is not an IANA time zone{hint} (write a name such as UTC, Europe/London or "
        "America/New_York)"
    )


@functools.cache
def _timezones() -> list[str]:
    # Reading the whole zone database takes tens of milliseconds: only done for a bad name.
    return sorted(zoneinfo.available_timezones())


def check(workflow: Workflow) -> list[Finding]:
    """Duplicate trigger ids, each schedule's cron expression and time zone, and webhooks that
    do not say how they are signed."""
    _, findings = structure.duplicate_ids([t.id for t in workflow.triggers], "triggers")
    for k, trigger in enumerate(workflow.triggers):
        if isinstance(trigger, WebhookTrigger):
            if trigger.signature is None and not trigger.unsigned:
                findings.append(
                    Finding(
                        "webhook-unsigned",
                        f"webhook trigger `{trigger.id}` has no `signature`: anyone who can reach "
                        "its URL can start this workflow; set `signature` (github, slack or "
                        "hmac-sha256, with `secretRef`), or write `signature: none` to accept "
                        "unsigned requests on purpose",
                        ("triggers", k),
                    )
                )
            continue
        if not isinstance(trigger, ScheduleTrigger):
            continue
        error = cron_error(trigger.cron)
        if error is not None:
            findings.append(
                Finding(
                    "invalid-cron",
                    f"trigger `{trigger.id}` cron `{trigger.cron}` is invalid: {error}; "
                    f"expected {CRON_SHAPE}",
                    ("triggers", k, "cron"),
                )
            )
        error = timezone_error(trigger.timezone)
        if error is not None:
            findings.append(
                Finding(
                    "invalid-timezone",
                    f"trigger `{trigger.id}` timezone: {error}",
                    ("triggers", k, "timezone"),
                )
            )
    return findings
