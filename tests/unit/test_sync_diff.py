"""The sync's change set (`runner.sync.diff.decide`): what a commit does to the workflows.

Files are linted for real (as `runner.sync.check` does, without the rules across files) so the
checksums, summaries and diagnostics are the ones a sync sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from runner.lint import linter
from runner.plan import checksum
from runner.spec.diagnostics import Diagnostic, Finding
from runner.sync import diff
from runner.sync.diff import Current, Guard, LintedFile

TEXTS: dict[str, str] = {}


def document(
    workflow_id: str,
    status: str | None = "active",
    *,
    message: str = "hi",
    subworkflow: str | None = None,
    hook: str | None = None,
) -> str:
    lines = ["apiVersion: dataworkflows/v1", "kind: Workflow", f"id: {workflow_id}"]
    if status is not None:
        lines.append(f"status: {status}")
    lines += ["startNode: a", "nodes:", "  - id: a", "    actionType: core.echo"]
    lines.append(f"    parameters: {{message: {message}}}")
    if subworkflow is not None:
        lines += ["    edges: [{targetNode: child}]", "  - id: child", "    nodeType: subworkflow"]
        lines.append(f"    workflowId: {subworkflow}")
    if hook is not None:
        lines += ["triggers:", "  - id: hook", "    type: webhook", f"    path: {hook}"]
        lines.append("    signature: none")
    return "\n".join(lines) + "\n"


def linted(path: str, text: str) -> LintedFile:
    """A file as the sync's check hands it to `decide` (runner/sync/check.py)."""
    TEXTS[path] = text
    result = linter.lint_source(path, text.encode())
    valid = result.document is not None and not any(
        d.severity == "error" for d in result.diagnostics
    )
    return LintedFile(
        path,
        f"blob-{path}",
        result.diagnostics,
        result.summary,
        result.document if valid else None,
        checksum.definition_checksum(result.document) if valid else None,
    )


def diagnose(path: str, findings: list[Finding]) -> list[Diagnostic]:
    return linter.diagnose(path, TEXTS[path], findings)


def current(
    workflow_id: str,
    status: str = "Active",
    *,
    managed_by: str = "git",
    of: LintedFile | None = None,
    path: str | None = None,
) -> Current:
    """A workflow in the database; `of`: its current version is that file's."""
    if path is None:
        path = of.path if of is not None else f"workflows/{workflow_id}.yaml"
    digest = of.checksum if of is not None else "old-checksum"
    return Current(workflow_id, status, managed_by, 1, digest, path)


def decide(
    files: list[LintedFile],
    existing: Sequence[Current] = (),
    webhooks: dict[str, str] | None = None,
    guard: Guard | None = None,
) -> diff.ChangeSet:
    return diff.decide(
        files,
        {c.workflow_id: c for c in existing},
        webhooks or {},
        guard=guard or Guard(allow=True),
        diagnose=diagnose,
    )


def outcome(changes: diff.ChangeSet, path: str) -> diff.FileChange:
    (change,) = [c for c in changes.files if c.path == path]
    return change


def rules(change: diff.FileChange) -> list[str]:
    return [d.rule for d in change.diagnostics]


# --- added, updated, status, unchanged ---------------------------------------------------------


def test_a_new_valid_file_adds_its_workflow_with_the_declared_status():
    f = linted("workflows/a.yaml", document("a", "active"))
    changes = decide([f])
    change = outcome(changes, "workflows/a.yaml")
    assert (change.workflow_id, change.outcome, change.status) == ("a", "added", "Active")
    assert change.checksum == f.checksum and change.document == f.document
    assert change.previous is None
    assert changes.changed and not changes.errors
    assert changes.counts == {"added": 1}


def test_a_file_that_declares_no_status_is_added_as_a_draft():
    change = outcome(decide([linted("a.yaml", document("a", None))]), "a.yaml")
    assert (change.outcome, change.status) == ("added", "Draft")


def test_a_changed_file_updates_its_workflow():
    before = linted("a.yaml", document("a", message="before"))
    after = linted("a.yaml", document("a", message="after"))
    row = current("a", of=before)
    change = outcome(decide([after], [row]), "a.yaml")
    assert change.outcome == "updated"
    assert change.previous == row and change.checksum == after.checksum != before.checksum


def test_activating_a_draft_in_its_file_makes_a_new_version():
    draft = linted("a.yaml", document("a", "draft"))
    active = linted("a.yaml", document("a", "active"))
    change = outcome(decide([active], [current("a", "Draft", of=draft)]), "a.yaml")
    assert (change.outcome, change.status) == ("updated", "Active")


def test_restoring_a_deleted_file_reactivates_its_version_without_a_new_one():
    f = linted("a.yaml", document("a", "active"))
    change = outcome(decide([f], [current("a", "Archived", of=f)]), "a.yaml")
    assert (change.outcome, change.status) == ("status", "Active")
    assert change.writes


def test_git_takes_over_a_workflow_first_run_from_a_local_file():
    f = linted("a.yaml", document("a"))
    change = outcome(decide([f], [current("a", managed_by="local", of=f)]), "a.yaml")
    assert change.outcome == "status" and change.writes


