"""Drawing plans: Mermaid and Graphviz text for every edge kind, with hostile ids and conditions."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from runner.plan import compiler, render

# A condition with quotes, a pipe, a backslash, a hash and a line break: each can end a label early.
CONDITION = 'result.outputs.kind === "a|b" && x < 2 # \\n\nnext'


@pytest.fixture
def plan() -> compiler.Plan:
    data = {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": "render-me",
        "startNode": "fetch.items",
        "onFailure": "alert-ops",
        "nodes": [
            {
                "id": "fetch.items",
                "actionType": "monday.get-items",
                "edges": [
                    {"targetNode": "post", "condition": CONDITION},
                    {"targetNode": "notify", "when": "failure"},
                ],
                "onFailure": "notify",
            },
            {"id": "post", "actionType": "slack.post-message", "edges": [{"targetNode": "end"}]},
            {
                "id": "notify",
                "actionType": "core.echo",
                "edges": [{"targetNode": "end", "when": "always"}],
            },
            {"id": "end", "actionType": "core.echo"},
            {"id": "alert-ops", "actionType": "core.echo", "edges": [{"targetNode": "child"}]},
            {"id": "child", "nodeType": "subworkflow", "workflowId": "page-someone"},
        ],
    }
    return compiler.compile_plan(data)


# Mermaid


def test_mermaid_draws_each_edge_kind_with_its_own_arrow(plan):
    lines = render.to_mermaid(plan).splitlines()
    assert lines[0] == "flowchart TD"
    # n0 fetch.items, n1 post, n2 notify, n3 end, n4 alert-ops, n5 child (document order).
    assert any(re.fullmatch(r'    n0 -->\|".*"\| n1', line) for line in lines)
    assert "    n0 -.-> n2" in lines
    assert '    n0 -.->|"onFailure"| n2' in lines
    assert "    n2 ==> n3" in lines
    assert "    n1 --> n3" in lines
    assert "    n4 --> n5" in lines
    assert "    linkStyle 1,2 stroke:#c62828" in lines


def test_mermaid_escapes_conditions_so_they_cannot_break_the_chart(plan):
    edge = next(line for line in render.to_mermaid(plan).splitlines() if "n0 -->" in line)
    label = edge.removeprefix('    n0 -->|"').removesuffix('"| n1')
    assert label == (
        "result.outputs.kind === #34;a#124;b#34; #38;#38; x #60; 2 #35; #92;n<br/>next"
    )
    assert not set('"|\n') & set(label)


def test_mermaid_maps_node_ids_to_safe_ids_and_labels_them(plan):
    text = render.to_mermaid(plan)
    assert '    n0["fetch.items<br/>monday.get-items"]' in text
    # `end` is a Mermaid keyword: it appears only inside a quoted label.
    assert '    n3["end<br/>core.echo"]' in text
    assert '    n5[["child<br/>subworkflow: page-someone"]]' in text
    assert not re.search(r"^\s*(fetch\.items|end|alert-ops)\b", text, re.MULTILINE)


def test_mermaid_styles_the_entry_and_the_failure_path(plan):
    lines = render.to_mermaid(plan).splitlines()
    assert "    classDef entry stroke:#2e7d32,stroke-width:3px" in lines
    assert "    class n0 entry" in lines
    assert "    class n4,n5 failurePath" in lines


def test_mermaid_is_deterministic(plan):
    again = compiler.Plan.from_json(plan.to_json())
    assert render.to_mermaid(plan) == render.to_mermaid(again)


# Graphviz


def test_dot_draws_each_edge_kind_with_its_own_style(plan):
    lines = render.to_dot(plan).splitlines()
    red = 'color="#c62828", fontcolor="#c62828"'
    assert lines[0] == 'digraph "render-me" {'
    assert lines[-1] == "}"
    assert any(
        line.startswith('    "fetch.items" -> "post" [label=') and line.endswith("style=solid];")
        for line in lines
    )
    assert f'    "fetch.items" -> "notify" [style=dashed, {red}];' in lines
    assert f'    "fetch.items" -> "notify" [label="onFailure", style=dashed, {red}];' in lines
    assert '    "notify" -> "end" [style=bold, penwidth=2];' in lines
    assert '    "post" -> "end" [style=solid];' in lines


def test_dot_escapes_conditions_and_quotes_ids(plan):
    text = render.to_dot(plan)
    assert r'[label="result.outputs.kind === \"a|b\" && x < 2 # \\n\nnext", style=solid]' in text
    assert '    "fetch.items" [label="fetch.items\\nmonday.get-items", ' in text
    assert '"child" [label="child\\nsubworkflow: page-someone", peripheries=2' in text
    for line in text.splitlines():
        unescaped_quotes = len(re.findall(r'(?<!\\)(?:\\\\)*"', line))
        assert unescaped_quotes % 2 == 0, line


def test_dot_styles_the_entry_and_the_failure_path(plan):
    text = render.to_dot(plan)
    assert (
        '"fetch.items" [label="fetch.items\\nmonday.get-items", color="#2e7d32", penwidth=3];'
        in (text)
    )
    assert '"alert-ops" [label="alert-ops\\ncore.echo", style="rounded,filled"' in text


def test_dot_is_deterministic(plan):
    assert render.to_dot(plan) == render.to_dot(compiler.Plan.from_json(plan.to_json()))


def test_dot_output_parses_with_graphviz(plan):
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("Graphviz `dot` is not installed")
    result = subprocess.run(
        [dot, "-Tcanon"], input=render.to_dot(plan), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert '"fetch.items" -> post' in result.stdout or '"fetch.items" -> "post"' in result.stdout


def test_dot_quotes_a_hostile_workflow_id():
    data = {"id": 'say "hi" \\', "startNode": "a", "nodes": [{"id": "a", "actionType": "x"}]}
    plan = compiler.compile_plan(data)
    assert render.to_dot(plan).startswith('digraph "say \\"hi\\" \\\\" {\n')
    dot = shutil.which("dot")
    if dot is not None:
        result = subprocess.run(
            [dot, "-Tcanon"], input=render.to_dot(plan), capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
