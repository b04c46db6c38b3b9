"""Every single-file rule, in one call: schema, graph, actions, expressions, triggers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner.errors import ShapeError
from runner.spec import action_rules, expressions, schema, structure, triggers
from runner.spec.diagnostics import Finding
from runner.spec.model import Workflow


def check_document(
    data: dict[str, Any],
    lookup: action_rules.SchemaLookup,
    known_types: Callable[[], list[str]],
) -> tuple[Workflow | None, list[Finding]]:
    """The model (None when the document's shape is too broken to build it) and all findings.

    Semantic rules still run when the schema found problems that leave the shape intact (an
    unknown key, a bad enum value), so one pass reports every problem of the file.
    """
    findings = schema.validate(data)
    try:
        workflow = Workflow.from_data(data)
    except (ShapeError, TypeError, ValueError):
        return None, findings
    findings.extend(structure.check(workflow))
    findings.extend(action_rules.check(workflow, lookup, known_types))
    findings.extend(expressions.check(workflow))
    findings.extend(triggers.check(workflow))
    return workflow, findings


def prepare() -> None:
    """Import and build the validators now, e.g. before forking lint workers that share them."""
    schema.validate({})
    expressions.template_environment()
