"""Rendering at run time (SPEC §4): every string of a JSON-like value, in lint's bounded sandbox.

A string that is exactly one `{{ expr }}` keeps the native type of its value; any other template
renders to a string; a string without Jinja markup is returned untouched. Values read from the
scope are data: they are converted to plain JSON data, never rendered as templates. A result
Postgres could not store (a NUL or a lone surrogate in any string or key) is a render error.

Secrets are placed, never transformed (`runner.spec.placement`, the analysis lint reports from):
a template that uses one otherwise, or names `secrets` where the scope has none (vars, outputs,
idempotency keys), is refused before anything of it runs, with a message naming the secret,
never its value. The analysis is made once per template text, and only for a text that holds
the word `secrets`: templates without secrets pay nothing.
"""

from __future__ import annotations

import functools
import math
import re
import types
from collections.abc import Mapping
from typing import Any, NamedTuple

from jinja2 import TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError

from runner.errors import MissingCredential, TemplateRenderError
from runner.spec import expressions, limits, placement, sandbox, storable
from runner.spec.diagnostics import DocPath, format_path

#: A render may take this long before it is stopped (counted at every loop step and call).
DEFAULT_RENDER_TIME_LIMIT_SECONDS = 0.5

_TEMPLATE_CACHE_SIZE = 4096
# Native values nested deeper than this are refused rather than risking Python's recursion limit.
_MAX_DEPTH = 200
# A rough cost, in bytes, of a number, true/false/null or a container's brackets in JSON.
_SCALAR_BYTES = 8
# `{{ expr }}` and nothing else, `-`/`+` whitespace control allowed; the inner text is compiled as
# one expression, and a text such as `{{ a }} {{ b }}` fails that and is rendered as a template.
_SINGLE_OUTPUT = re.compile(r"\{\{[-+]?(.*?)[-+]?\}\}", re.DOTALL)
_UNDEFINED_NAME = re.compile(r"'(.+)' is undefined")
_UNDEFINED_KEY = re.compile(r".+ has no (?:attribute|element) (.+)")


def render_value(
    value: Any,
    scope: Mapping[str, Any],
    *,
    where: str,
    path: str | DocPath = (),
    max_bytes: int = limits.DEFAULT_MAX_RENDERED_BYTES,
    time_limit: float | None = DEFAULT_RENDER_TIME_LIMIT_SECONDS,
    secrets: Any = None,
) -> Any:
    """Render every string inside `value` (keys are not rendered) and return plain JSON data.

    `where` ("node `post`") and `path` (the value's own path, e.g. "parameters") name the failing
    string in a TemplateRenderError; the whole result is capped at `max_bytes`. `secrets` (a
    `runner.actions.services.TemplateSecrets`) is what `{{ secrets.NAME }}` reads.
    """
    if secrets is not None:
        scope = {**scope, "secrets": secrets}
    renderer = _Renderer(scope, where, max_bytes)
    with sandbox.limits(max_bytes, time_limit):
        return renderer.value(value, (path,) if isinstance(path, str) else path)


class _Compiled(NamedTuple):
    """A template ready to render: a lone `{{ expr }}` (native) or a whole template, and how
    it uses secrets (None: it never names them)."""

    native: bool
    compiled: Any
    secrets: placement.SecretUse | None


@functools.lru_cache(maxsize=_TEMPLATE_CACHE_SIZE)
def _compiled(text: str) -> _Compiled:
    """A lone `{{ expr }}` as an expression, anything else as a template; secret uses judged."""
    env = expressions.template_environment()
    secrets = None
    if placement.SECRETS in text:  # a cheap test: most templates never name secrets
        secrets = placement.analyse(env.parse(text))
    single = _SINGLE_OUTPUT.fullmatch(text)
    if single is not None:
        try:
            expression = env.compile_expression(single.group(1), undefined_to_none=False)
            return _Compiled(True, expression, secrets)
        except TemplateSyntaxError:
            pass  # e.g. `{{ a }}-{{ b }}`: the template below says what it means
    return _Compiled(False, env.from_string(text), secrets)


