"""`dwf run` on values the engine must handle without a traceback: text Postgres cannot store,
and node ids named like dict methods."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_run import dwf  # noqa: F401 (the `dwf` command on a test database; no traceback)

UNSTORABLE = """\
apiVersion: dataworkflows/v1
kind: Workflow
id: unstorable
startNode: a
onFailure: alert
nodes:
  - id: a
    actionType: core.echo
    parameters: {message: '{{ "x\\x00y" }}'}
    edges: [{targetNode: b, when: always}]
  - id: b
    actionType: core.echo
    parameters: {message: after}
    edges: [{targetNode: c}]
  - id: c
    actionType: core.echo
    parameters: {message: '{{ "\\ud800" }}'}
  - id: alert
    actionType: core.echo
    parameters: {message: "{{ execution.error.message }}"}
"""

METHOD_NAMES = """\
apiVersion: dataworkflows/v1
kind: Workflow
id: method-names
startNode: get
outputs: {count: "{{ nodes.get.outputs.echo }}"}
nodes:
  - id: get
    actionType: core.echo
    parameters: {message: "{{ trigger.items | length }}"}
    edges: [{targetNode: values}]
  - id: values
    actionType: core.echo
    parameters: {message: "{{ nodes.get.outputs.echo }} items"}
"""


def test_unstorable_text_fails_its_node_and_the_run_goes_on(dwf, tmp_path: Path):  # noqa: F811
    flow = tmp_path / "unstorable.yaml"
    flow.write_text(UNSTORABLE)
    proc = dwf("run", str(flow))
    assert proc.returncode == 1, proc.stderr  # `c` failed unhandled
    assert "a Failed" in proc.stderr and "b Succeeded" in proc.stderr
    assert "holds a NUL character (U+0000), which cannot be stored" in proc.stderr
    document = json.loads(dwf("run", str(flow), "--output", "json").stdout)
    nodes = document["nodes"]
    assert {k: v["status"] for k, v in nodes.items()} == {
        "a": "Failed", "b": "Succeeded", "c": "Failed", "alert": "Succeeded",
    }  # fmt: skip
    assert "`parameters.message`" in nodes["c"]["error"]["message"]
    assert "surrogate code point U+D800" in nodes["alert"]["outputs"]["echo"]


def test_a_node_named_get_is_read_by_its_id(dwf, tmp_path: Path):  # noqa: F811
    flow = tmp_path / "methods.yaml"
    flow.write_text(METHOD_NAMES)
    assert dwf("lint", str(flow)).returncode == 0
    proc = dwf("run", str(flow), "--trigger", '{"items": [1, 2]}', "--output", "json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["outputs"] == {"count": 2}
    assert document["nodes"]["values"]["outputs"] == {"echo": "2 items"}
