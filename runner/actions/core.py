"""Built-in actions: `core.echo` (with scripted failures, for tests and demos) and `core.delay`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.actions.base import Action, ActionContext, ActionResult
from runner.spec.durations import DURATION_PATTERN, parse_duration


class Echo(Action):
    """Return the message; `failTimes: N` makes the first N attempts fail (`failMode`)."""

    type = "core.echo"
    description = "Echo a message back as the output `echo`; optionally fail the first N attempts."
    parameters_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["message"],
        "properties": {
            "message": {"description": "What to echo; any JSON value."},
            "failTimes": {
                "type": "integer",
                "minimum": 0,
                "description": "Fail this many first attempts (to exercise retries).",
            },
            "failMode": {
                "enum": ["transient", "permanent"],
                "description": "How the scripted failures fail: transient ones are retried.",
            },
        },
    }
    outputs_schema = {
        "type": "object",
        "properties": {"echo": {"description": "The message, unchanged."}},
    }

    async def execute(self, context: ActionContext, params: Mapping[str, Any]) -> ActionResult:
        """Echo, or fail while `context.attempt <= failTimes`."""
        if context.attempt <= params.get("failTimes", 0):
            transient = params.get("failMode", "transient") == "transient"
            return ActionResult.failed(
                "ScriptedFailure",
                f"core.echo failed attempt {context.attempt} of the first {params['failTimes']} "
                "on purpose (failTimes)",
                transient=transient,
            )
        return ActionResult.ok({"echo": params["message"]})


class Delay(Action):
    """Wait for a duration, then succeed."""

    type = "core.delay"
    description = "Wait for `duration` (e.g. 250ms, 5s), then succeed."
    parameters_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["duration"],
        "properties": {
            "duration": {
                "type": "string",
                "pattern": DURATION_PATTERN,
                "description": "How long to wait: 250ms, 30s, 5m, 1h30m.",
            }
        },
    }
    outputs_schema = {
        "type": "object",
        "properties": {"waitedSeconds": {"type": "number", "description": "The wait, in seconds."}},
    }

    async def execute(self, context: ActionContext, params: Mapping[str, Any]) -> ActionResult:
        """Sleep without blocking the event loop."""
        import asyncio  # here, not at the top: `dwf lint` loads this module and starts faster

        seconds = parse_duration(params["duration"])
        await asyncio.sleep(seconds)
        return ActionResult.ok({"waitedSeconds": seconds})


#: Built-ins are known without scanning entry points, which keeps `dwf lint` start-up fast.
BUILTINS: dict[str, type[Action]] = {cls.type: cls for cls in (Echo, Delay)}