def test_an_unchanged_file_writes_nothing():
    f = linted("a.yaml", document("a"))
    changes = decide([f], [current("a", of=f)])
    assert outcome(changes, "a.yaml").outcome == "unchanged"
    assert not changes.changed
    assert changes.counts == {"unchanged": 1}


def test_comments_and_key_order_do_not_make_a_new_version():
    f = linted("a.yaml", document("a"))
    lines = document("a").splitlines()
    reordered = "\n".join(["# a comment", lines[2], lines[0], *lines[1:2], *lines[3:]]) + "\n"
    again = linted("a.yaml", reordered)
    assert outcome(decide([again], [current("a", of=f)]), "a.yaml").outcome == "unchanged"


# --- deleted and invalid files -------------------------------------------------------------------


def test_a_deleted_file_archives_its_workflow_after_the_files():
    a = linted("workflows/a.yaml", document("a"))
    gone = current("b", path="workflows/b.yaml")
    changes = decide([a], [current("a", of=a), gone])
    assert [c.path for c in changes.files] == ["workflows/a.yaml", "workflows/b.yaml"]
    archived = changes.files[-1]
    assert (archived.workflow_id, archived.outcome, archived.status) == (
        "b",
        "archived",
        "Archived",
    )
    assert archived.previous == gone and archived.writes
    assert changes.counts == {"unchanged": 1, "archived": 1}


def test_only_live_git_workflows_are_archived():
    a = linted("a.yaml", document("a"))
    existing = [
        current("a", of=a),
        current("old", "Archived"),
        current("made-over-api", managed_by="api"),
    ]
    changes = decide([a], existing)
    assert [c.outcome for c in changes.files] == ["unchanged"]


def test_an_invalid_file_keeps_its_last_good_version_and_is_not_archived():
    good = linted("a.yaml", document("a"))
    broken = linted("a.yaml", document("a", "sometimes"))
    row = current("a", of=good)
    changes = decide([broken], [row])
    change = outcome(changes, "a.yaml")
    assert (change.workflow_id, change.outcome) == ("a", "invalid")
    assert "schema-value" in rules(change)
    assert change.previous == row and not change.writes
    assert changes.errors and not changes.changed
    assert [c.outcome for c in changes.files] == ["invalid"]  # not archived


def test_a_file_that_is_not_yaml_any_more_keeps_the_workflow_it_had():
    good = linted("a.yaml", document("a"))
    broken = linted("a.yaml", "id: [a\n")
    assert broken.summary is None
    change = outcome(decide([broken], [current("a", of=good)]), "a.yaml")
    assert (change.workflow_id, change.outcome, rules(change)) == ("a", "invalid", ["yaml-syntax"])
    assert change.previous is not None and change.previous.workflow_id == "a"


def test_a_warning_does_not_stop_a_file():
    f = linted("a.yaml", document("a"))
    warned = replace(
        f, diagnostics=(Diagnostic("a.yaml", 1, 1, 1, 2, "warning", "unused-var", "x"),)
    )
    change = outcome(decide([warned]), "a.yaml")
    assert change.outcome == "added" and rules(change) == ["unused-var"]


def test_an_ignored_file_is_reported_with_a_warning_and_not_read():
    changes = decide([LintedFile("link.yaml", "blob", ignored="a symbolic link")])
    change = outcome(changes, "link.yaml")
    assert (change.outcome, change.workflow_id) == ("ignored", None)
    (notice,) = change.diagnostics
    assert (notice.severity, notice.rule) == ("warning", "file-ignored")
    assert "symbolic link" in notice.message
    assert not changes.errors and not changes.changed


# --- the mass-delete guard -----------------------------------------------------------------------


def git_workflows(count: int) -> list[Current]:
    return [current(f"w{i}") for i in range(count)]


def test_the_guard_refuses_archiving_every_git_workflow():
    changes = decide([], git_workflows(1), guard=Guard())
    assert changes.refused is not None and "every one" in changes.refused
    assert "--allow-mass-delete" in changes.refused and "1 of the 1" in changes.refused
    assert changes.errors


def test_the_guard_refuses_archiving_more_than_its_share():
    keep = linted("workflows/w0.yaml", document("w0"))
    changes = decide([keep], git_workflows(4), guard=Guard(max_share=0.5))
    assert changes.refused is not None
    assert "3 of the 4" in changes.refused and "75%, more than 50%" in changes.refused


def test_the_guard_lets_archiving_up_to_its_share_through():
    files = [linted(f"workflows/w{i}.yaml", document(f"w{i}")) for i in range(2)]
    changes = decide(files, git_workflows(4), guard=Guard(max_share=0.5))
    assert changes.refused is None
    assert changes.counts["archived"] == 2


def test_allowing_mass_delete_lets_everything_be_archived():
    changes = decide([], git_workflows(3), guard=Guard(allow=True))
    assert changes.refused is None and changes.counts == {"archived": 3}


def test_the_guards_share_is_of_the_git_workflows_only():
    keep = linted("workflows/w0.yaml", document("w0"))
    api = [current(f"api{i}", managed_by="api") for i in range(10)]
    changes = decide([keep], [*git_workflows(2), *api], guard=Guard(max_share=0.4))
    assert changes.refused is not None and "1 of the 2" in changes.refused


