"""`dwf run` and `dwf executions` as a user runs them, against a real test database."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner.daemon import Daemon
from runner.settings import Settings
from tests import fakes

ROOT = Path(__file__).resolve().parents[2]
DWF = shutil.which("dwf", path=str(Path(sys.executable).parent)) or "dwf"


@pytest.fixture
def dwf(database_url, tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")}
    base |= {"DWF_DATABASE_URL": database_url, "DWF_HOME": str(tmp_path / "home")}

    def call(
        *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [DWF, *args], cwd=cwd, env=base | (env or {}), capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
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


def test_executions_show_lists_each_attempts_resource_links(dwf, tmp_path):
    token = "xoxb-e2e-links"
    flow = tmp_path / "posts.yaml"
    flow.write_text(
        "apiVersion: dataworkflows/v1\nkind: Workflow\nid: posts\nstartNode: one\nnodes:\n"
        "  - {id: one, actionType: slack.post-message, parameters: {channel: '#ops', text: a},"
        " edges: [{targetNode: two}]}\n"
        "  - {id: two, actionType: slack.post-message, parameters: {channel: '#ops', text: b},"
        " edges: [{targetNode: three}]}\n"
        "  - {id: three, actionType: slack.post-message, parameters: {channel: '#ops', text: c}}\n"
    )
    with fakes.slack(token) as slack:
        env = {"DWF_SECRET_SLACK_TOKEN": token, "DWF_SLACK_API_URL": slack.url}
        run = dwf("run", str(flow), "--output", "json", env=env)
        assert run.returncode == 0, run.stderr
        assert len(slack.posted) == 3
    execution_id = json.loads(run.stdout)["executionId"]
    shown = json.loads(dwf("executions", "show", execution_id, "--output", "json").stdout)
    links = {a["nodeId"]: a["resourceLinks"] for a in shown["attempts"]}
    assert links == {
        node: [
            {
                "system": "slack",
                "resourceType": "message",
                "externalId": f"C0OPS/1700000000.00000{n}",
                "url": f"https://example.slack.com/archives/C0OPS/p170000000000000{n}",
            }
        ]
        for n, node in enumerate(("one", "two", "three"), start=1)
    }
    text = dwf("executions", "show", execution_id).stdout
    assert (
        "    link slack message C0OPS/1700000000.000002"
        "  https://example.slack.com/archives/C0OPS/p1700000000000002"
    ) in text.splitlines()


def api(database_url: str, tmp_path: Path, method: str, path: str, body: Any = None) -> Any:
    """One request to the HTTP API of a Daemon on the test database, in this process."""

    async def call() -> Any:
        settings = Settings(database_url=database_url, home=tmp_path / "home")
        async with Daemon(settings) as daemon:
            app = daemon.app()
            transport = httpx.ASGITransport(app=app)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://api.test") as client,
            ):
                response = await client.request(method, path, json=body)
        assert response.status_code < 300, response.text
        return response.json()

    return asyncio.run(call())


def test_running_an_edited_copy_changes_nothing_the_triggers_and_the_api_run(
    dwf, database_url, tmp_path
):
    def report(message: str, status: str | None) -> str:
        return "\n".join(
            [
                "apiVersion: dataworkflows/v1", "kind: Workflow", "id: report",
                f"displayName: Report ({message})", *([f"status: {status}"] if status else []),
                "startNode: say", "triggers:",
                "  - {id: weekday-9am, type: schedule, cron: '0 9 * * 1-5',"
                " timezone: Europe/London}",
                "nodes:",
                f"  - {{id: say, actionType: core.echo, parameters: {{message: {message}}}}}", "",
            ]
        )  # fmt: skip

    created = api(database_url, tmp_path, "POST", "/api/v1/workflows",
                  {"yaml": report("live", "active"), "autoActivate": True})  # fmt: skip
    assert created["status"] == "Active" and created["managedBy"] == "api"
    assert [t["id"] for t in created["triggers"]] == ["weekday-9am"]

    edited = tmp_path / "report.yaml"
    edited.write_text(report("edited", None))  # an author's copy: no `status:` (a draft)
    ran = dwf("run", str(edited), "--output", "json")
    assert ran.returncode == 0, ran.stderr
    document = json.loads(ran.stdout)
    assert document["nodes"]["say"]["outputs"] == {"echo": "edited"}  # the file's content ran
    assert document["workflowVersion"] == 2

    after = api(database_url, tmp_path, "GET", "/api/v1/workflows/report")
    assert after == created  # status, current version, definition, triggers, updatedAt: all
    versions = api(database_url, tmp_path, "GET", "/api/v1/workflows/report/versions")["items"]
    assert [(v["version"], v["current"], v["sourceKind"]) for v in versions] == [
        (2, False, "local"),
        (1, True, "api"),
    ]
    assert versions[0]["path"] == str(edited.resolve())
    shown = json.loads(
        dwf("executions", "show", document["executionId"], "--output", "json").stdout
    )
    assert shown["source"] == f"local:{edited.resolve()}"
    # What the triggers and the API start is still the live version; running the file again
    # runs the same local version (same checksum).
    by_id = json.loads(dwf("run", "report", "--output", "json").stdout)
    assert (by_id["workflowVersion"], by_id["nodes"]["say"]["outputs"]) == (1, {"echo": "live"})
    again = json.loads(dwf("run", str(edited), "--output", "json").stdout)
    assert again["workflowVersion"] == 2
    assert api(database_url, tmp_path, "GET", "/api/v1/workflows/report") == created


def test_running_a_file_of_a_new_workflow_creates_it_as_a_draft(dwf, database_url, tmp_path):
    # hello.yaml declares `status: active` and a manual trigger; a local run activates nothing.
    ran = dwf("run", "examples/workflows/hello.yaml", "--output", "json")
    assert ran.returncode == 0, ran.stderr
    created = api(database_url, tmp_path, "GET", "/api/v1/workflows/hello")
    assert (created["status"], created["managedBy"], created["currentVersion"]) == (
        "Draft",
        "local",
        1,
    )
    assert created["triggers"] == []
    refused = dwf("run", "hello")
    assert refused.returncode == 1 and "Draft" in refused.stderr
    assert dwf("run", "hello", "--draft").returncode == 0
