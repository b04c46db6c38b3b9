"""A JSON Schema compiled into plain closures: a yes/no check in tens of microseconds.

jsonschema needs about 3 ms for a 20-node workflow document; a checker compiled from the same
schema decides valid or invalid in a fraction of that, so jsonschema runs only to explain an
invalid document (`runner.spec.schema.validate`). The compiler covers the subset of JSON Schema
2020-12 the workflow schema and the action parameter schemas use; any other keyword makes it
give up (None), and the caller falls back on jsonschema. A test holds both to the same verdict.
"""

from __future__ import annotations

import functools
import numbers
import re
from collections.abc import Callable
from typing import Any

#: A compiled schema: True when a value is valid.
Check = Callable[[object], bool]

# Keywords that describe rather than constrain; neither checker acts on them.
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$defs",
        "$comment",
        "title",
        "description",
        "markdownDescription",
        "default",
        "examples",
        "patternErrorMessage",
        "discriminator",
    }
)


@functools.cache
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """A schema `pattern` compiled as ECMA-262 reads it."""
    # The schema's patterns are ECMA-262, where `$` matches only at the very end; Python's `$`
    # also matches before a final newline, which would let `"deploy\n"` pass as an id.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def is_integer(value: object) -> bool:
    """A JSON integer: an int, not a bool, and not a whole float."""
    # JSON Schema counts 3.0 as an integer, but the model (and Python code downstream) would
    # then see a float where it expects an int; `maxAttempts: 3.0` is reported instead.
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A JSON number: any number but a bool."""
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": is_integer,
    "number": is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def compile_check(any_schema: dict[str, Any]) -> Check | None:
    """A fast yes/no check for another JSON Schema (e.g. an action's parameters), or None when
    it uses keywords the compiler lacks. A False may be a false alarm: confirm with jsonschema."""
    try:
        return _Compiler(any_schema).compile(any_schema)
    except UnsupportedSchema:
        return None


class UnsupportedSchema(Exception):
    """The schema uses a keyword (or a `$ref`) the compiler does not implement; it never leaves
    `compile_check`, which answers None instead."""


def resolve_ref(root: dict[str, Any], ref: str) -> object:
    """The part of `root` a local `$ref` (`#/$defs/node`) points at; UnsupportedSchema for any
    other reference."""
    if not ref.startswith("#/"):
        raise UnsupportedSchema(ref)
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


class _Compiler:
    """Compiles the subset of JSON Schema 2020-12 the workflow schema uses into closures."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.memo: dict[int, Check] = {}
        self.active: set[int] = set()

    def compile(self, node: object) -> Check:
        if node is True:
            return _accept
        if node is False:
            return _reject
        if not isinstance(node, dict):
            raise UnsupportedSchema(repr(node))
        if id(node) in self.memo:
            return self.memo[id(node)]
        if id(node) in self.active:
            raise UnsupportedSchema("recursive $ref")  # the workflow schema has none
        self.active.add(id(node))
        kind = node.get("type")
        # `type` is folded into the checks that test it anyway, saving a call per value.
        folded = (kind == "object" and "properties" in node) or (
            kind == "string" and "pattern" in node
        )
        checks = [
            self.keyword(k, v, node)
            for k, v in node.items()
            if k not in _ANNOTATIONS and not (folded and k == "type")
        ]
        checks = [c for c in checks if c is not _accept]
        check = _all(checks)
        self.memo[id(node)] = check
        self.active.discard(id(node))
        return check

    def keyword(self, key: str, value: Any, node: dict[str, Any]) -> Check:
        if key == "type":
            if isinstance(value, str):
                return _TYPES[value]
            kinds = [_TYPES[t] for t in value]
            return lambda v: any(k(v) for k in kinds)
        if key in ("enum", "const"):
            values = value if key == "enum" else [value]
            if not all(isinstance(x, str) for x in values):
                raise UnsupportedSchema(key)
            allowed = frozenset(values)
            return lambda v: isinstance(v, str) and v in allowed
        if key == "pattern":
            search = ecma_regex(value).search
            if node.get("type") == "string":
                return lambda v: isinstance(v, str) and search(v) is not None
            return lambda v: not isinstance(v, str) or search(v) is not None
        if key in ("minLength", "maxLength", "minItems", "maxItems"):
            kind = str if key.endswith("Length") else list
            if key.startswith("min"):
                return lambda v: not isinstance(v, kind) or len(v) >= value
            return lambda v: not isinstance(v, kind) or len(v) <= value
        if key in ("minimum", "maximum"):
            if key == "minimum":
                return lambda v: not is_number(v) or v >= value
            return lambda v: not is_number(v) or v <= value
        if key == "items":
            item = self.compile(value)
            return lambda v: not isinstance(v, list) or all(item(x) for x in v)
        if key == "properties":
            strict = node.get("type") == "object"
            return self.properties(value, node.get("additionalProperties", True), strict)
        if key == "additionalProperties":
            if "properties" in node or value is True:
                return _accept  # folded into `properties`
            raise UnsupportedSchema(key)
        if key == "required":
            return lambda v: not isinstance(v, dict) or all(k in v for k in value)
        if key == "dependentRequired":
            pairs = tuple(value.items())
            return lambda v: (
                not isinstance(v, dict)
                or all(all(d in v for d in deps) for k, deps in pairs if k in v)
            )
        if key == "allOf":
            return _all([self.compile(s) for s in value])
        if key == "if":
            cond = self.compile(value)
            then = self.compile(node.get("then", True))
            other = self.compile(node.get("else", True))
            return lambda v: then(v) if cond(v) else other(v)
        if key in ("then", "else"):
            return _accept  # part of `if`
        if key == "$ref":
            return self.compile(resolve_ref(self.root, value))
        raise UnsupportedSchema(key)

    def properties(self, props: dict[str, Any], additional: object, strict: bool) -> Check:
        """`properties` and `additionalProperties`; `strict` also demands a mapping (`type`)."""
        checks = {name: self.compile(sub) for name, sub in props.items()}
        if additional is False:

            def closed(v: object) -> bool:
                if not isinstance(v, dict):
                    return not strict
                for name, item in v.items():
                    check = checks.get(name)
                    if check is None or not check(item):
                        return False
                return True

            return closed
        if additional is not True:
            raise UnsupportedSchema("additionalProperties")

        def open_(v: object) -> bool:
            if not isinstance(v, dict):
                return not strict
            return all(check(v[name]) for name, check in checks.items() if name in v)

        return open_


def _accept(_value: object) -> bool:
    return True


def _reject(_value: object) -> bool:
    return False


def _all(checks: list[Check]) -> Check:
    if not checks:
        return _accept
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)
    every = tuple(checks)

    def check(v: object) -> bool:
        # A plain loop: all() over a generator costs about twice as much on this hot path.
        for each in every:  # noqa: SIM110
            if not each(v):
                return False
        return True

    return check
