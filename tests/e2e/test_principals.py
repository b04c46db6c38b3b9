"""Issue 14 §5: who started an execution, as an operator sees it. A schedule's executions are
`schedule:<triggerId>`'s, a webhook's `webhook:<triggerId>`'s, `dwf run`'s `cli:<os user>`'s,
and a subworkflow's its parent's. The execution stores it, and every log line of the execution
carries it with the tenant and the execution's ids, httpx's `HTTP Request:` line included.

`dwf serve` and `dwf run` run in subprocesses on a real Postgres, with JSON logs; the test reads
their log lines and the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import subprocess
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from runner.cli.executions import cli_principal
from runner.daemon import Daemon
from runner.settings import Settings
from tests import fakes
from tests.documents import workflow
from tests.e2e.test_serve import DWF, ROOT, STOP_SECONDS, Served, free_port, wait_for_health
from tests.waiting import until_sync

#: Not the default tenant, so a line that says `acme` got it from its execution.
TENANT = "acme"
#: What every log line of an execution carries (runner/logs.py).
IDENTITY = ("executionId", "workflowId", "version", "correlationId", "tenant", "principal")


# -- a served runner ------------------------------------------------------------------------------


class Runner:
    """A `dwf serve --roles api,worker,scheduler` subprocess, its JSON log and its database."""

    def __init__(self, served: Served, database_url: str) -> None:
        self.served, self.database_url = served, database_url

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        out = []
        for line in self.served.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def lines_of(self, execution_id: uuid.UUID) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("executionId") == str(execution_id)]

    def executions(self, **where: Any) -> list[dict[str, Any]]:
        """Rows of workflow_executions matching the given columns."""
        clauses = " AND ".join(f"{column} = %s" for column in where) or "true"
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            query = f"SELECT * FROM workflow_executions WHERE {clauses} ORDER BY created_at"
            return conn.execute(query, tuple(where.values())).fetchall()

    def ended(self, **where: Any) -> dict[str, Any]:
        """The first execution matching `where`, once it has ended."""

        def check() -> dict[str, Any] | None:
            if self.served.proc.poll() is not None:
                pytest.fail(f"dwf serve exited:\n{self.served.log_text()}")
            found = self.executions(**where)
            return found[0] if found and found[0]["finished_at"] is not None else None

        found = until_sync(check, 30, f"an execution with {where} to end")
        assert found is not None
        return found

    def deliver(self, path: str, payload: dict[str, Any]) -> uuid.UUID:
        """POST a webhook delivery to this tenant's `path`; the execution it started."""
        url = f"{self.served.url}/api/v1/hooks/{TENANT}/{path}"
        response = httpx.post(url, json=payload, timeout=10)
        assert response.status_code == 202, response.text
        return uuid.UUID(response.json()["executionId"])


@pytest.fixture
def runner(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Runner]]:
    """Starts `dwf serve` on the test database once the test has registered its workflows."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*definitions: dict[str, Any]) -> Runner:
        asyncio.run(_register(database_url, tmp_path, definitions))
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")}
        environ |= {
            "DWF_DATABASE_URL": database_url,
            "DWF_HOME": str(tmp_path / "home"),
            "DWF_LOG_FORMAT": "json",
            "DWF_HTTP_ALLOW_PRIVATE": "true",  # the fake server is on 127.0.0.1
            "DWF_POLL_SECONDS": "0.2",
            "DWF_SCHEDULER_POLL_SECONDS": "0.5",
            "DWF_SHUTDOWN_GRACE_SECONDS": "1",
        }
        port = free_port()
        log = tmp_path / f"serve-{len(started)}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [DWF, "serve", "--roles", "api,worker,scheduler", "--port", str(port)],
                cwd=ROOT, env=environ, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        started.append(proc)
        served = Served(proc, f"http://127.0.0.1:{port}", log)
        wait_for_health(served)
        return Runner(served, database_url)

    try:
        yield start
    finally:
        for proc in started:  # before the database fixture drops the database
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


async def _register(
    database_url: str, tmp_path: Path, definitions: tuple[dict[str, Any], ...]
) -> None:
    """Record each workflow as the API does, in the test's tenant."""
    settings = Settings(database_url=database_url, home=tmp_path / "home")
    async with Daemon(settings) as daemon:
        for definition in definitions:
            await daemon.versions.record(definition, tenant=TENANT, source_kind="api")