# --- ownership: the API's workflows and webhook paths --------------------------------------------


def test_a_file_may_not_take_the_id_of_a_workflow_made_over_the_api():
    f = linted("a.yaml", document("a"))
    row = current("a", managed_by="api")
    change = outcome(decide([f], [row]), "a.yaml")
    assert (change.outcome, rules(change)) == ("invalid", ["workflow-not-from-git"])
    assert change.diagnostics[0].line == 3  # the `id:` line
    assert change.previous == row


def test_a_webhook_path_served_outside_the_repository_refuses_the_file():
    f = linted("a.yaml", document("a", hook="clients/new"))
    existing = [current("other", managed_by="api")]
    change = outcome(decide([f], existing, {"clients/new": "other"}), "a.yaml")
    assert (change.outcome, rules(change)) == ("invalid", ["duplicate-webhook-path"])
    message = change.diagnostics[0].message
    assert "`clients/new`" in message and "`other`" in message
    assert (
        change.diagnostics[0].line
        == TEXTS["a.yaml"].splitlines().index("    path: clients/new") + 1
    )


def test_a_webhook_path_of_a_workflow_the_database_does_not_know_refuses_the_file():
    f = linted("a.yaml", document("a", hook="h"))
    change = outcome(decide([f], [], {"h": "ghost"}), "a.yaml")
    assert rules(change) == ["duplicate-webhook-path"]


@pytest.mark.parametrize("owner", ["a", "b"])
def test_a_webhook_path_may_stay_or_move_between_git_workflows(owner):
    a = linted("a.yaml", document("a", hook="h"))
    b = linted("b.yaml", document("b"))
    changes = decide([a, b], [current("a", of=a), current("b")], {"h": owner})
    assert outcome(changes, "a.yaml").outcome == "unchanged"
    assert not changes.errors


# --- publish-time validation: Active workflows start only Active subworkflows -------------------


def test_an_active_workflow_may_not_start_a_draft_subworkflow():
    parent = linted("parent.yaml", document("parent", "active", subworkflow="child"))
    child = linted("child.yaml", document("child", "draft"))
    changes = decide([parent, child])
    change = outcome(changes, "parent.yaml")
    assert (change.outcome, rules(change)) == ("invalid", ["subworkflow-not-active"])
    assert "`child` is Draft" in change.diagnostics[0].message
    assert (
        change.diagnostics[0].line
        == TEXTS["parent.yaml"].splitlines().index("    workflowId: child") + 1
    )
    assert outcome(changes, "child.yaml").outcome == "added"


def test_an_active_workflow_may_not_start_a_missing_subworkflow():
    parent = linted("parent.yaml", document("parent", subworkflow="nowhere"))
    change = outcome(decide([parent]), "parent.yaml")
    assert "`nowhere` is missing" in change.diagnostics[-1].message


@pytest.mark.parametrize(
    ("child_file", "child_row"),
    [
        ("active", None),  # activated by the same commit
        (None, "Active"),  # already Active in the database, and not from this repository
    ],
)
def test_an_active_workflow_may_start_a_subworkflow_that_will_be_active(child_file, child_row):
    files = [linted("parent.yaml", document("parent", subworkflow="child"))]
    if child_file is not None:
        files.append(linted("child.yaml", document("child", child_file)))
    existing = [] if child_row is None else [current("child", child_row, managed_by="api")]
    change = outcome(decide(files, existing), "parent.yaml")
    assert change.outcome == "added"


def test_a_draft_may_start_any_subworkflow():
    parent = linted("parent.yaml", document("parent", "draft", subworkflow="nowhere"))
    assert outcome(decide([parent]), "parent.yaml").outcome == "added"


def test_a_refused_subworkflow_refuses_its_active_callers_in_turn():
    top = linted("top.yaml", document("top", subworkflow="middle"))
    middle = linted("middle.yaml", document("middle", subworkflow="bottom"))
    bottom = linted("bottom.yaml", document("bottom", "draft"))
    changes = decide([top, middle, bottom])
    assert [(c.path, c.outcome) for c in changes.files] == [
        ("bottom.yaml", "added"),
        ("middle.yaml", "invalid"),
        ("top.yaml", "invalid"),
    ]
    assert "`middle` is missing" in outcome(changes, "top.yaml").diagnostics[-1].message


def test_a_refused_file_keeps_its_last_good_version_for_its_callers():
    # `middle` is refused (its new version starts a Draft), but its last good version is Active,
    # so `top`, which starts it, is still valid.
    top = linted("top.yaml", document("top", subworkflow="middle"))
    middle = linted("middle.yaml", document("middle", subworkflow="bottom"))
    bottom = linted("bottom.yaml", document("bottom", "draft"))
    existing = [current("middle", "Active", path="middle.yaml")]
    changes = decide([top, middle, bottom], existing)
    assert outcome(changes, "middle.yaml").outcome == "invalid"
    assert outcome(changes, "top.yaml").outcome == "added"
