"""The bounded Jinja sandbox that lint parses with and the engine renders with (SPEC §4, §14).

Jinja's ImmutableSandboxedEnvironment refuses unsafe attributes and mutation; this subclass also
bounds what one render may cost:

- size: `*`, `**` and `%`, and the filters, globals and str methods that multiply their input
  (center, indent, format, join, replace, batch, lipsum, ...) refuse a result larger than
  `max_bytes` before computing it; values stored in a namespace, returned by a call or printed
  are measured too;
- time: every loop step and every call counts against a deadline.

`x.name` on a mapping reads its key `name` before its method: node ids and payload keys such as
`get`, `items` or `keys` are data first (lint resolves them the same way).

The bounds of a render are set with `limits(...)`; outside it sizes are capped at
DEFAULT_MAX_BYTES and time is unbounded (lint only parses). This module imports jinja2: import it
lazily (`runner.spec.expressions.template_environment` does).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
import re
import string
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, generate_lorem_ipsum

from runner.errors import TemplateRenderError
from runner.spec.limits import DEFAULT_MAX_RENDERED_BYTES

DEFAULT_MAX_BYTES = DEFAULT_MAX_RENDERED_BYTES
# About 4,300 digits: the longest integer Python will still convert to text.
MAX_INTEGER_BITS = 14_000
# Item counts a filter may be asked to produce from nothing (Jinja's own MAX_RANGE).
MAX_COUNT = 100_000
MAX_JSON_INDENT = 16
_STEPS_PER_CLOCK_READ = 64
_SEQUENCES = (str, bytes, list, tuple)
_SIZED = (str, bytes, list, tuple, dict)
# Concrete types first: an isinstance against the Mapping ABC alone is slow on the hot path.
_MAPPINGS = (dict, types.MappingProxyType, Mapping)
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


@dataclass(slots=True)
class Limits:
    """The bounds of one render; `step` is called at every loop iteration and call."""

    max_bytes: int = DEFAULT_MAX_BYTES
    time_limit: float | None = None
    deadline: float = math.inf
    steps: int = 0

    def step(self) -> None:
        if self.time_limit is None:
            return
        self.steps += 1
        # Reading the clock costs more than the step itself: read it every few steps.
        if self.steps % _STEPS_PER_CLOCK_READ == 0 and time.monotonic() > self.deadline:
            raise TemplateRenderError(f"rendering took longer than {self.time_limit:g} s")


_UNBOUNDED_TIME = Limits()
_current: ContextVar[Limits | None] = ContextVar("dwf_template_limits", default=None)


def _active() -> Limits:
    return _current.get() or _UNBOUNDED_TIME


@contextlib.contextmanager
def limits(max_bytes: int, time_limit: float | None = None) -> Iterator[Limits]:
    """Bound every render in the block (this thread or task): value sizes and elapsed time."""
    deadline = math.inf if time_limit is None else time.monotonic() + time_limit
    active = Limits(max_bytes, time_limit, deadline)
    token = _current.set(active)
    try:
        yield active
    finally:
        _current.reset(token)


def _too_large(what: str) -> NoReturn:
    raise TemplateRenderError(f"{what} would make a value larger than {_active().max_bytes} bytes")


def _check(size: int, what: str) -> None:
    if size > _active().max_bytes:
        _too_large(what)


def tree_size(value: Any, limit: int) -> int:
    """Roughly the bytes `value` prints as, counting shared parts each time; stops past `limit`.

    Counting shared parts matters: `[a, a]` nested 60 times is small in memory but prints as 2**60.
    """
    size = 0
    stack = [value]
    while stack and size <= limit:
        item = stack.pop()
        # Concrete types first: an isinstance against the Mapping ABC is slow on big data.
        if isinstance(item, str | bytes):
            size += len(item) + 2
        elif item is None or isinstance(item, int | float):
            size += 8
        elif isinstance(item, list | tuple | set | frozenset):
            size += 2 + len(item)
            stack.extend(item)
        elif isinstance(item, dict | Mapping):
            size += 2 + len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            size += 8
    return size


def _check_tree(value: Any, what: str) -> None:
    limit = _active().max_bytes
    if tree_size(value, limit) > limit:
        _too_large(what)


# --- Operators ----------------------------------------------------------------------------------


def _check_multiply(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INTEGER_BITS:
            raise TemplateRenderError(
                f"`*` would make an integer larger than {MAX_INTEGER_BITS} bits"
            )
        return
    sequence, count = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(sequence, _SEQUENCES) and isinstance(count, int) and count > 1:
        limit = _active().max_bytes
        unit = len(sequence) if isinstance(sequence, str | bytes) else tree_size(sequence, limit)
        if unit * count > limit:
            _too_large("`*`")


def _check_power(base: Any, exponent: Any) -> None:
    if not (isinstance(base, int) and isinstance(exponent, int) and exponent > 0):
        return
    # An upper bound of the result's bit length, known before computing anything.
    if abs(base) > 1 and base.bit_length() * exponent > MAX_INTEGER_BITS:
        raise TemplateRenderError(f"`**` would make an integer larger than {MAX_INTEGER_BITS} bits")


def _check_percent_format(template: str | bytes, args: Any, what: str) -> None:
    """Refuse `%` formatting whose field widths or arguments would make a huge string."""
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    limit = _active().max_bytes
    dynamic = False
    for match in _PERCENT_SPEC.finditer(text):
        for number in match.groups():
            if number == "*":
                dynamic = True
            elif number is not None and (len(number) > 9 or int(number) > limit):
                _too_large(what)
    _check_arguments(args if isinstance(args, tuple) else (args,), {}, dynamic, what)


def _check_brace_format(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse `str.format` whose field widths or arguments would make a huge string."""
    limit = _active().max_bytes
    dynamic = False
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # the call itself reports the malformed format string
    for _, _, spec, _ in fields:
        if not spec:
            continue
        dynamic = dynamic or "{" in spec
        if any(len(n) > 9 or int(n) > limit for n in _DIGITS.findall(spec)):
            _too_large("`format`")
    _check_arguments(args, kwargs, dynamic, "`format`")


