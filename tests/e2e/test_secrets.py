"""The canary: workflows use a secret everywhere it can go; then a full database dump, the
server's log and every API response are searched for it (and its encoded forms): 0 times."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from tests import fakes
from tests.e2e.test_serve import (
    DWF,
    ROOT,
    Served,
    env,  # noqa: F401 (a fixture)
    free_port,
    register,
    wait_for_health,
    wait_for_status,
)

pytestmark = pytest.mark.slow

CANARY = "canary-" + uuid.uuid4().hex


def pg_dump() -> str:
    """pgserver's pg_dump (16): it dumps the embedded server and the machine's older ones."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")  # found, not imported (it warns on import)
    if spec is None or spec.origin is None:
        return "pg_dump"
    bundled = Path(spec.origin).parent / "pginstall" / "bin" / "pg_dump"
    return str(bundled) if bundled.exists() else "pg_dump"


def forms(value: str) -> list[str]:
    raw = value.encode()
    return [
        value,
        quote(value, safe=""),
        quote_plus(value),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(b"Bearer " + raw).decode().rstrip("=")[10:-2],  # inside a longer text
    ]


def uses_the_secret(web: str) -> dict[str, Any]:
    """Every place a secret can be placed (parameters: headers, query, body), outputs that echo
    it back (plain and base64), a failed node's error, Slack's token, workflow outputs quoting a
    node that echoed it. Transforms, and secrets in vars, outputs and keys, are refused
    (tests/e2e/test_secret_canary.py)."""
    return {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": "canary",
        "status": "active",
        "startNode": "call",
        "outputs": {"leak": "{{ nodes.call.outputs.json.query.key }}"},
        "nodes": [
            {
                "id": "call",
                "actionType": "core.http",
                "parameters": {
                    "method": "POST",
                    "url": f"{web}/echo",
                    "headers": {"Authorization": "Bearer {{ secrets.canary }}"},
                    "query": {"key": "{{ secrets.canary }}"},
                    "json": {"token": "{{ secrets['canary'] }}"},
                },
                "edges": [{"targetNode": "echo"}],
            },
            {
                "id": "echo",
                "actionType": "core.echo",
                "parameters": {
                    "message": "{{ secrets.canary }} {{ nodes.call.outputs.json.authBase64 }}"
                },
                "edges": [{"targetNode": "post"}],
            },
            {
                "id": "post",
                "actionType": "slack.post-message",
                "idempotencyKey": "post-{{ execution.requestId }}",
                "parameters": {"channel": "#ops", "text": "token {{ secrets.canary }}"},
                "edges": [{"targetNode": "reject"}],
            },
            {
                "id": "reject",
                "actionType": "core.http",
                "parameters": {
                    "url": f"{web}/status/401",
                    "headers": {"Authorization": "{{ secrets.canary }}"},
                },
                "edges": [{"targetNode": "after", "when": "failure"}],
            },
            {"id": "after", "actionType": "core.echo", "parameters": {"message": "handled"}},
        ],
    }


def fails_with_the_secret(web: str) -> dict[str, Any]:
    """An unhandled failure whose error quotes the secret (the execution's error)."""
    return {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": "canary-fails",
        "status": "active",
        "startNode": "reject",
        "nodes": [
            {
                "id": "reject",
                "actionType": "core.http",
                "parameters": {
                    "url": f"{web}/status/403",
                    "headers": {"Authorization": "{{ secrets.canary }}"},
                },
            }
        ],
    }


def test_the_secret_appears_nowhere(env, tmp_path: Path, database_url: str):  # noqa: F811
    port = free_port()
    log = tmp_path / "serve.log"
    with fakes.http() as web, fakes.slack(CANARY) as slack:
        for definition in (uses_the_secret(web.url), fails_with_the_secret(web.url)):
            register(database_url, tmp_path, definition)
        served_env = env | {
            "DWF_SECRET_CANARY": CANARY,
            "DWF_SECRET_SLACK_TOKEN": CANARY,
            "DWF_SLACK_API_URL": slack.url,
            "DWF_HTTP_ALLOW_PRIVATE": "true",
        }
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [DWF, "serve", "--roles", "api,worker", "--port", str(port)],
                cwd=ROOT, env=served_env, stdout=sink, stderr=sink,
            )  # fmt: skip
        server = Served(proc, f"http://127.0.0.1:{port}", log)
        responses: list[str] = []
        try:
            wait_for_health(server)
            with httpx.Client(base_url=server.url, timeout=10) as client:
                ids = []
                for workflow_id in ("canary", "canary-fails"):
                    started = client.post(
                        f"/api/v1/workflows/{workflow_id}/execute", json={"trigger": {}}
                    )
                    assert started.status_code == 202, started.text
                    responses.append(started.text)
                    ids.append(started.json()["executionId"])
                finished = [wait_for_status(client, i, {"Succeeded", "Failed"}) for i in ids]
                assert [f["status"] for f in finished] == ["Succeeded", "Failed"], json.dumps(
                    finished, indent=1
                )
                for execution_id in ids:
                    for path in (
                        f"/api/v1/executions/{execution_id}",
                        f"/api/v1/executions/{execution_id}/events",
                    ):
                        answer = client.get(path)
                        assert answer.status_code == 200
                        responses.append(answer.text)
                responses.append(client.get("/api/v1/executions?limit=50").text)
                # The client itself sends the secret: the error quoting it is masked too.
                for path in (f"/api/v1/executions/{CANARY}", f"/api/v1/workflows/{CANARY}"):
                    responses.append(client.get(path).text)
        finally:
            server.stop()
        # What went out to the services carried the secret: the workflows really used it.
        assert slack.requests[0].headers["authorization"] == f"Bearer {CANARY}"
        assert web.requests[0].query == {"key": CANARY}

    document = finished[0]
    assert document["outputs"] == {"leak": "***"}
    echoed = document["nodes"]["echo"]["outputs"]["echo"]
    assert echoed.startswith("*** ") and CANARY[:8] not in echoed
    assert "***" in finished[1]["error"]["message"]

    dump = subprocess.run(
        [pg_dump(), "--data-only", database_url],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert "action_executions" in dump and "***" in dump
    searched = {"database dump": dump, "server log": log.read_text(), "API": "\n".join(responses)}
    for where, text in searched.items():
        for form in forms(CANARY):
            assert text.count(form) == 0, f"{form!r} found in the {where}"
    assert "***" in searched["server log"]  # the log did quote it, masked (the access log)
    assert json.loads(log.read_text().splitlines()[-1])  # still structlog JSON lines