@pytest.fixture
def fake_http() -> Iterator[fakes.FakeHttp]:
    with fakes.http() as fake:
        yield fake


def http_get(node_id: str, url: str, *targets: str) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "actionType": "core.http", "parameters": {"url": url}}
    if targets:
        node["edges"] = [{"targetNode": t} for t in targets]
    return node


def echo(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "actionType": "core.echo", "parameters": {"message": node_id}}


def webhook(trigger_id: str, path: str) -> dict[str, Any]:
    return {"id": trigger_id, "type": "webhook", "path": path, "signature": "none"}


def identity(line: dict[str, Any]) -> dict[str, Any]:
    return {key: line.get(key) for key in IDENTITY}


def expected(row: dict[str, Any]) -> dict[str, Any]:
    """The identity every log line of the execution `row` must carry."""
    return {
        "executionId": str(row["execution_id"]),
        "workflowId": row["workflow_id"],
        "version": row["workflow_version"],
        "correlationId": row["correlation_id"],
        "tenant": row["tenant"],
        "principal": row["principal"],
    }


def http_lines(lines: list[dict[str, Any]], url: str) -> list[dict[str, Any]]:
    """httpx's `HTTP Request: GET <url> "HTTP/1.1 200 OK"` lines about `url`."""
    return [
        line
        for line in lines
        if str(line.get("event", "")).startswith("HTTP Request:") and url in line["event"]
    ]


# -- schedules and webhooks ---------------------------------------------------------------------


def test_a_scheduled_execution_is_its_triggers_in_the_database_and_in_every_line(
    runner: Callable[..., Runner],
) -> None:
    every_second = {"id": "every-second", "type": "schedule", "cron": "* * * * * *"}
    served = runner(workflow("ticker", echo("tick"), triggers=[every_second]))
    row = served.ended(workflow_id="ticker")
    assert row["status"] == "Succeeded"
    assert (row["trigger_type"], row["principal"]) == ("schedule", "schedule:every-second")
    assert row["tenant"] == TENANT
    lines = served.lines_of(row["execution_id"])
    assert {"execution started", "execution finished"} <= {line["event"] for line in lines}
    assert all(identity(line) == expected(row) for line in lines), lines


def test_every_line_of_a_webhooks_execution_names_it_httpx_included(
    runner: Callable[..., Runner], fake_http: fakes.FakeHttp
) -> None:
    url = f"{fake_http.url}/echo"
    served = runner(
        workflow("intake", http_get("call", url, "done"), echo("done"),
                 triggers=[webhook("from-crm", "crm/new")])
    )  # fmt: skip
    execution_id = served.deliver("crm/new", {"client": "Ada"})
    row = served.ended(execution_id=execution_id)
    assert row["status"] == "Succeeded", row["error"]
    assert (row["trigger_type"], row["principal"]) == ("webhook", "webhook:from-crm")
    lines = served.lines_of(execution_id)
    events = [line["event"] for line in lines]
    assert events[0] == "execution started" and events[-1] == "execution finished", events
    [request] = http_lines(lines, url)
    assert request["nodeId"] == "call" and request["logger"] == "httpx"
    assert all(identity(line) == expected(row) for line in lines), lines
    # No line of the whole process names the call without naming its execution, and no line
    # names an execution without its tenant and principal.
    everything = served.lines()
    assert http_lines(everything, url) == [request]
    assert all(
        line.get("tenant") == TENANT and line.get("principal") == "webhook:from-crm"
        for line in everything
        if "executionId" in line
    ), [line for line in everything if "executionId" in line]


