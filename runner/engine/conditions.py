"""Evaluating conditions at run time (SPEC §4): JavaScript in a fresh, limited QuickJS context.

Each evaluation gets its own context, so nothing one condition does is seen by the next and no
context is ever shared between threads. The condition is compiled with lint's breakout-proof
wrapper (`runner.spec.conditions.compile_condition`); the scope goes in as JSON data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import quickjs

from runner.errors import ConditionError
from runner.spec import conditions, limits

# What a condition needs in order to throw a value of its own (`eval` and `Function` build code).
_MAY_THROW = re.compile(r"\b(?:throw|eval|Function)\b")


def evaluate(
    source: str,
    scope: Mapping[str, Any],
    *,
    where: str,
    time_limit: float = limits.DEFAULT_CONDITION_TIME_LIMIT_SECONDS,
    memory_limit: int = limits.DEFAULT_CONDITION_MEMORY_LIMIT_BYTES,
) -> bool:
    """Run a condition over `scope` (trigger, event, vars, nodes, execution, result): true or false.

    Raises ConditionError naming `where` if it does not compile, throws, runs out of time, memory
    or stack, or returns anything but a boolean.
    """
    outcome = _run(source, scope, time_limit, memory_limit)
    if isinstance(outcome, bool):
        return outcome
    # Raised only now, with no QuickJS exception as its cause: a traceback would keep the context
    # alive, and a context must be freed on the thread that made it.
    raise ConditionError(f"condition on {where} {outcome}")


def _run(source: str, scope: Mapping[str, Any], time_limit: float, memory_limit: int) -> bool | str:
    """The condition's boolean, or why there is none (a str that follows "condition on X ")."""
    try:
        arguments = [
            json.dumps(scope.get(name), default=_jsonable, allow_nan=False)
            for name in conditions.CONDITION_SCOPE
        ]
    except (TypeError, ValueError, RecursionError) as exc:
        return f"cannot be given its scope: {exc}"
    context = quickjs.Context()
    context.set_time_limit(time_limit)
    context.set_memory_limit(memory_limit)
    try:
        function = conditions.compile_condition(context, source)
    except ValueError as exc:
        return f"does not compile: {exc}"
    try:
        result = function(*(context.parse_json(text) for text in arguments))
    except quickjs.JSException as exc:
        return _failure(str(exc), source, time_limit, memory_limit)
    except TypeError:  # a value the binding cannot convert to Python
        return "must return true or false; it returned a BigInt or another non-JSON value"
    if isinstance(result, bool):
        return result
    return f"must return true or false; it returned {_describe(result)}"


def _failure(message: str, source: str, time_limit: float, memory_limit: int) -> str:
    first = message.splitlines()[0] if message else "an error"
    if first == "InternalError: interrupted":
        return f"took longer than {time_limit * 1000:g} ms and was stopped"
    out_of_memory = f"ran out of memory (limit {_bytes_text(memory_limit)}) and was stopped"
    if first in ("InternalError: out of memory", "[uninitialized]"):
        return out_of_memory
    if first == "null":
        # QuickJS throws null when memory runs out before it can make the error itself; only
        # code that can throw (`throw`, or code built at run time) may have thrown it.
        if _MAY_THROW.search(source) is None:
            return out_of_memory
        size = _bytes_text(memory_limit)
        return f"threw null (QuickJS also throws null when memory runs out, limit {size})"
    if "stack size exceeded" in first or "stack overflow" in first:
        return f"recursed too deeply and was stopped ({first})"
    return f"threw {first}"


def _bytes_text(size: int) -> str:
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def _describe(value: Any) -> str:
    if value is None:
        return "null or undefined"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return f"the string {json.dumps(shown)}"
    text = value.json() if isinstance(value, quickjs.Object) else None
    if text is None:
        return "a function"
    return "an array" if text.startswith("[") else "an object"


def _jsonable(value: Any) -> Any:
    """The scope may hold the frozen model's mapping proxies and tuples: JSON them as objects."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"a {type(value).__name__} is not JSON data")
