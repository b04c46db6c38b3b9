"""Rules across the files of a repository: workflow ids, webhook paths, subworkflow targets.

Each file is reduced to a `WorkflowSummary` (cheap to send between processes); the rules run
over the summaries of every file linted together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from runner.spec import structure
from runner.spec.diagnostics import DocPath, Finding
from runner.spec.model import WebhookTrigger, Workflow


@dataclass(frozen=True, slots=True)
class WorkflowSummary:
    """What the cross-file rules need to know of one workflow file."""

    workflow_id: str
    webhooks: tuple[tuple[str, DocPath], ...] = ()
    subworkflows: tuple[tuple[str, DocPath], ...] = ()


def summarize(workflow: Workflow) -> WorkflowSummary:
    """The summary of one workflow."""
    return WorkflowSummary(
        workflow_id=workflow.id,
        webhooks=tuple(
            (t.path, ("triggers", i, "path"))
            for i, t in enumerate(workflow.triggers)
            if isinstance(t, WebhookTrigger)
        ),
        subworkflows=tuple(
            (n.workflow_id, ("nodes", i, "workflowId"))
            for i, n in enumerate(workflow.nodes)
            if n.node_type == "subworkflow" and n.workflow_id is not None
        ),
    )


def check(summaries: Mapping[str, WorkflowSummary]) -> dict[str, list[Finding]]:
    """Findings by file path, over files taken in sorted path order (the first one wins)."""
    findings: dict[str, list[Finding]] = {}
    owner: dict[str, str] = {}
    hooks: dict[str, str] = {}
    for path in sorted(summaries):
        summary = summaries[path]
        first = owner.setdefault(summary.workflow_id, path)
        if first != path:
            findings.setdefault(path, []).append(
                Finding(
                    "duplicate-workflow-id",
                    f"workflow id `{summary.workflow_id}` is already defined in {first}; "
                    "ids are unique per tenant",
                    ("id",),
                )
            )
        for hook_path, doc_path in summary.webhooks:
            if hook_path in hooks:
                findings.setdefault(path, []).append(
                    Finding(
                        "duplicate-webhook-path",
                        f"webhook path `{hook_path}` is already served by a trigger in "
                        f"{hooks[hook_path]}; each path routes to one workflow",
                        doc_path,
                    )
                )
            else:
                hooks[hook_path] = path
    for path in sorted(summaries):
        for target, doc_path in summaries[path].subworkflows:
            if target not in owner:
                findings.setdefault(path, []).append(
                    Finding(
                        "unknown-subworkflow",
                        f"subworkflow target `{target}` is not defined by any file linted "
                        f"(known: {', '.join(sorted(owner)) or 'none'})",
                        doc_path,
                    )
                )
    for path, finding in _cycles(summaries, owner):
        findings.setdefault(path, []).append(finding)
    return findings


def _cycles(
    summaries: Mapping[str, WorkflowSummary], owner: Mapping[str, str]
) -> list[tuple[str, Finding]]:
    calls: dict[str, list[tuple[str, DocPath]]] = {}
    for workflow_id, path in owner.items():
        calls[workflow_id] = [(t, d) for t, d in summaries[path].subworkflows if t in owner]
    edges = {w: [t for t, _ in targets] for w, targets in calls.items()}
    out: list[tuple[str, Finding]] = []
    for cycle in structure.cycles(edges):
        source, target = cycle[-2], cycle[-1]
        doc_path = next(d for t, d in calls[source] if t == target)
        out.append(
            (
                owner[source],
                Finding(
                    "subworkflow-cycle",
                    f"workflows start each other in a cycle: {' -> '.join(cycle)}; "
                    "a subworkflow may not (indirectly) start its parent",
                    doc_path,
                ),
            )
        )
    return out