def test_a_subworkflow_child_has_its_parents_principal_and_its_own_ids(
    runner: Callable[..., Runner], fake_http: fakes.FakeHttp
) -> None:
    url = f"{fake_http.url}/echo"
    child = workflow("welcome", http_get("greet", url))
    parent = workflow(
        "onboard",
        {"id": "kid", "nodeType": "subworkflow", "workflowId": "welcome",
         "waitForCompletion": True, "parameters": {"who": "{{ trigger.who }}"},
         "edges": [{"targetNode": "after"}]},
        echo("after"),
        triggers=[webhook("signup", "signup")],
    )  # fmt: skip
    served = runner(child, parent)
    parent_id = served.deliver("signup", {"who": "Grace"})
    parent_row = served.ended(execution_id=parent_id)
    assert parent_row["status"] == "Succeeded", parent_row["error"]
    [child_row] = served.executions(parent_execution_id=parent_id)
    assert child_row["principal"] == parent_row["principal"] == "webhook:signup"
    assert child_row["tenant"] == TENANT
    # The child ran in this same process: its lines carry its own ids, and once it ended the
    # parent's lines carry the parent's again.
    child_lines = served.lines_of(child_row["execution_id"])
    assert {"execution started", "execution finished"} <= {line["event"] for line in child_lines}
    [request] = http_lines(served.lines(), url)
    assert request["nodeId"] == "greet"
    assert identity(request) == expected(child_row)
    assert all(identity(line) == expected(child_row) for line in child_lines), child_lines
    # The worker's own line about its claim ("execution parked", with `worker`) names only
    # the execution id (runner/engine/worker.py); the run's lines carry everything.
    parent_lines = [line for line in served.lines_of(parent_id) if "worker" not in line]
    assert [line["event"] for line in parent_lines] == [
        "execution started", "execution parked", "execution resumed", "execution finished"
    ]  # fmt: skip
    assert all(identity(line) == expected(parent_row) for line in parent_lines), parent_lines


# -- dwf run ------------------------------------------------------------------------------------

CONNECTOR = '''
import structlog

from runner.actions.base import Action, ActionResult


class Audit(Action):
    """Logs a warning, as a connector does when something needs a look."""

    type = "acme.audit"
    version = "1"
    description = "Log a warning."
    parameters_schema = {"type": "object", "properties": {"note": {"type": "string"}}}
    outputs_schema = {"type": "object"}

    async def execute(self, context, params):
        structlog.get_logger("acme").warning("audit needs a look", note=params.get("note"))
        return ActionResult.ok({})
'''


@pytest.fixture
def connector(tmp_path: Path) -> Path:
    """A connector package (`acme.audit`) installed into a folder to put on PYTHONPATH."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_audit.py").write_text(CONNECTOR)
    info = site / "acme_audit-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-audit\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[dataworkflows.actions]\nacme.audit = acme_audit:Audit\n"
    )
    (info / "RECORD").write_text("")
    return site


def test_dwf_run_is_the_os_users_in_the_database_and_in_its_log_lines(
    database_url: str, tmp_path: Path, connector: Path
) -> None:
    flow = tmp_path / "audited.yaml"
    flow.write_text(
        textwrap.dedent(
            """\
            apiVersion: dataworkflows/v1
            kind: Workflow
            id: audited
            startNode: check
            nodes:
              - id: check
                actionType: acme.audit
                parameters: {note: quarterly}
            """
        )
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")}
    environ |= {
        "DWF_DATABASE_URL": database_url,
        "DWF_HOME": str(tmp_path / "home"),
        "DWF_LOG_FORMAT": "json",
        "PYTHONPATH": str(connector),
        # Who the OS says runs the command (getpass reads these before the password database).
        "LOGNAME": "grace",
        "USER": "grace",
    }

    def dwf(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [DWF, *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    ran = dwf("run", str(flow), "--output", "json")
    assert ran.returncode == 0, ran.stderr
    document = json.loads(ran.stdout)
    assert document["principal"] == "cli:grace"
    listed = json.loads(dwf("executions", "list", "--output", "json").stdout)
    assert [(i["executionId"], i["principal"]) for i in listed["items"]] == [
        (document["executionId"], "cli:grace")
    ]
    lines = [json.loads(line) for line in ran.stderr.splitlines() if line.startswith("{")]
    [warning] = [line for line in lines if line["event"] == "audit needs a look"]
    assert identity(warning) == {
        "executionId": document["executionId"],
        "workflowId": "audited",
        "version": document["workflowVersion"],
        "correlationId": document["correlationId"],
        "tenant": "default",
        "principal": "cli:grace",
    }
    assert warning["nodeId"] == "check" and warning["note"] == "quarterly"


def test_dwf_runs_principal_is_the_uid_when_the_system_knows_no_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)

    def unknown(uid: int) -> Any:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", unknown)  # a container's uid without a passwd entry
    assert cli_principal() == f"cli:{os.getuid()}"
    monkeypatch.setenv("USER", "ada")
    assert cli_principal() == "cli:ada"
