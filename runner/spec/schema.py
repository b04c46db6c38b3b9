"""The JSON Schema of the workflow document (SPEC §3) and its validation into lint findings.

jsonschema is the authority and writes the findings, but it needs about 3 ms for a 20-node
document; the lint's budget is a fraction of that. So a document is first run through a checker
compiled from the same schema into plain closures (`runner.spec.schema_check`, tens of
microseconds), and jsonschema runs only when that checker says the document is invalid. A test
holds the two to the same verdict.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from runner.spec import schema_check
from runner.spec.diagnostics import DocPath, Finding, format_path
from runner.spec.schema_check import Check, compile_check

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.protocols import Validator

# `compile_check` and `Check` are re-exported: callers compile action parameter schemas with it.
__all__ = ["Check", "compile_check", "schema", "schema_text", "validate", "validate_with"]

_EXPECTED = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}

#: A loaded value's kind in words, by its Python type (bool first: a bool is also an int).
_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a decimal number"),
    (str, "a string"),
    (dict, "a mapping"),
    (list, "a list"),
    (type(None), "null"),
)


@functools.cache
def schema_text() -> str:
    """The text of `schemas/workflow.schema.json`, as `dwf schema` prints it."""
    # Imported here, as difflib below: both cost more start-up time than a valid lint needs.
    from importlib.resources import files

    resource = files("runner.spec").joinpath("workflow.schema.json")
    return resource.read_text(encoding="utf-8")


@functools.cache
def schema() -> dict[str, Any]:
    """The parsed schema; shared and cached, so callers must not modify it."""
    parsed: dict[str, Any] = json.loads(schema_text())
    return parsed


def validate(data: Mapping[str, Any]) -> list[Finding]:
    """Check a loaded document against the schema: one finding per problem, in document order."""
    fast = _fast_check()
    if fast is not None and fast(data):
        return []
    findings: dict[tuple[str, DocPath, bool, str], Finding] = {}
    # A misspelt required key is one problem, not two: `targetNod` reported as unknown with
    # "did you mean `targetNode`?" makes "missing `targetNode`" redundant.
    guessed: set[tuple[DocPath, str]] = set()
    missing: dict[tuple[str, DocPath, bool, str], tuple[DocPath, str]] = {}
    for error in _validator().iter_errors(data):
        for finding, key in _translate(error):
            ident = (finding.rule, finding.path, finding.at_key, finding.message)
            findings.setdefault(ident, finding)
            if key is not None and finding.rule == "schema-unknown-key":
                guessed.add((finding.path[:-1], key))
            elif key is not None:
                missing[ident] = (finding.path, key)
    out = [f for ident, f in findings.items() if missing.get(ident) not in guessed]
    out.sort(key=lambda f: _position(data, f.path))
    return out


# --- the checkers -----------------------------------------------------------------------------


def _pattern_keyword(
    validator: Validator, pattern: str, instance: object, _schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    from jsonschema import ValidationError

    if isinstance(instance, str) and not schema_check.ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _validator() -> Validator:
    return _validator_class()(schema())


@functools.cache
def _validator_class() -> type[Validator]:
    from jsonschema import Draft202012Validator, validators

    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _c, v: schema_check.is_integer(v)
    )
    cls: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]  # unannotated in the stubs
        Draft202012Validator, validators={"pattern": _pattern_keyword}, type_checker=checker
    )
    return cls


def validate_with(data: Any, against: Mapping[str, Any]) -> list[Finding]:
    """Check a loaded document against another schema (dwf.yaml's) as `validate` checks a
    workflow: the same rules, messages and order."""
    validator = _validator_class()(against)
    found = [finding for error in validator.iter_errors(data) for finding, _ in _translate(error)]
    unique = list({(f.rule, f.path, f.at_key, f.message): f for f in found}.values())
    return sorted(unique, key=lambda f: _position(data, f.path))


@functools.cache
def _fast_check() -> Check | None:
    """The schema compiled to closures; None (jsonschema alone) if it uses unknown keywords."""
    return compile_check(schema())


# --- messages ---------------------------------------------------------------------------------


@functools.cache
def _branches() -> dict[int, tuple[dict[str, Any], str, list[tuple[str, dict[str, Any]]]]]:
    """For each branch of a discriminated schema (nodes, triggers): (branch, key, all branches).

    The schema marks such a schema with `discriminator` and picks each branch with an
    `if: {properties: {<key>: {const: <value>}}}` / `then: {$ref: ...}` pair.
    """
    root = schema()
    out: dict[int, tuple[dict[str, Any], str, list[tuple[str, dict[str, Any]]]]] = {}
    for node in _walk(root):
        key = node.get("discriminator", {}).get("propertyName")
        if key is None:
            continue
        branches: list[tuple[str, dict[str, Any]]] = []
        for part in node.get("allOf", ()):
            const = part.get("if", {}).get("properties", {}).get(key, {}).get("const")
            target = part.get("then", {}).get("$ref")
            if isinstance(const, str) and isinstance(target, str):
                branch = schema_check.resolve_ref(root, target)
                if isinstance(branch, dict):
                    branches.append((const, branch))
        for _, branch in branches:
            out[id(branch)] = (branch, key, branches)
    return out


@functools.cache
def _conditions() -> dict[int, str]:
    """Each `then` schema's condition in words (`signature: hmac-sha256`), to explain a need."""
    out: dict[int, str] = {}
    for node in _walk(schema()):
        then, cond = node.get("then"), node.get("if")
        if isinstance(then, dict) and isinstance(cond, dict):
            consts = [
                f"{name}: {sub['const']}"
                for name, sub in cond.get("properties", {}).items()
                if isinstance(sub, dict) and "const" in sub
            ]
            if consts:
                out[id(then)] = ", ".join(consts)
    return out


def _walk(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _translate(error: ValidationError) -> Iterator[tuple[Finding, str | None]]:
    """The findings of one error, each with the key it names (missing or suggested), if any."""
    path: DocPath = tuple(error.absolute_path)
    where = format_path(path)
    keyword, value = error.validator, error.validator_value
    instance, sub = error.instance, error.schema
    if keyword == "additionalProperties" and isinstance(instance, dict) and isinstance(sub, dict):
        allowed = list(sub.get("properties", {}))
        for key in instance:
            if key not in allowed:
                message, guess = _unknown_key(key, path, sub, allowed)
                yield Finding("schema-unknown-key", message, (*path, key), True), guess
    elif (
        keyword == "required"
        and isinstance(instance, dict)
        and isinstance(sub, dict)
        and isinstance(value, list)
    ):
        for key in value:
            if key not in instance:
                yield Finding("schema-missing-key", _missing_key(key, path, sub), path), key
    elif keyword == "dependentRequired" and isinstance(instance, dict) and isinstance(value, dict):
        for trigger, needed in value.items():
            for key in needed:
                if trigger in instance and key not in instance:
                    owner = "the document" if not path else where
                    message = f"{owner} is missing the required key `{key}`"
                    message += f" (needed with `{trigger}`)"
                    yield Finding("schema-missing-key", message, path), key
    elif keyword == "type" and isinstance(value, str | list):
        kinds: list[str] = [value] if isinstance(value, str) else value
        expected = " or ".join(_EXPECTED.get(k, k) for k in kinds)
        subject = "the document" if not path else f"`{where}`"
        message = f"{subject} must be {expected}, not {_kind(instance)}"
        yield Finding("schema-type", message, path), None
    else:
        yield Finding("schema-value", _bad_value(error, path), path), None


def _unknown_key(
    key: object, path: DocPath, sub: dict[str, Any], allowed: list[str]
) -> tuple[str, str | None]:
    """The message for a key the schema does not define here, and the key it may be a typo of."""
    place = "at the top level" if not path else f"in {format_path(path)}"
    branch = _branches().get(id(sub))
    if branch is not None:
        _, disc, options = branch
        owners = [(v, b) for v, b in options if b is not sub and key in b.get("properties", {})]
        if owners:
            value, owner = owners[0]
            message = (
                f"`{key}` is not allowed {place}, {_article(sub.get('title', 'this kind'))}; "
                f"it belongs to {owner.get('title', value)}s (`{disc}: {value}`)"
            )
            return message, None
    message = f"unknown key `{key}` {place}"
    guess = _suggest(str(key), allowed)
    if guess is not None:
        message += f"; did you mean `{guess}`?"
    return f"{message} (allowed: {', '.join(allowed)})", guess


def _missing_key(key: str, path: DocPath, sub: dict[str, Any]) -> str:
    where = "the document" if not path else format_path(path)
    if sub.get("discriminator", {}).get("propertyName") == key:
        options = sub.get("properties", {}).get(key, {}).get("enum", [])
        return f"{sub.get('title', 'item')} {where} needs `{key}`: one of {', '.join(options)}"
    message = f"{where} is missing the required key `{key}`"
    condition = _conditions().get(id(sub))
    if condition is not None:
        message += f" (needed with `{condition}`)"
    return message


def _bad_value(error: ValidationError, path: DocPath) -> str:
    keyword, value = error.validator, error.validator_value
    instance, sub = error.instance, error.schema
    subject = "the document" if not path else f"`{format_path(path)}`"
    got = "got an empty string" if instance == "" else f"got `{_show(instance)}`"
    if keyword == "enum" and isinstance(value, list):
        message = f"{subject} must be one of {', '.join(map(_show, value))}; {got}"
        guess = _suggest(instance, [v for v in value if isinstance(v, str)])
        return message if guess is None else f"{message} — did you mean `{guess}`?"
    if keyword == "const":
        return f"{subject} must be `{_show(value)}`; {got}"
    if keyword == "pattern":
        explained = isinstance(sub, dict) and sub.get("patternErrorMessage")
        rule = explained or f"text matching the pattern `{value}`"
        return f"{subject} must be {rule}; {got}"
    if keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        bound = {
            "minimum": "at least",
            "exclusiveMinimum": "more than",
            "maximum": "at most",
            "exclusiveMaximum": "less than",
        }[keyword]
        return f"{subject} must be {bound} {_show(value)}; {got}"
    if keyword == "minLength" and value == 1:
        return f"{subject} must not be empty"
    if keyword in ("minLength", "maxLength") and isinstance(instance, str):
        bound = "at least" if keyword == "minLength" else "at most"
        return f"{subject} must be {bound} {value} characters long; it has {len(instance)}"
    if keyword == "minItems" and value == 1:
        return f"{subject} must have at least one entry; it is empty"
    if keyword in ("minItems", "maxItems") and isinstance(instance, list):
        bound = "at least" if keyword == "minItems" else "at most"
        return f"{subject} must have {bound} {value} entries; it has {len(instance)}"
    return f"{subject}: {error.message}"


def _suggest(word: object, options: Iterable[str]) -> str | None:
    import difflib

    if not isinstance(word, str):
        return None
    options = list(options)
    for option in options:
        if option.lower() == word.lower():
            return option
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else None


def _kind(value: object) -> str:
    for kind, words in _KINDS:
        if isinstance(value, kind):
            return words
    return type(value).__name__


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _show(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _position(data: object, path: DocPath) -> tuple[int, ...]:
    """Where a path falls in the document's own order, so findings read top to bottom."""
    out = []
    node = data
    for part in path:
        if isinstance(node, dict) and part in node:
            out.append(list(node).index(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        else:
            out.append(1 << 30)
            node = None
    return tuple(out)
