"""`dwf run` and `dwf executions` as a user runs them, against a real test database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DWF = shutil.which("dwf", path=str(Path(sys.executable).parent)) or "dwf"


@pytest.fixture
def dwf(database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")}
    env |= {"DWF_DATABASE_URL": database_url, "DWF_HOME": str(tmp_path / "home")}

    def call(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [DWF, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    return call


def test_run_file_prints_the_finished_execution_as_json(dwf):
    proc = dwf("run", "examples/workflows/hello.yaml", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert set(document) >= {"executionId", "status", "error", "outputs", "nodes"}
    assert document["status"] == "Succeeded"
    assert document["outputs"]["greeting"] == "Hello, world!"
    assert document["nodes"]["greet"] == {
        "status": "Succeeded",
        "attempts": 1,
        "outputs": {"echo": "Hello, world!"},
        "error": None,
    }


def test_plain_progress_lines_when_not_on_a_terminal(dwf):
    proc = dwf("run", "examples/workflows/hello.yaml")
    assert proc.returncode == 0
    assert "greet Succeeded" in proc.stderr and "execution Succeeded" in proc.stderr
    assert "Succeeded" in proc.stdout


def test_a_failed_execution_exits_1(dwf, tmp_path):
    flow = tmp_path / "fails.yaml"
    flow.write_text(
        "apiVersion: dataworkflows/v1\nkind: Workflow\nid: fails\nstartNode: a\n"
        "nodes:\n  - id: a\n    actionType: core.echo\n"
        "    parameters: {message: x, failTimes: 1, failMode: permanent}\n"
    )
    proc = dwf("run", str(flow), "--output", "json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["status"] == "Failed"


def test_trigger_from_a_file_and_request_id_dedupe(dwf, tmp_path):
    payload = tmp_path / "trigger.json"
    payload.write_text(json.dumps({"name": "Grace"}))
    first = dwf("run", "examples/workflows/hello.yaml", "--trigger", f"@{payload}",
                "--request-id", "r-1", "--output", "json")  # fmt: skip
    again = dwf("run", "examples/workflows/hello.yaml", "--trigger", '{"name": "Other"}',
                "--request-id", "r-1", "--output", "json")  # fmt: skip
    one, two = json.loads(first.stdout), json.loads(again.stdout)
    assert one["executionId"] == two["executionId"]
    assert one["outputs"]["greeting"] == "Hello, Grace!"


@pytest.mark.parametrize(
    ("trigger", "needle"),
    [("[1, 2]", "JSON object"), ("{not json", "not valid JSON"), ("@/no/such/file", "cannot read")],
)
def test_bad_trigger_payloads_are_refused_with_a_reason(dwf, trigger, needle):
    proc = dwf("run", "examples/workflows/hello.yaml", "--trigger", trigger)
    assert proc.returncode == 2
    assert needle in proc.stderr


def test_a_file_with_lint_errors_is_not_run(dwf):
    proc = dwf("run", "examples/invalid/cycle.yaml")
    assert proc.returncode == 1
    assert "[cycle]" in proc.stderr


def test_run_by_id_needs_active_or_draft_flag(dwf, tmp_path):
    draft = tmp_path / "draft.yaml"
    draft.write_text(
        "apiVersion: dataworkflows/v1\nkind: Workflow\nid: drafty\nstatus: draft\nstartNode: a\n"
        "nodes:\n  - {id: a, actionType: core.echo, parameters: {message: hi}}\n"
    )
    assert dwf("run", str(draft)).returncode == 0  # a file runs whatever its status
    refused = dwf("run", "drafty")
    assert refused.returncode == 1 and "Draft" in refused.stderr
    assert dwf("run", "drafty", "--draft").returncode == 0
    missing = dwf("run", "no-such-workflow")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_executions_list_and_show(dwf):
    run = json.loads(dwf("run", "examples/workflows/hello.yaml", "--output", "json").stdout)
    listed = json.loads(dwf("executions", "list", "--output", "json").stdout)
    assert [i["executionId"] for i in listed["items"]] == [run["executionId"]]
    shown = json.loads(dwf("executions", "show", run["executionId"], "--output", "json").stdout)
    assert shown["source"].startswith("local:") and shown["source"].endswith("hello.yaml")
    assert [a["nodeId"] for a in shown["attempts"]] == ["greet", "pause", "goodbye"]
    text = dwf("executions", "show", run["executionId"]).stdout
    assert "greet" in text and "Succeeded" in text
    unknown = dwf("executions", "show", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1 and "does not exist" in unknown.stderr


def test_db_status_after_a_run_is_up_to_date(dwf):
    dwf("run", "examples/workflows/hello.yaml")
    proc = dwf("db", "status")
    assert proc.returncode == 0
    assert "0001_initial" in proc.stdout
