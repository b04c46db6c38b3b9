"""Trigger rules and the cron translation the scheduler shares (runner/spec/triggers.py)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from runner.spec import triggers
from runner.spec.diagnostics import Finding
from runner.spec.model import Workflow


def workflow(*trigger_list: dict[str, Any]) -> Workflow:
    return Workflow.from_data(
        {
            "id": "wf",
            "startNode": "a",
            "nodes": [{"id": "a", "actionType": "core.echo"}],
            "triggers": list(trigger_list),
        }
    )


def schedule(cron: str, **fields: Any) -> dict[str, Any]:
    return {"id": "nightly", "type": "schedule", "cron": cron, **fields}


def only(findings: list[Finding], rule: str) -> Finding:
    matching = [f for f in findings if f.rule == rule]
    assert len(matching) == 1, findings
    return matching[0]


def fire_days(expr: str, count: int = 7, timezone: str = "UTC") -> list[str]:
    """Weekday names of the next `count` fires from Saturday 2024-06-01 (a known date)."""
    trigger = triggers.cron_trigger(expr, timezone)
    zone = ZoneInfo(timezone)
    now = datetime(2024, 6, 1, tzinfo=zone) - timedelta(microseconds=1)
    fires = []
    previous = None
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        fires.append(fire)
        previous, now = fire, fire + timedelta(microseconds=1)
    return [fire.strftime("%a") for fire in fires]


# --- cron_trigger: cron's day-of-week numbering ------------------------------------------------


def test_weekdays_fire_monday_to_friday() -> None:
    assert fire_days("0 9 * * 1-5", 5) == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert fire_days("0 9 * * 1-5", 10)[5:] == ["Mon", "Tue", "Wed", "Thu", "Fri"]


@pytest.mark.parametrize("expr", ["0 0 * * 0", "0 0 * * 7", "0 0 * * sun", "0 0 * * SUN"])
def test_zero_and_seven_are_sunday(expr: str) -> None:
    assert fire_days(expr, 3) == ["Sun", "Sun", "Sun"]


@pytest.mark.parametrize(
    ("expr", "days"),
    [
        ("0 0 * * mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0 0 * * 5-7", ["Sat", "Sun", "Fri"]),
        ("0 0 * * 0,6", ["Sat", "Sun"]),
        ("0 0 * * */2", ["Sat", "Sun", "Tue", "Thu"]),
        ("0 0 * * 1-5/2", ["Mon", "Wed", "Fri"]),
        ("0 0 * * 3/2", ["Wed", "Fri", "Wed"]),
        ("0 0 * * *", ["Sat", "Sun", "Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0 0 * * 0-7", ["Sat", "Sun", "Mon", "Tue", "Wed", "Thu", "Fri"]),
    ],
)
def test_day_of_week_ranges_lists_and_steps(expr: str, days: list[str]) -> None:
    assert fire_days(expr, len(days)) == days


def test_six_fields_put_seconds_first() -> None:
    trigger = triggers.cron_trigger("30 15 9 * * 1-5", "UTC")
    start = datetime(2024, 6, 1, tzinfo=ZoneInfo("UTC"))
    fire = trigger.get_next_fire_time(None, start)
    assert fire == datetime(2024, 6, 3, 9, 15, 30, tzinfo=ZoneInfo("UTC"))


def test_five_fields_fire_on_the_minute_in_the_time_zone() -> None:
    trigger = triggers.cron_trigger("0 9 * * *", "Europe/London")
    start = datetime(2024, 6, 1, tzinfo=ZoneInfo("UTC"))
    fire = trigger.get_next_fire_time(None, start)
    assert fire is not None
    assert fire.astimezone(ZoneInfo("UTC")) == datetime(2024, 6, 1, 8, 0, tzinfo=ZoneInfo("UTC"))


def test_cron_trigger_refuses_a_bad_time_zone_with_value_error() -> None:
    with pytest.raises(ValueError, match="not an IANA time zone"):
        triggers.cron_trigger("0 9 * * *", "Mars/Olympus")


# --- invalid-cron -------------------------------------------------------------------------------


def test_valid_schedule_has_no_findings() -> None:
    assert triggers.check(workflow(schedule("0 9 * * 1-5", timezone="Europe/London"))) == []


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("61 9 * * *", "minute field `61`"),
        ("0 25 * * *", "hour field `25`"),
        ("0 9 32 * *", "day-of-month field `32`"),
        ("0 9 * 13 *", "month field `13`"),
        ("0 9 * * 8", "day-of-week field `8`"),
        ("0 9 * * fri-mon", "runs backwards"),
        ("0 9 * * 1/0", "step `0`"),
        ("60 0 9 * * *", "second field `60`"),
        ("0 9 * *", "it has 4 fields, not 5 or 6"),
        ("* * * * * * *", "it has 7 fields"),
        ("", "it has 0 fields"),
        ("0 9 1 * 1", "restricts both day-of-month and day-of-week"),
    ],
)
def test_invalid_cron(cron: str, reason: str) -> None:
    finding = only(triggers.check(workflow(schedule(cron))), "invalid-cron")
    assert finding.path == ("triggers", 0, "cron")
    assert reason in finding.message
    assert "trigger `nightly`" in finding.message
    assert "minute hour day-of-month month day-of-week, e.g. 0 9 * * 1-5" in finding.message


def test_invalid_cron_carries_apscheduler_reason() -> None:
    finding = only(triggers.check(workflow(schedule("61 * * * *"))), "invalid-cron")
    assert "higher than the maximum value (59)" in finding.message


@pytest.mark.parametrize(
    "cron", ["*/5 * * * *", "0 9 * jan,feb sun", "0 0 */2 * 1", "0 9 last * *"]
)
def test_other_valid_crons(cron: str) -> None:
    assert triggers.check(workflow(schedule(cron))) == []


# --- invalid-timezone ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timezone", "suggestion"),
    [
        ("Europe/Londn", "Europe/London"),
        ("europe/london", "Europe/London"),
        ("America/New_Yrok", "America/New_York"),
    ],
)
def test_invalid_timezone_suggests_a_name(timezone: str, suggestion: str) -> None:
    finding = only(
        triggers.check(workflow(schedule("0 9 * * *", timezone=timezone))), "invalid-timezone"
    )
    assert finding.path == ("triggers", 0, "timezone")
    assert f"`{timezone}` is not an IANA time zone" in finding.message
    assert f"did you mean `{suggestion}`?" in finding.message


@pytest.mark.parametrize(
    "timezone", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "Europe", " UTC"]
)
def test_invalid_timezone_names(timezone: str) -> None:
    findings = triggers.check(workflow(schedule("0 9 * * *", timezone=timezone)))
    finding = only(findings, "invalid-timezone")
    assert f"`{timezone}` is not an IANA time zone" in finding.message
    assert "UTC, Europe/London or America/New_York" in finding.message
    assert [f.rule for f in findings] == ["invalid-timezone"]


def test_invalid_timezone_without_a_close_name_has_no_guess() -> None:
    findings = triggers.check(workflow(schedule("0 9 * * *", timezone="Mars/Olympus")))
    assert "did you mean" not in only(findings, "invalid-timezone").message


def test_bad_cron_and_bad_timezone_are_both_reported() -> None:
    findings = triggers.check(workflow(schedule("0 99 * * *", timezone="Nowhere/City")))
    assert sorted(f.rule for f in findings) == ["invalid-cron", "invalid-timezone"]


# --- duplicate-trigger-id -----------------------------------------------------------------------


def test_duplicate_trigger_id_points_at_the_second() -> None:
    wf = workflow(
        schedule("0 9 * * *"),
        {"id": "manual", "type": "manual"},
        {"id": "nightly", "type": "webhook", "path": "hook"},
    )
    finding = only(triggers.check(wf), "duplicate-trigger-id")
    assert finding.path == ("triggers", 2, "id")
    assert "`nightly` is already used by triggers[0]" in finding.message


def test_distinct_trigger_ids_are_fine() -> None:
    wf = workflow(
        {"id": "a", "type": "manual"},
        {"id": "b", "type": "webhook", "path": "hook", "signature": "none"},
    )
    assert triggers.check(wf) == []


def test_a_webhook_must_say_how_it_is_signed() -> None:
    wf = workflow(
        {"id": "silent", "type": "webhook", "path": "a"},
        {"id": "open", "type": "webhook", "path": "b", "signature": "none"},
        {"id": "signed", "type": "webhook", "path": "c", "signature": "github", "secretRef": "s"},
    )
    finding = only(triggers.check(wf), "webhook-unsigned")
    assert finding.path == ("triggers", 0)
    assert "`silent` has no `signature`" in finding.message
    assert "`signature: none`" in finding.message
    # `none` is the absence of a signature at run time: nothing to verify, no secret needed.
    open_hook = wf.triggers[1]
    assert open_hook.signature is None and open_hook.unsigned


# --- import cost --------------------------------------------------------------------------------


def test_apscheduler_is_imported_only_for_schedules() -> None:
    code = (
        "import sys\n"
        "from runner.spec import expressions, triggers\n"
        "from runner.spec.model import Workflow\n"
        "wf = Workflow.from_data({'id': 'w', 'startNode': 'a', 'nodes': [{'id': 'a',"
        " 'actionType': 'core.echo', 'parameters': {'x': 'plain'}}],"
        " 'triggers': [{'id': 'm', 'type': 'manual'}]})\n"
        "assert triggers.check(wf) == [] and expressions.check(wf) == []\n"
        "heavy = [m for m in ('apscheduler', 'jinja2', 'quickjs') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