class _Renderer:
    """One render_value call: its scope, where it renders, and how many bytes it produced."""

    def __init__(self, scope: Mapping[str, Any], where: str, max_bytes: int) -> None:
        self.scope = scope
        self.where = where
        self.max_bytes = max_bytes
        self.used = 0

    def add(self, size: int, path: DocPath) -> None:
        self.used += size
        if self.used > self.max_bytes:
            raise self.error(path, f"rendered value larger than {self.max_bytes} bytes")

    def text(self, text: str, path: DocPath, *, key: bool = False) -> None:
        """Count a string of the result, refusing one Postgres cannot store (a NUL, a lone
        surrogate): the node fails here, naming the path, not the transition recording it."""
        # Inlined (one call per string of a possibly large value): strict UTF-8 refuses exactly
        # the surrogates, and ASCII text needs only the NUL test.
        try:
            size = len(text) if text.isascii() else len(text.encode("utf-8"))
        except UnicodeEncodeError:
            size = -1
        if size < 0 or "\x00" in text:
            problem = storable.text_problem(text)
            what = f"the key `{storable.escaped(text)}`" if key else "the value"
            raise self.error(path, f"{what} {problem}, which cannot be stored")
        self.used += size
        if self.used > self.max_bytes:
            raise self.error(path, f"rendered value larger than {self.max_bytes} bytes")

    def value(self, value: Any, path: DocPath) -> Any:
        """The rendered copy of a definition value: its strings rendered, the rest copied."""
        if isinstance(value, str):
            if not expressions.is_template(value):
                self.text(value, path)
                return value
            return self.template(value, path)
        if isinstance(value, bool | int | float) or value is None:
            self.add(_SCALAR_BYTES, path)
            return value
        if isinstance(value, dict | types.MappingProxyType | Mapping):
            self.add(_SCALAR_BYTES, path)
            rendered = {}
            for key, item in value.items():
                self.text(str(key), path, key=True)
                rendered[key] = self.value(item, (*path, key))
            return rendered
        if isinstance(value, list | tuple):
            self.add(_SCALAR_BYTES, path)
            return [self.value(item, (*path, index)) for index, item in enumerate(value)]
        raise self.error(path, f"a {type(value).__name__} is not JSON data")

    def template(self, text: str, path: DocPath) -> Any:
        try:
            native, compiled, secrets = _compiled(text)
            if secrets is not None:
                self.check_secrets(secrets, path)
            if native:
                return self.plain(compiled(self.scope), path, 0)
            parts = []
            for chunk in compiled.generate(self.scope):
                self.add(_text_bytes(chunk), path)  # measured as produced: runaway loops stop
                parts.append(chunk)
            rendered = "".join(parts)
            if (problem := storable.text_problem(rendered)) is not None:
                raise self.error(path, f"the rendered text {problem}, which cannot be stored")
            return rendered
        except _LocatedError:
            raise
        except TemplateRenderError as exc:  # a sandbox limit: located here
            raise self.error(path, str(exc)) from exc
        except Exception as exc:  # a template must never crash the engine: name it instead
            raise self.error(path, _cause(text, exc)) from exc

    def check_secrets(self, use: placement.SecretUse, path: DocPath) -> None:
        """Refuse a template that names secrets where there are none, or transforms one."""
        if placement.SECRETS not in self.scope:
            raise self.error(
                path,
                "`secrets` cannot be read here: secrets reach only a node's parameters, placed "
                "whole as `{{ secrets.NAME }}` (vars, outputs and idempotency keys are stored "
                "and read back)",
            )
        if use.problems:
            raise self.error(path, use.problems[0])

    def plain(self, value: Any, path: DocPath, depth: int) -> Any:
        """A value computed by an expression as plain JSON data (a copy, never the scope's)."""
        if depth > _MAX_DEPTH:
            raise self.error(path, f"the value nests deeper than {_MAX_DEPTH} levels")
        if isinstance(value, str):
            self.text(value, path)
            return str(value)  # a Markup becomes a plain str
        if isinstance(value, bool | int) or value is None:
            self.add(_SCALAR_BYTES, path)
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.error(path, f"{value} is not a JSON number")
            self.add(_SCALAR_BYTES, path)
            return value
        if isinstance(value, dict | types.MappingProxyType | Mapping):
            self.add(_SCALAR_BYTES, path)
            result = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise self.error(path, f"the object key {key!r} is not a string")
                self.text(key, path, key=True)
                result[key] = self.plain(item, (*path, key), depth + 1)
            return result
        if isinstance(value, list | tuple | range | types.GeneratorType):
            self.add(_SCALAR_BYTES, path)
            return [self.plain(item, (*path, i), depth + 1) for i, item in enumerate(value)]
        if isinstance(value, Undefined):
            str(value)  # StrictUndefined raises its own error: the missing name, or the refusal
        if (hint := sandbox.method_hint(value)) is not None:
            raise self.error(path, hint)
        what = type(value).__name__
        raise self.error(path, f"the expression gives a `{what}`, which is not JSON data")

    def error(self, path: DocPath, cause: str) -> TemplateRenderError:
        at = f" at `{format_path(path)}`" if path else ""
        return _LocatedError(f"{self.where}{at}: {cause}")


class _LocatedError(TemplateRenderError):
    """A TemplateRenderError that already names where and the path (not wrapped again)."""


def _text_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _cause(text: str, exc: Exception) -> str:
    """What went wrong, in the words of someone who wrote `text`."""
    if isinstance(exc, MissingCredential):
        return str(exc)  # names the secret and where to set it, never a value
    if isinstance(exc, SecurityError):
        return f"unsafe access refused ({exc})"
    if isinstance(exc, UndefinedError):
        return _undefined(text, str(exc))
    if isinstance(exc, TemplateSyntaxError):
        return f"the template does not parse: {exc.message}"
    if isinstance(exc, RecursionError):
        return "the template recursed too deeply"
    if isinstance(exc, TypeError) and "no loader" in str(exc):
        return "`include`, `import` and `extends` are not available: there are no template files"
    return f"{type(exc).__name__}: {exc}"


def _undefined(text: str, message: str) -> str:
    """`trigger.boardId` is undefined: the expression found in the template, with Jinja's words."""
    if name := _UNDEFINED_NAME.fullmatch(message):
        return f"`{name.group(1)}` is undefined"
    if key := _UNDEFINED_KEY.fullmatch(message):
        expression = _access_text(text, key.group(1).strip("'"))
        if expression is not None:
            return f"`{expression}` is undefined ({message})"
    return f"undefined value: {message}"


def _access_text(text: str, key: str) -> str | None:
    """The first `a.b` or `a['b']` in the template whose last key is `key`, as written."""
    try:
        ast = expressions.template_environment().parse(text)
    except Exception:
        return None
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr) and node.attr == key:
            return _path_text(node)
        if (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and str(node.arg.value) == key
        ):
            return _path_text(node)
    return None


def _path_text(node: Any) -> str:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        return f"{_path_text(node.node)}.{node.attr}"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return f"{_path_text(node.node)}[{node.arg.value!r}]"
    return "(…)"
