"""A repository (SPEC §2): its config file `dwf.yaml`, and the rules across its workflow files.

`check_config` validates a dwf.yaml against `schemas/dwf.schema.json` into findings the lint
positions like a workflow's; `RepositoryConfig` is what it says: the tenant a sync writes into
and the default `options` its workflows take. For the rules across files (workflow ids,
webhook paths, subworkflow targets), each file is reduced to a `WorkflowSummary` (cheap to send
between processes); the rules run over the summaries of every file linted together.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.spec import loader, schema, structure
from runner.spec.diagnostics import DocPath, Finding
from runner.spec.model import WebhookTrigger, Workflow

#: The config file's name, in the folder a sync reads (where `workflows/` is).
CONFIG_FILE = "dwf.yaml"
_CONFIG_KEYS = "one mapping with `tenant` and `defaults`"


@dataclass(frozen=True, slots=True)
class RepositoryConfig:
    """A repository's dwf.yaml: the tenant its workflows belong to (None: the runner's) and
    the `options` they take where they set none of their own."""

    tenant: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def apply(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """The workflow document with the default options it does not set itself filled in."""
        if not self.options:
            return dict(document)
        own = document.get("options")
        return {**document, "options": {**self.options, **(own if isinstance(own, dict) else {})}}

    @property
    def fingerprint(self) -> str:
        """What of the config changes a workflow's stored document (its defaults), as text."""
        return json.dumps(dict(self.options), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class ConfigCheck:
    """A dwf.yaml checked: its config (None when it has errors), the findings, its text."""

    config: RepositoryConfig | None
    findings: list[Finding]
    text: str


@functools.cache
def config_schema() -> dict[str, Any]:
    """`schemas/dwf.schema.json`, parsed; shared, so callers must not modify it."""
    from importlib.resources import files

    text = files("runner.spec").joinpath("dwf.schema.json").read_text(encoding="utf-8")
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def check_config(path: str, raw: bytes) -> ConfigCheck:
    """Load and validate a dwf.yaml's bytes; an empty file (or only comments) is no config."""
    try:
        source = loader.decode(path, raw)
        data = loader.load(source.text)
    except loader.LoadError as exc:
        finding = exc.finding
        text = raw.decode("utf-8", "replace") if finding.rule != "file-unreadable" else ""
        if finding.rule == "not-a-mapping" and "is empty" in finding.message:
            return ConfigCheck(RepositoryConfig(), [], text)
        if finding.rule == "not-a-mapping":
            what = finding.message.split(";", 1)[0]
            finding = Finding(finding.rule, f"{what}; {CONFIG_FILE} holds {_CONFIG_KEYS}",
                              span=finding.span)  # fmt: skip
        return ConfigCheck(None, [finding], text)
    findings = schema.validate_with(data, config_schema())
    if findings:
        return ConfigCheck(None, findings, source.text)
    options = (data.get("defaults") or {}).get("options") or {}
    return ConfigCheck(RepositoryConfig(data.get("tenant"), dict(options)), [], source.text)


def tenant_refusal(config: RepositoryConfig, runner_tenant: str, *, pinned: bool) -> Finding | None:
    """Why a runner of `runner_tenant` may not sync a repository with this config, or None.
    A `pinned` runner (its tenant set to one other than the default) syncs only its own
    tenant's repository; any other writes into the tenant the repository names."""
    if config.tenant is None or config.tenant == runner_tenant or not pinned:
        return None
    return Finding(
        "tenant-mismatch",
        f"{CONFIG_FILE} says this repository belongs to tenant `{config.tenant}`, but this "
        f"runner syncs tenant `{runner_tenant}` (DWF_TENANT); sync it with a runner of tenant "
        f"`{config.tenant}`, or change `tenant` here",
        ("tenant",),
        severity="error",
    )


def sync_tenant(config: RepositoryConfig, runner_tenant: str) -> str:
    """The tenant a sync of the repository writes into: the one it names, else the runner's."""
    return config.tenant or runner_tenant


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
