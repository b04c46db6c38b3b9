"""Cross-file rules over workflow summaries."""

from __future__ import annotations

from runner.spec import repository
from runner.spec.repository import WorkflowSummary


def test_duplicate_workflow_ids_flag_the_later_file():
    out = repository.check({"b.yaml": WorkflowSummary("x"), "a.yaml": WorkflowSummary("x")})
    assert list(out) == ["b.yaml"]
    assert out["b.yaml"][0].rule == "duplicate-workflow-id"
    assert "a.yaml" in out["b.yaml"][0].message


def test_duplicate_webhook_paths_across_and_within_files():
    out = repository.check(
        {
            "a.yaml": WorkflowSummary("a", webhooks=(("hooks/x", ("triggers", 0, "path")),)),
            "b.yaml": WorkflowSummary(
                "b",
                webhooks=(
                    ("hooks/x", ("triggers", 0, "path")),
                    ("hooks/y", ("triggers", 1, "path")),
                    ("hooks/y", ("triggers", 2, "path")),
                ),
            ),
        }
    )
    assert [(f.rule, f.path) for f in out["b.yaml"]] == [
        ("duplicate-webhook-path", ("triggers", 0, "path")),
        ("duplicate-webhook-path", ("triggers", 2, "path")),
    ]


def test_unknown_subworkflow_target():
    out = repository.check(
        {"a.yaml": WorkflowSummary("a", subworkflows=(("nope", ("nodes", 1, "workflowId")),))}
    )
    assert [(f.rule, f.path) for f in out["a.yaml"]] == [
        ("unknown-subworkflow", ("nodes", 1, "workflowId"))
    ]


def test_cycle_between_workflows_and_self_reference():
    out = repository.check(
        {
            "a.yaml": WorkflowSummary("a", subworkflows=(("b", ("nodes", 0, "workflowId")),)),
            "b.yaml": WorkflowSummary("b", subworkflows=(("a", ("nodes", 3, "workflowId")),)),
            "c.yaml": WorkflowSummary("c", subworkflows=(("c", ("nodes", 1, "workflowId")),)),
        }
    )
    found = sorted(
        (path, f.rule, " ".join(f.message.split()[:9])) for path, fs in out.items() for f in fs
    )
    assert [(p, r) for p, r, _ in found] == [
        ("a.yaml", "subworkflow-cycle"),
        ("c.yaml", "subworkflow-cycle"),
    ] or [(p, r) for p, r, _ in found] == [
        ("b.yaml", "subworkflow-cycle"),
        ("c.yaml", "subworkflow-cycle"),
    ]
    assert any("c -> c" in f.message for f in out["c.yaml"])
