"""JavaScript conditions: the breakout-proof compile shared by lint and the engine (SPEC §4).

Lint compiles a condition and never runs it; the engine (`runner.engine.conditions`) compiles it
with this same wrapper in a fresh QuickJS context and calls it. quickjs is imported lazily.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.spec.limits import (
    DEFAULT_CONDITION_MEMORY_LIMIT_BYTES,
    DEFAULT_CONDITION_TIME_LIMIT_SECONDS,
)

if TYPE_CHECKING:
    import quickjs

#: The parameters of a compiled condition, in call order.
CONDITION_SCOPE = ("trigger", "event", "vars", "nodes", "execution", "result")


_CONDITION_CACHE_SIZE = 4096
_JS_OBJECT_ATTRIBUTES = frozenset(dir(object)) | {
    "constructor",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toLocaleString",
    "toString",
    "valueOf",
}

# A label no condition can know: the function body ends with `break <label>`, which only parses
# inside the labelled block. QuickJS's Function constructor evaluates "(function anonymous(…) {"
# + body + "})" as one script, so a condition that closed the brackets around it could run code
# at construction; with the guard such a condition is a SyntaxError, raised before anything runs.
_GUARD = f"__dwf_guard_{os.urandom(16).hex()}"
_SOURCE_GLOBAL = "__dwf_condition_source"
_CONSTRUCT = f"new Function({', '.join(repr(p) for p in CONDITION_SCOPE)}, {_SOURCE_GLOBAL})"
# The condition's first line in QuickJS's error positions: the constructor's two header lines,
# then the label line and the `return` line of the body.
_FIRST_SOURCE_LINE = 5
_ERROR_POSITION = re.compile(r"at <input>:(\d+):(\d+)")
_local = threading.local()


def condition_context() -> quickjs.Context:
    """This thread's QuickJS context for compiling conditions, with time and memory limits."""
    context = getattr(_local, "context", None)
    if context is None:
        import quickjs

        # QuickJS contexts must not be shared between threads, even one at a time.
        context = quickjs.Context()
        context.set_time_limit(DEFAULT_CONDITION_TIME_LIMIT_SECONDS)
        context.set_memory_limit(DEFAULT_CONDITION_MEMORY_LIMIT_BYTES)
        _local.context = context
    return context


def _function_body(source: str, opener: str, closer: str) -> str:
    return f"{_GUARD}: {{\nreturn {opener}\n{source}\n{closer};\nbreak {_GUARD};\n}}"


def compile_condition(context: quickjs.Context, source: str) -> quickjs.Object:
    """Compile a condition into a function of CONDITION_SCOPE without running any of it.

    Raises ValueError with QuickJS's message when it is not exactly one JavaScript expression.
    """
    import quickjs

    if not source.strip():
        raise ValueError("the condition is empty; write a JavaScript expression")
    functions = []
    # Compiled twice: `(src)` gives the natural error for a typo and is the function returned;
    # `[src]` then rejects sources valid only by closing the parenthesis and reopening one
    # (`1); while(1){}; (1`), which would otherwise compile into a statement list.
    for opener, closer in (("(", ")"), ("[", "]")):
        context.set(_SOURCE_GLOBAL, _function_body(source, opener, closer))
        try:
            functions.append(context.eval(_CONSTRUCT))
        except quickjs.JSException as exc:
            raise ValueError(_condition_message(source, str(exc), opener == "[")) from exc
        finally:
            context.set(_SOURCE_GLOBAL, None)
    return functions[0]


def _condition_message(source: str, error: str, second_pass: bool) -> str:
    lines = error.splitlines()
    reason = lines[0] if lines else "SyntaxError"
    if "label not found" in reason:
        return "not a single JavaScript expression: it closes the brackets around the condition"
    position = _ERROR_POSITION.search(error)
    where = ""
    if position is not None:
        line = int(position.group(1)) - _FIRST_SOURCE_LINE + 1
        source_lines = source.count("\n") + 1
        if line > source_lines:
            where = " at the end of the condition"
        elif line >= 1:
            where = f" at line {line}, column {position.group(2)} of the condition"
    if "stack" in reason.lower():
        return f"the condition nests too deeply to compile ({reason})"
    if second_pass:
        problem = "not a single JavaScript expression (statements, `;` or unbalanced brackets)"
        return f"{problem}: {reason}{where}"
    return f"{reason}{where}"


@functools.lru_cache(maxsize=_CONDITION_CACHE_SIZE)
def condition_error(source: str) -> str | None:
    """Why a condition does not compile, or None when it does; cached by source text."""
    try:
        compile_condition(condition_context(), source)
    except ValueError as exc:
        return str(exc)
    return None


# String literals and comments are matched (and skipped) as whole tokens so that text such as
# 'see nodes.x' is not taken for a read; `nodes['x']` matches from `nodes`, before its string.
_JS_READS = re.compile(
    r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|//[^\n]*|/\*.*?\*/"""
    r"|(?<![\w$.])(nodes|vars)(?![\w$])"
    r"(?:\s*(?:\??\.\s*([A-Za-z_$][\w$]*)"
    r"""|(?:\?\.\s*)?\[\s*(?:'([^'\\\n]*)'|"([^"\\\n]*)")\s*\]))?""",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class ConditionInfo:
    """What the rules need to know about one condition; computed once per distinct source."""

    error: str | None
    node_refs: tuple[str, ...] = ()
    var_refs: frozenset[str] = frozenset()
    reads_all_vars: bool = False
    #: `nodes.constructor`: ("nodes" | "vars", name) read through a name every object has; an
    #: own key of that name, if the workflow has one, is what JavaScript reads.
    method_reads: tuple[tuple[str, str], ...] = ()


@functools.lru_cache(maxsize=_CONDITION_CACHE_SIZE)
def analyse_condition(source: str) -> ConditionInfo:
    """Compile a condition (never run it) and find its literal `nodes` and `vars` reads."""
    error = condition_error(source)
    if error is not None:
        return ConditionInfo(error)
    node_refs: dict[str, None] = {}
    var_refs: set[str] = set()
    method_reads: dict[tuple[str, str], None] = {}
    whole = False
    for match in _JS_READS.finditer(source):
        name, attr = match.group(1), match.group(2)
        if name is None:  # a string literal or a comment
            continue
        key = attr if attr is not None else match.group(3) or match.group(4)
        if attr is not None and attr in _JS_OBJECT_ATTRIBUTES:
            method_reads[(name, attr)] = None
        elif not key:
            whole = whole or name == "vars"
        elif name == "nodes":
            node_refs[key] = None
        else:
            var_refs.add(key)
    return ConditionInfo(None, tuple(node_refs), frozenset(var_refs), whole, tuple(method_reads))
