"""The lint rules: stable ids, default severities and one-line summaries.

Ids never change once published: users name them in `# dwf-lint: ignore=RULE` comments and CI
configurations. `docs/lint-rules.md` shows a failing and a fixed example of each.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.spec.diagnostics import Severity


@dataclass(frozen=True, slots=True)
class Rule:
    """A lint rule: its id, default severity and what it checks."""

    id: str
    severity: Severity
    summary: str


_RULES = (
    # The file and its YAML.
    Rule(
        "file-unreadable",
        "error",
        "The file cannot be read as UTF-8 text (binary, bad encoding, I/O).",
    ),
    Rule("file-too-large", "error", "The file is larger than the 1 MiB limit."),
    Rule(
        "file-not-regular",
        "error",
        "The path is not a regular file (a FIFO, device or socket, or a link to one).",
    ),
    Rule(
        "yaml-syntax", "error", "The file is not valid YAML 1.2, or holds more than one document."
    ),
    Rule("yaml-duplicate-key", "error", "A mapping has the same key twice."),
    Rule("yaml-too-deep", "error", "Collections nest deeper than the 64-level limit."),
    Rule(
        "yaml-aliases",
        "error",
        "Aliases expand the document beyond the node limit (an alias bomb).",
    ),
    Rule(
        "yaml-unsupported-value",
        "error",
        "A value JSON cannot hold: non-string key, binary, set, NaN or infinity.",
    ),
    Rule("not-a-mapping", "error", "The document is empty or is not a mapping at the top."),
    # The JSON Schema (schemas/workflow.schema.json).
    Rule("schema-unknown-key", "error", "A key the schema does not define at that place."),
    Rule("schema-missing-key", "error", "A required key is missing."),
    Rule("schema-type", "error", "A value has the wrong type (string, number, list, mapping)."),
    Rule(
        "schema-value",
        "error",
        "A value is out of range, not one of the allowed values, or malformed.",
    ),
    # The graph of nodes and edges.
    Rule("duplicate-node-id", "error", "Two nodes share an id."),
    Rule("unknown-start-node", "error", "`startNode` names no node of the workflow."),
    Rule("unknown-edge-target", "error", "An edge's `targetNode` names no node of the workflow."),
    Rule("unknown-on-failure-target", "error", "An `onFailure` names no node of the workflow."),
    Rule("cycle", "error", "Edges form a cycle; a workflow must be a DAG."),
    Rule(
        "unreachable-node",
        "error",
        "A node cannot be reached from `startNode` or the failure path.",
    ),
    # Actions.
    Rule("unknown-action-type", "error", "`actionType` names no registered action."),
    Rule(
        "action-parameters",
        "error",
        "A literal parameter value violates the action's parameter schema.",
    ),
    # Expressions.
    Rule("template-syntax", "error", "A Jinja template does not parse."),
    Rule(
        "template-unknown-name",
        "error",
        "A template reads a top-level name outside the expression scope.",
    ),
    Rule(
        "secret-transformed",
        "error",
        "A secret is used other than placed whole as `{{ secrets.NAME }}` (a filter, method, "
        "slice, operator, loop, test or condition on it).",
    ),
    Rule("condition-syntax", "error", "A JavaScript condition does not compile."),
    Rule(
        "unknown-node-reference",
        "error",
        "An expression reads `nodes['x']` for a node x the workflow lacks.",
    ),
    Rule(
        "node-not-upstream",
        "warning",
        "An expression reads a node that cannot have finished before it runs.",
    ),
    Rule("unused-var", "warning", "A `vars` entry no template or condition reads."),
    # Triggers.
    Rule("invalid-cron", "error", "A schedule's `cron` is not a valid 5- or 6-field expression."),
    Rule("invalid-timezone", "error", "A schedule's `timezone` is not an IANA time zone."),
    Rule("duplicate-trigger-id", "error", "Two triggers of one workflow share an id."),
    Rule("duplicate-webhook-path", "error", "Two webhook triggers (in any files) share a path."),
    Rule(
        "webhook-unsigned",
        "warning",
        "A webhook trigger has no `signature`; write `signature: none` to accept unsigned calls.",
    ),
    # Across files.
    Rule("duplicate-workflow-id", "error", "Two files define the same workflow id."),
    Rule(
        "unknown-subworkflow",
        "error",
        "A subworkflow node names a workflow none of the linted files define.",
    ),
    Rule(
        "subworkflow-cycle",
        "error",
        "Workflows start each other in a cycle through subworkflow nodes.",
    ),
    # The linter itself.
    Rule(
        "internal-error", "error", "The linter failed on this file; please report it with the file."
    ),
)

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}


def severity_of(rule_id: str) -> Severity:
    """The default severity of a rule."""
    return RULES[rule_id].severity