def _check_arguments(
    args: Iterable[Any], kwargs: Mapping[str, Any], dynamic_width: bool, what: str
) -> None:
    limit = _active().max_bytes
    for value in (*args, *kwargs.values()):
        if dynamic_width and isinstance(value, int) and value > limit:
            _too_large(what)
        if tree_size(value, limit) > limit:
            _too_large(what)


def _replace_size(text: str | bytes, old: Any, new: Any, count: Any) -> int:
    if not isinstance(old, str | bytes) or not isinstance(new, str | bytes):
        return len(text)
    # A str/bytes mix raises TypeError here, as the call being checked would.
    occurrences = len(text) + 1 if not old else text.count(old)  # type: ignore[arg-type]  # see above
    if isinstance(count, int) and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * max(len(new) - len(old), 0)


# --- Filters, globals and methods that multiply their input -------------------------------------


def _guard_filter(function: Callable[..., Any], check: Callable[[dict[str, Any]], None]) -> Any:
    """Wrap a filter so `check` sees (and may replace) its bound arguments before it runs."""
    parameters = list(inspect.signature(function).parameters.values())
    # A filter marked pass_eval_context/pass_environment gets that object first; Jinja's async
    # variants add the mark without the parameter showing in the wrapped signature.
    if parameters and parameters[0].name in ("eval_ctx", "environment", "context"):
        parameters = parameters[1:]
    signature = inspect.Signature(parameters)
    leading = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)  # keeps Jinja's pass_eval_context / pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args[leading:], **kwargs)
        bound.apply_defaults()
        check(bound.arguments)
        return function(*args[:leading], *bound.args, **bound.kwargs)

    return guarded


def _center(a: dict[str, Any]) -> None:
    if isinstance(a["width"], int):
        _check(a["width"], "`center`")


