"""`dwf serve` as an operator runs it: a real process on a real port, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner.daemon import Daemon
from runner.settings import Settings
from tests.waiting import until_sync

ROOT = Path(__file__).resolve().parents[2]
DWF = shutil.which("dwf", path=str(Path(sys.executable).parent)) or "dwf"
TERMINAL = {"Succeeded", "Failed", "Cancelled"}
#: A clean stop takes well under this; the assertion is that it is not stuck.
STOP_SECONDS = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")}
    return environ | {
        "DWF_DATABASE_URL": database_url,
        "DWF_HOME": str(tmp_path / "home"),
        "DWF_LOG_FORMAT": "json",
        # Running nodes get this long to finish at SIGTERM before their executions are handed
        # back to the queue; the stop must stay prompt with a 30 s delay running.
        "DWF_SHUTDOWN_GRACE_SECONDS": "1",
    }


class Served:
    """A running `dwf serve`, its base URL and its log."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        """SIGTERM, then the exit code (the test fails if it takes over STOP_SECONDS)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"dwf serve did not stop within {STOP_SECONDS} s:\n{self.log_text()}")


@pytest.fixture
def served(env: dict[str, str], tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [DWF, "serve", "--roles", "api,worker", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=sink,
        )
    server = Served(proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_for_health(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_health(server: Served, timeout: float = 30.0) -> None:
    def healthy() -> bool:
        if server.proc.poll() is not None:
            pytest.fail(f"dwf serve exited {server.proc.returncode}:\n{server.log_text()}")
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{server.url}/health", timeout=1).status_code == 200
        return False

    try:
        until_sync(healthy, timeout, "dwf serve to answer /health")
    except AssertionError as exc:
        pytest.fail(f"{exc}:\n{server.log_text()}")


def wait_for_status(
    client: httpx.Client, execution_id: str, statuses: set[str], timeout: float = 20.0
) -> dict[str, Any]:
    seen: list[str] = []

    def reached() -> dict[str, Any] | None:
        document = client.get(f"/api/v1/executions/{execution_id}").json()
        seen.append(document["status"])
        return document if document["status"] in statuses else None

    try:
        return until_sync(reached, timeout, f"execution {execution_id} to be {sorted(statuses)}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: still {seen[-1]} after {timeout} s") from None


def register(database_url: str, tmp_path: Path, definition: dict[str, Any]) -> None:
    """Record a workflow version straight through the store (as `dwf run FILE` would)."""

    async def record() -> None:
        settings = Settings(database_url=database_url, home=tmp_path / "home")
        async with Daemon(settings) as daemon:
            await daemon.versions.record(definition, tenant=settings.tenant, source_kind="local")

    asyncio.run(record())


def assert_json_log_without_tracebacks(text: str) -> None:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "dwf serve logged nothing"
    for line in lines:
        assert "event" in json.loads(line)  # every line is structlog's JSON
    assert "Traceback" not in text


def test_serve_runs_an_execution_over_http_and_stops_cleanly_on_sigterm(served, env):
    registered = subprocess.run(
        [DWF, "run", "examples/workflows/hello.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr

    with httpx.Client(base_url=served.url, timeout=10) as client:
        assert client.get("/ready").json() == {"status": "ready"}
        # `dwf run FILE` made the new workflow a Draft: a local run activates nothing.
        response = client.post(
            "/api/v1/workflows/hello/execute?allowDraft=true",
            json={"trigger": {"name": "Ada"}, "requestId": "e2e-1"},
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        # The event stream, over a real connection, ends with the execution.
        with client.stream(
            "GET", f"/api/v1/executions/{accepted['executionId']}/events?follow=true"
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            kinds = [
                line.removeprefix("event: ")
                for line in stream.iter_lines()
                if line.startswith("event: ")
            ]
        assert kinds[0] == "ExecutionCreated" and kinds[-1] == "ExecutionSucceeded"
        document = wait_for_status(client, accepted["executionId"], TERMINAL)
        assert document["status"] == "Succeeded"
        assert document["outputs"]["greeting"] == "Hello, Ada!"
        again = client.post(
            "/api/v1/workflows/hello/execute?allowDraft=true",
            json={"trigger": {}, "requestId": "e2e-1"},
        )
        assert again.status_code == 200
        assert again.json()["executionId"] == accepted["executionId"]

    assert served.stop() == 0
    assert_json_log_without_tracebacks(served.log_text())


def test_sigterm_stops_promptly_with_an_execution_running_and_a_stream_open(
    served, database_url, tmp_path
):
    slow = {"id": "slow", "actionType": "core.delay", "parameters": {"duration": "30s"}}
    register(
        database_url,
        tmp_path,
        {"apiVersion": "dataworkflows/v1", "kind": "Workflow", "id": "slow",
         "status": "active", "startNode": "slow", "nodes": [slow]},
    )  # fmt: skip
    with httpx.Client(base_url=served.url, timeout=10) as client:
        execution_id = client.post("/api/v1/workflows/slow/execute").json()["executionId"]
        wait_for_status(client, execution_id, {"Running"})
        with client.stream(
            "GET", f"/api/v1/executions/{execution_id}/events?follow=true"
        ) as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("event: ")) == (
                "event: ExecutionCreated"
            )
            started = time.monotonic()
            assert served.stop() == 0
            assert time.monotonic() - started < STOP_SECONDS
            rest = list(lines)  # the server ended the stream rather than leaving it hanging
        assert "event: ExecutionSucceeded" not in rest
    assert_json_log_without_tracebacks(served.log_text())


def test_an_unknown_role_is_a_usage_error(env):
    proc = subprocess.run(
        [DWF, "serve", "--roles", "api,gardener"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "unknown role gardener" in proc.stderr
    assert "Traceback" not in proc.stderr
