"""Rules over action nodes: the type is registered and literal parameters fit its schema.

Parameters that are templates are checked when they are rendered, at run time; here only the
values a user wrote literally are held to the action's parameter schema.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from runner.errors import ActionRegistryError
from runner.spec import schema_check
from runner.spec.diagnostics import Finding, format_path
from runner.spec.model import Workflow, thaw

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.protocols import Validator

#: Looks up an action type's parameter schema; None when the type is not registered,
#: ActionRegistryError when the plugin registered for it cannot be used.
SchemaLookup = Callable[[str], Mapping[str, Any] | None]
_TEMPLATE_MARKERS = ("{{", "{%")


def check(
    workflow: Workflow, lookup: SchemaLookup, known_types: Callable[[], list[str]]
) -> list[Finding]:
    """`unknown-action-type` and `action-parameters` findings for every action node."""
    findings: list[Finding] = []
    for i, node in enumerate(workflow.nodes):
        if node.node_type != "action" or node.action_type is None:
            continue
        try:
            parameters_schema = lookup(node.action_type)
        except ActionRegistryError as exc:  # its plugin is installed but cannot be used
            findings.append(
                Finding(
                    "unknown-action-type",
                    f"node `{node.id}`: action type `{node.action_type}` cannot be used: {exc}",
                    ("nodes", i, "actionType"),
                )
            )
            continue
        if parameters_schema is None:
            types = known_types()
            close = difflib.get_close_matches(node.action_type, types, n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            findings.append(
                Finding(
                    "unknown-action-type",
                    f"node `{node.id}`: no action type `{node.action_type}` is registered{hint} "
                    f"(registered: {', '.join(types)})",
                    ("nodes", i, "actionType"),
                )
            )
            continue
        params = thaw(node.parameters)
        key = json.dumps(parameters_schema, sort_keys=True)
        fast = _fast_check(key)
        if fast is not None and fast(params):
            continue
        for error in _validator(key).iter_errors(params):
            where = list(error.absolute_path)
            if _templated(params, where):
                continue
            at_key = error.validator == "additionalProperties"
            if at_key:
                # Point at the first unknown key itself rather than at its mapping.
                where.append(_keys(error)[1][0])
            findings.append(
                Finding(
                    "action-parameters",
                    f"node `{node.id}` ({node.action_type}): "
                    f"{format_path(('parameters', *where[: len(where) - at_key]))}: "
                    f"{_describe(error)}",
                    ("nodes", i, "parameters", *where),
                    at_key=at_key,
                )
            )
    return findings


@functools.lru_cache(maxsize=256)
def _fast_check(schema_json: str) -> schema_check.Check | None:
    """A compiled yes/no check for the common, valid case (jsonschema is not even imported)."""
    return schema_check.compile_check(json.loads(schema_json))


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Validator:
    """jsonschema, which explains what is wrong."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


def _templated(params: object, where: list[str | int]) -> bool:
    """Whether a template sits on the path to the error: it may render to anything."""
    value = params
    for part in where:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int):
            value = value[part]
        else:
            break
    return isinstance(value, str) and any(m in value for m in _TEMPLATE_MARKERS)


def _keys(error: ValidationError) -> tuple[list[str], list[str]]:
    """The keys an `additionalProperties` error allows and the unknown ones it found, sorted."""
    sub, instance = error.schema, error.instance
    allowed = sorted(sub.get("properties", {})) if isinstance(sub, Mapping) else []
    found = instance if isinstance(instance, Mapping) else {}
    return allowed, sorted(set(found) - set(allowed))


def _describe(error: ValidationError) -> str:
    if error.validator == "additionalProperties":
        allowed, extra = _keys(error)
        names = ", ".join(f"`{k}`" for k in extra)
        hints = [f"`{c[0]}`" for k in extra if (c := difflib.get_close_matches(k, allowed, n=1))]
        hint = f"; did you mean {', '.join(hints)}?" if hints else ""
        return f"unknown parameter {names}{hint} (allowed: {', '.join(allowed)})"
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    return error.message
