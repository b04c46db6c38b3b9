"""The action call, and what wraps it: one signature, composed like starlette's middleware.

    call = stack(action.execute, [masking, validating(cls), checking, timing_out(30.0)])
    result = await call(context, parameters)

An `ActionCall` takes (context, parameters) and returns an `ActionResult`; a `Wrapper` takes a
call and returns one. Cross-cutting behaviour (parameter validation, the attempt's timeout,
turning exceptions and malformed results into failures, masking secrets, and later tracing and
metrics) is each one wrapper, added in one place (`stack`'s list), never edited into the engine.
The first wrapper in the list is the outermost: `checking` goes outside `timing_out`, so an
action's own TimeoutError counts as a timeout (transient), as the limit's does.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from runner.actions.base import Action, ActionContext, ActionResult
from runner.spec import storable
from runner.spec.diagnostics import DocPath, format_path
from runner.spec.durations import format_duration

ActionCall = Callable[[ActionContext, Any], Awaitable[ActionResult]]
Wrapper = Callable[[ActionCall], ActionCall]


def stack(call: ActionCall, wrappers: Sequence[Wrapper]) -> ActionCall:
    """`call` inside `wrappers`, the first of them outermost."""
    for wrap in reversed(wrappers):
        call = wrap(call)
    return call


def for_action(
    action_cls: type[Action], timeout: float, wrappers: Sequence[Wrapper] = ()
) -> ActionCall:
    """The engine's call of one action type: `wrappers` (tracing, metrics) outermost, then
    masking, parameter validation, the exception and result check, and the attempt's timeout."""
    inner = [masking, validating(action_cls), checking, timing_out(timeout)]
    return stack(action_cls().execute, [*wrappers, *inner])


def masking(call: ActionCall) -> ActionCall:
    """Secret values masked in the result where it comes from: what the engine keeps (and
    routes on) and what it stores agree."""

    async def masked(context: ActionContext, params: Any) -> ActionResult:
        return (await call(context, params)).masked()

    return masked


def validating(action_cls: type[Action]) -> Wrapper:
    """Refuse parameters that do not fit the action's schema, before it runs (permanent)."""

    def wrap(call: ActionCall) -> ActionCall:
        async def validated(context: ActionContext, params: Any) -> ActionResult:
            problem = parameter_problem(action_cls, params)
            if problem is not None:
                return ActionResult.failed("InvalidParameters", problem)
            return await call(context, params)

        return validated

    return wrap


def timing_out(seconds: float) -> Wrapper:
    """Bound each attempt; an attempt past the limit is a transient `Timeout`."""

    def wrap(call: ActionCall) -> ActionCall:
        async def timed(context: ActionContext, params: Any) -> ActionResult:
            try:
                async with asyncio.timeout(seconds):
                    return await call(context, params)
            except TimeoutError:
                limit = format_duration(seconds)
                return ActionResult.failed(
                    "Timeout",
                    f"attempt {context.attempt} timed out after {limit}",
                    transient=True,
                )

        return timed

    return wrap


def checking(call: ActionCall) -> ActionCall:
    """An action's exception fails its node (never the process), and so does a result the
    engine cannot accept (not an ActionResult, an unknown status, outputs that are not JSON or
    hold text Postgres cannot store)."""

    async def checked(context: ActionContext, params: Any) -> ActionResult:
        try:
            result = await call(context, params)
        except (Exception, SystemExit) as exc:
            return ActionResult.failed(type(exc).__name__, str(exc) or type(exc).__name__)
        return _acceptable(result, context.node_id)

    return checked


def parameter_problem(action_cls: type[Action], parameters: Any) -> str | None:
    """None when rendered parameters fit the action's schema, else the first problem's path."""
    fast, validator = _validator(action_cls)
    if fast is not None and fast(parameters):
        return None
    errors = sorted(validator.iter_errors(parameters), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    first = errors[0]
    return f"{format_path(('parameters', *first.absolute_path))}: {first.message}"


@functools.lru_cache(maxsize=256)
def _validator(action_cls: type[Action]) -> tuple[Any, Any]:
    # Keyed by class: a class's schema is fixed, and hashing the class costs nothing per attempt.
    # The compiled yes/no check is several times faster than jsonschema on valid parameters;
    # jsonschema confirms a "no" and words the problem.
    from jsonschema import Draft202012Validator

    from runner.spec.schema import compile_check

    schema = dict(action_cls.parameters_schema)
    return compile_check(schema), Draft202012Validator(schema)


def _acceptable(result: Any, node_id: str) -> ActionResult:
    """An action's result, or a Failed one saying why it cannot be accepted."""
    if not isinstance(result, ActionResult):
        return ActionResult.failed(
            "InvalidResult", f"the action returned {type(result).__name__}, not an ActionResult"
        )
    if result.status not in ("Succeeded", "Failed", "RetriableFailure"):
        return ActionResult.failed("InvalidResult", f"unknown status {result.status!r}")
    if result.status != "Succeeded" and result.error is None:
        return ActionResult.failed("InvalidResult", "a failed result must carry an error")
    try:
        dumped = json.dumps(dict(result.outputs), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return ActionResult.failed("InvalidResult", f"the outputs are not JSON data: {exc}")
    if result.status != "Succeeded":
        return result  # its outputs are not kept; its message is escaped where it is recorded
    found = None
    if storable.maybe_unstorable(dumped):
        found = storable.find(dict(result.outputs), ("outputs",))
    if found is None and result.resource_links:
        links = [
            {"system": link.system, "resourceType": link.resource_type,
             "externalId": link.external_id, "url": link.url}
            for link in result.resource_links
        ]  # fmt: skip
        found = storable.find(links, ("resourceLinks",))
    return result if found is None else _unstorable(node_id, *found)


def _unstorable(node_id: str, path: DocPath, problem: str) -> ActionResult:
    """A success whose result cannot be recorded fails its node (permanently: the same answer
    would fail again), so routing goes on as for any failure and nothing is lost silently."""
    return ActionResult.failed(
        "InvalidOutput",
        f"node `{node_id}` at `{format_path(path)}`: the value {problem}, which cannot be stored",
    )