def _indent(a: dict[str, Any]) -> None:
    text, width = str(a["s"]), a["width"]
    pad = width if isinstance(width, int) else len(str(width))
    _check(len(text) + (text.count("\n") + 1) * pad, "`indent`")


def _wordwrap(a: dict[str, Any]) -> None:
    text, width, wrap = str(a["s"]), a["width"], a["wrapstring"]
    if isinstance(width, int) and width > 0:
        breaks = len(text) // width + 1
        _check(len(text) + breaks * len(str(wrap or "\n")), "`wordwrap`")


def _format(a: dict[str, Any]) -> None:
    _check_percent_format(str(a["value"]), a["args"] or a["kwargs"], "`format`")


def _batch(a: dict[str, Any]) -> None:
    count = a["linecount"]
    if isinstance(count, int) and count > MAX_COUNT and a["fill_with"] is not None:
        raise TemplateRenderError(f"`batch` of more than {MAX_COUNT} items with a filler")


def _slice(a: dict[str, Any]) -> None:
    if isinstance(a["slices"], int) and a["slices"] > MAX_COUNT:
        raise TemplateRenderError(f"`slice` into more than {MAX_COUNT} slices")


def _replace(a: dict[str, Any]) -> None:
    _check(_replace_size(str(a["s"]), a["old"], a["new"], a["count"]), "`replace`")


def _join(a: dict[str, Any]) -> None:
    items = a["value"] = tuple(a["value"])  # a generator can be read once: keep what we measure
    separator = len(str(a["d"])) * max(len(items) - 1, 0)
    _check(separator + tree_size(items, _active().max_bytes), "`join`")


def _tojson(a: dict[str, Any]) -> None:
    indent = a["indent"]
    width = indent if isinstance(indent, int) else len(str(indent or ""))
    if width > MAX_JSON_INDENT:
        raise TemplateRenderError(f"`tojson` indent above {MAX_JSON_INDENT}")
    _check_tree(a["value"], "`tojson`")


def _guard_printing(function: Callable[[Any], str], name: str) -> Callable[[Any], str]:
    """`string` and `pprint`, measuring a structure first (cheaply: `map('string')` is common)."""

    @functools.wraps(function)
    def guarded(value: Any) -> str:
        if not isinstance(value, str | int | float):
            _check_tree(value, f"`{name}`")
        return function(value)

    return guarded


_FILTER_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "format": _format,
    "batch": _batch,
    "slice": _slice,
    "replace": _replace,
    "join": _join,
    "tojson": _tojson,
}


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja's `lipsum`, refusing sizes that would pass the limit (about 8 bytes a word)."""
    if n > 0 and max > 0:
        _check(n * max * 8, "`lipsum`")
    return generate_lorem_ipsum(n, html, min, max)


class _Namespace(Namespace):
    """`namespace()` whose attributes are measured when set, as loops can grow them."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # Namespace's signature: `self` may be a key
        _check_tree((args[1:], kwargs), "`namespace`")
        Namespace.__init__(*args, **kwargs)

    def __setitem__(self, name: str, value: Any) -> None:
        _check_tree(value, f"setting `{name}`")
        Namespace.__setitem__(self, name, value)


def _check_method_call(
    target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Refuse str/bytes/int method calls that would make a huge value; returns the args to use."""
    owner, name = target.__self__, target.__name__
    if isinstance(owner, int) and name == "to_bytes":
        length = args[0] if args else kwargs.get("length", 1)
        _check(length if isinstance(length, int) else 0, "`to_bytes`")
    if not isinstance(owner, str | bytes):
        return args
    what = f"`{name}`"
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        _check(args[0], what)
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        tab = b"\t" if isinstance(owner, bytes) else "\t"
        if isinstance(tabsize, int):
            # `tab` has the type of `owner`; mypy cannot tie the two together.
            _check(len(owner) + owner.count(tab) * tabsize, what)  # type: ignore[arg-type]  # see above
    elif name == "replace" and len(args) >= 2:
        _check(_replace_size(owner, args[0], args[1], args[2] if len(args) > 2 else -1), what)
    elif name == "join" and args:
        items = tuple(args[0])
        separator = len(owner) * max(len(items) - 1, 0)
        _check(separator + tree_size(items, _active().max_bytes), what)
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        _check(len(owner) * longest, what)
    elif name in ("format", "format_map") and isinstance(owner, str):
        mapping = args[0] if name == "format_map" and args else {}
        _check_brace_format(owner, () if name == "format_map" else args, {**mapping, **kwargs})
    return args


