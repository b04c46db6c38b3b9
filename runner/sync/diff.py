"""What applying a repository's files to a database changes: decisions without I/O.

    changes = decide(files, current, webhooks, guard=Guard(0.5), diagnose=...)

`files` are the linted workflow files of a commit (or a checkout, for `dwf plan`), `current`
the database's workflows. The result says, per file, what happens (added, updated, status,
unchanged, invalid, ignored), which workflows are archived because their file is gone, and
whether the mass-delete guard refuses the whole sync. `dwf sync` writes it; `dwf plan` prints
it; both therefore always agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from runner.spec import lifecycle
from runner.spec.diagnostics import Diagnostic, Finding
from runner.spec.lifecycle import Status
from runner.spec.repository import WorkflowSummary

Outcome = Literal["added", "updated", "status", "unchanged", "invalid", "ignored", "archived"]
#: Positions findings in a file: (path, findings) -> diagnostics (the lint's `diagnose`).
Diagnose = Callable[[str, list[Finding]], list[Diagnostic]]


@dataclass(frozen=True, slots=True)
class LintedFile:
    """A workflow file after lint: its path and blob, diagnostics (cross-file ones included),
    and, when it loaded, its summary, document, checksum and declared status. `ignored`: why
    it was not read. A result a sync stored (`runner.sync.check`) has no document: it is read
    again only if the file must be written."""

    path: str
    blob: str
    diagnostics: tuple[Diagnostic, ...] = ()
    summary: WorkflowSummary | None = None
    document: Mapping[str, Any] | None = None
    checksum: str | None = None
    ignored: str | None = None
    status: Status | None = None

    @property
    def valid(self) -> bool:
        """Loaded, and no error (warnings do not stop a sync)."""
        loaded = self.document is not None or self.checksum is not None
        return loaded and not any(d.severity == "error" for d in self.diagnostics)


@dataclass(frozen=True, slots=True)
class Current:
    """A workflow as the database has it: status, owner, current version and its checksum."""

    workflow_id: str
    status: Status
    managed_by: str
    version: int | None
    checksum: str | None
    source_path: str | None


@dataclass(frozen=True, slots=True)
class Guard:
    """The mass-delete guard: refuse archiving all git workflows, or more than `max_share`."""

    max_share: float = 0.5
    allow: bool = False


@dataclass(frozen=True, slots=True)
class FileChange:
    """What happens to one file (or, for `archived`, to the workflow of a deleted file)."""

    path: str
    workflow_id: str | None
    outcome: Outcome
    diagnostics: tuple[Diagnostic, ...] = ()
    status: Status | None = None
    checksum: str | None = None
    document: Mapping[str, Any] | None = None
    previous: Current | None = None

    @property
    def writes(self) -> bool:
        """Whether applying it writes anything."""
        return self.outcome in ("added", "updated", "status", "archived")


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Every file's change, in path order; `refused` says why the guard stops it all."""

    files: tuple[FileChange, ...]
    refused: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether applying it writes anything."""
        return any(f.writes for f in self.files)

    @property
    def errors(self) -> bool:
        """Whether a file is invalid (its last good version stays) or the guard refused."""
        return self.refused is not None or any(f.outcome == "invalid" for f in self.files)

    @property
    def unread(self) -> list[str]:
        """Files to write whose document is not at hand (their lint result was stored by an
        earlier sync): read and lint them, then decide again."""
        return [
            f.path
            for f in self.files
            if f.writes and f.outcome != "archived" and f.document is None
        ]


def decide(
    files: Sequence[LintedFile],
    current: Mapping[str, Current],
    webhooks: Mapping[str, str],
    *,
    guard: Guard,
    diagnose: Diagnose,
) -> ChangeSet:
    """The change set of applying `files` over `current` (see the module docstring).

    `webhooks` maps each served webhook path to its workflow. A valid file is still refused
    (`invalid`) when its workflow was made over the API, when its webhook path is served by a
    workflow outside the repository, or when it is Active and starts a subworkflow that would
    not be Active (publish-time validation).
    """
    by_path = {c.source_path: c.workflow_id for c in current.values() if c.managed_by == "git"}
    results: dict[str, FileChange] = {}
    wanted: dict[str, LintedFile] = {}
    for f in sorted(files, key=lambda f: f.path):
        workflow_id = f.summary.workflow_id if f.summary is not None else by_path.get(f.path)
        if f.ignored is not None:
            notice = Diagnostic(
                f.path, 1, 1, 1, 2, "warning", "file-ignored", f"not read: {f.ignored}"
            )
            results[f.path] = FileChange(f.path, None, "ignored", (notice,))
            continue
        problems = _ownership_problems(f, current, webhooks) if f.valid else []
        if not f.valid or problems:
            extra = tuple(diagnose(f.path, problems))
            previous = current.get(workflow_id) if workflow_id else None
            results[f.path] = FileChange(
                f.path, workflow_id, "invalid", f.diagnostics + extra, previous=previous
            )
            continue
        assert workflow_id is not None
        wanted[workflow_id] = f
    _publish_check(wanted, current, results, diagnose)
    kept = {c.workflow_id for c in results.values() if c.workflow_id is not None} | set(wanted)
    for workflow_id, f in wanted.items():
        results[f.path] = _change(f, workflow_id, current.get(workflow_id))
    archived = [
        c
        for c in current.values()
        if c.managed_by == "git" and c.status != "Archived" and c.workflow_id not in kept
    ]
    changes = sorted(results.values(), key=lambda c: c.path)
    changes += [
        FileChange(
            c.source_path or c.workflow_id, c.workflow_id, "archived", status="Archived", previous=c
        )
        for c in sorted(archived, key=lambda c: c.workflow_id)
    ]
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.outcome] = counts.get(change.outcome, 0) + 1
    live = sum(1 for c in current.values() if c.managed_by == "git" and c.status != "Archived")
    return ChangeSet(tuple(changes), _refusal(len(archived), live, guard), counts)


def _ownership_problems(
    f: LintedFile, current: Mapping[str, Current], webhooks: Mapping[str, str]
) -> list[Finding]:
    assert f.summary is not None
    problems = []
    existing = current.get(f.summary.workflow_id)
    if existing is not None and existing.managed_by == "api":
        problems.append(
            Finding(
                "workflow-not-from-git",
                f"workflow `{f.summary.workflow_id}` was created over the API in this database; "
                "archive it there and give this file another id, or remove the file",
                ("id",),
                severity="error",
            )
        )
    for hook_path, doc_path in f.summary.webhooks:
        owner = webhooks.get(hook_path)
        owned_elsewhere = owner is not None and owner != f.summary.workflow_id
        if owned_elsewhere and (owner not in current or current[str(owner)].managed_by != "git"):
            problems.append(
                Finding(
                    "duplicate-webhook-path",
                    f"webhook path `{hook_path}` is already served by workflow `{owner}`, "
                    "which is not in this repository",
                    doc_path,
                    severity="error",
                )
            )
    return problems


def _publish_check(
    wanted: dict[str, LintedFile],
    current: Mapping[str, Current],
    results: dict[str, FileChange],
    diagnose: Diagnose,
) -> None:
    """Publish-time validation: an Active workflow starts only Active subworkflows. A file that
    fails it is invalid (its last good version stays), which may fail others: to a fixpoint."""
    while True:
        final: dict[str, str] = {c.workflow_id: c.status for c in current.values()}
        final.update({w: _status(f) for w, f in wanted.items()})
        failed = []
        for workflow_id, f in wanted.items():
            if _status(f) != "Active" or f.summary is None:
                continue
            problems = [
                Finding("subworkflow-not-active", refusal, doc_path, severity="error")
                for target, doc_path in f.summary.subworkflows
                if (refusal := lifecycle.subworkflow_refusal(target, final.get(target)))
            ]
            if problems:
                failed.append(workflow_id)
                extra = tuple(diagnose(f.path, problems))
                results[f.path] = FileChange(
                    f.path, workflow_id, "invalid", f.diagnostics + extra,
                    previous=current.get(workflow_id),
                )  # fmt: skip
        if not failed:
            return
        for workflow_id in failed:
            del wanted[workflow_id]


def _status(f: LintedFile) -> Status:
    if f.status is not None:
        return f.status
    assert f.document is not None
    return lifecycle.declared_status(f.document)


def _change(f: LintedFile, workflow_id: str, previous: Current | None) -> FileChange:
    status = _status(f)
    if previous is None:
        outcome: Outcome = "added"
    elif previous.checksum != f.checksum:
        outcome = "updated"
    elif previous.status != status or previous.managed_by != "git":
        outcome = "status"
    else:
        outcome = "unchanged"
    return FileChange(
        f.path, workflow_id, outcome, f.diagnostics, status, f.checksum, f.document, previous
    )


def _refusal(archiving: int, live: int, guard: Guard) -> str | None:
    if guard.allow or archiving == 0:
        return None
    share = archiving / live if live else 1.0
    if archiving < live and share <= guard.max_share:
        return None
    which = "every one" if archiving >= live else f"{share:.0%}, more than {guard.max_share:.0%}"
    return (
        f"refused: this commit would archive {archiving} of the {live} workflows from git "
        f"({which}); nothing was changed. If that is intended, sync with --allow-mass-delete "
        "(DWF_SYNC_ALLOW_MASS_DELETE=true)"
    )
