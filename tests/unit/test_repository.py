"""A repository: its dwf.yaml (schema, positions, what it means) and the cross-file rules over
workflow summaries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner.lint import linter
from runner.spec import repository
from runner.spec.repository import RepositoryConfig, WorkflowSummary
from tests.gitrepo import flow

ROOT = Path(__file__).resolve().parents[2]


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


# -- dwf.yaml ---------------------------------------------------------------------------------


def test_the_example_dwf_yaml_is_valid_and_says_what_it_shows():
    raw = (ROOT / "examples" / "dwf.yaml").read_bytes()
    found = repository.check_config("dwf.yaml", raw)
    assert found.findings == []
    assert found.config == RepositoryConfig(
        "default", {"maxParallelActions": 10, "defaultActionTimeout": "5m"}
    )


@pytest.mark.parametrize("text", ["", "# only a comment\n", "~\n"])
def test_an_empty_dwf_yaml_is_no_config(text):
    found = repository.check_config("dwf.yaml", text.encode())
    assert found.findings == [] and found.config == RepositoryConfig()


def test_defaults_fill_in_only_the_options_a_workflow_leaves_out():
    config = RepositoryConfig(None, {"maxParallelActions": 3, "timeout": "1h"})
    assert config.apply({"id": "a"})["options"] == {"maxParallelActions": 3, "timeout": "1h"}
    own = config.apply({"id": "a", "options": {"maxParallelActions": 8}})
    assert own["options"] == {"maxParallelActions": 8, "timeout": "1h"}
    assert RepositoryConfig().apply({"id": "a"}) == {"id": "a"}


def test_a_runner_of_another_tenant_refuses_and_the_default_runner_follows_the_repository():
    acme = RepositoryConfig("acme")
    refusal = repository.tenant_refusal(acme, "ops", pinned=True)
    assert refusal is not None and refusal.rule == "tenant-mismatch" and refusal.path == ("tenant",)
    assert repository.tenant_refusal(acme, "acme", pinned=True) is None
    assert repository.tenant_refusal(acme, "default", pinned=False) is None
    assert repository.sync_tenant(acme, "default") == "acme"
    assert repository.sync_tenant(RepositoryConfig(), "ops") == "ops"


def test_the_dwf_schema_allows_the_options_the_workflow_schema_allows():
    workflow = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text())
    config = json.loads((ROOT / "schemas" / "dwf.schema.json").read_text())
    ours = config["properties"]["defaults"]["properties"]["options"]
    theirs = workflow["properties"]["options"]

    def shape(schema: dict, root: dict) -> dict:
        out = {}
        for name, declared in schema["properties"].items():
            prop = declared
            if "$ref" in prop:
                prop = root["$defs"][prop["$ref"].rsplit("/", 1)[1]]
            out[name] = {k: v for k, v in prop.items() if k not in ("description", "default")}
        return out

    assert shape(ours, config) == shape(theirs, workflow)
    assert ours["additionalProperties"] is False


def write_repository(root: Path, config: str) -> None:
    (root / "workflows").mkdir(parents=True)
    (root / "workflows" / "a.yaml").write_text(flow("a", hook="a/b").replace(
        "type: webhook, path: a/b", "type: webhook, path: a/b, signature: none"))  # fmt: skip
    (root / "dwf.yaml").write_text(config)


def test_lint_of_a_repository_checks_its_dwf_yaml_with_positions(tmp_path):
    write_repository(
        tmp_path,
        "tenant: acme\ndefaults:\n  options:\n    routePolicy: first\n  retry: {}\n",
    )
    result = linter.lint_paths([tmp_path])
    found = [(Path(d.path).name, d.line, d.column, d.rule) for d in result.diagnostics]
    assert found == [
        ("dwf.yaml", 4, 18, "schema-value"),
        ("dwf.yaml", 5, 3, "schema-unknown-key"),
    ]
    assert "did you mean `firstMatch`" in result.diagnostics[0].message
    assert result.files_checked == 2
    # Named itself, it is the config too; a folder without one has none to check.
    assert len(linter.lint_paths([tmp_path / "dwf.yaml"]).diagnostics) == 2
    assert linter.lint_paths([tmp_path / "workflows"]).diagnostics == []


def test_in_a_folder_without_workflows_dwf_yaml_is_not_linted_as_a_workflow(tmp_path):
    (tmp_path / "a.yaml").write_text(flow("a"))
    (tmp_path / "dwf.yaml").write_text("tenant: acme\n")
    result = linter.lint_paths([tmp_path])
    assert result.diagnostics == [] and result.files_checked == 2


def test_a_dwf_yaml_that_is_a_link_or_a_fifo_is_refused_without_being_read(tmp_path):
    write_repository(tmp_path, "")
    (tmp_path / "dwf.yaml").unlink()
    (tmp_path / "dwf.yaml").symlink_to("/dev/zero")
    [problem] = linter.lint_paths([tmp_path]).diagnostics
    assert problem.rule == "file-not-regular" and "symbolic link" in problem.message
    (tmp_path / "dwf.yaml").unlink()
    os.mkfifo(tmp_path / "dwf.yaml")
    [problem] = linter.lint_paths([tmp_path]).diagnostics
    assert problem.rule == "file-not-regular"