# --- The environment ----------------------------------------------------------------------------


class _CodeGenerator(CodeGenerator):
    """Compiles loops to step the time budget, and `~` to measure what it joins."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        node = copy.copy(node)
        node.iter = nodes.Call(
            nodes.EnvironmentAttribute("stepped"), [node.iter], [], None, None, lineno=node.lineno
        )
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat(context.eval_ctx, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, strict about undefined names, with bounded size and time."""

    intercepted_binops = frozenset({"*", "**", "%"})
    code_generator_class = _CodeGenerator

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, finalize=_finalize)
        self.globals["lipsum"] = _lipsum
        self.globals["namespace"] = _Namespace
        for name, check in _FILTER_CHECKS.items():
            self.filters[name] = _guard_filter(self.filters[name], check)
        for name in ("string", "pprint"):
            self.filters[name] = _guard_printing(self.filters[name], name)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """`*`, `**` and `%`, refused when the result would be huge (checked before computing)."""
        if operator == "*":
            _check_multiply(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif isinstance(left, str | bytes):
            _check_percent_format(left, right, "`%`")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`x.name`: a key of a mapping wins over its method, so `nodes.get` is the node `get`
        and `trigger.items` the payload's `items` (Jinja alone reads the method first)."""
        if isinstance(obj, _MAPPINGS):
            try:
                return obj[attribute]
            except (TypeError, LookupError):
                pass
        return super().getattr(obj, attribute)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """A sandboxed call that steps the time budget and measures arguments and result."""
        _active().step()
        # `str.format` arrives wrapped by the sandbox; the wrapper keeps the method as __wrapped__.
        target = getattr(obj, "__wrapped__", obj)
        if isinstance(target, types.BuiltinMethodType) and target.__self__ is not None:
            args = _check_method_call(target, args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        if isinstance(result, _SIZED) and len(result) > _active().max_bytes:
            _too_large("the call")
        return result

    def stepped(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Iterate, stepping the time budget at each item (loops compile to this)."""
        limits = _active()
        for item in iterable:
            limits.step()
            yield item

    def bounded_concat(self, eval_ctx: EvalContext, parts: tuple[Any, ...]) -> str:
        """`a ~ b`, measuring the parts first: a shared structure can print huge."""
        limit = _active().max_bytes
        size = 0
        for part in parts:
            size += len(part) if isinstance(part, str) else tree_size(part, limit)
        if size > limit:
            _too_large("`~`")
        return markup_join(parts) if eval_ctx.autoescape else str_join(parts)


def _finalize(value: Any) -> Any:
    """Every `{{ … }}` output passes here: refuse structures that would print huge."""
    if isinstance(value, str | int | float):
        return value
    if isinstance(value, list | tuple | dict | Mapping):
        _check_tree(value, "printing")
    elif (hint := method_hint(value)) is not None:
        raise TemplateRenderError(hint)
    return value


def method_hint(value: Any) -> str | None:
    """Why `outputs.items` printed a method: the object has no key `items` (a key would win)."""
    if not isinstance(value, types.BuiltinMethodType) or not isinstance(value.__self__, Mapping):
        return None
    name = value.__name__
    return (
        f"`.{name}` is the object's method `{name}`: the object has no key `{name}` "
        f"(a key would be read first, as `.{name}` or `['{name}']`)"
    )


def environment() -> BoundedEnvironment:
    """A new bounded environment (callers share one: `expressions.template_environment`)."""
    return BoundedEnvironment()
