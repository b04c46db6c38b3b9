"""examples/connectors/monday-to-slack.yaml end to end: `dwf run` reads a monday.com board and
posts a Slack summary, both services local servers that speak their APIs."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from tests import fakes
from tests.e2e.test_serve import DWF, ROOT

pytestmark = pytest.mark.slow

EXAMPLE = "examples/connectors/monday-to-slack.yaml"


def test_monday_to_slack_runs_end_to_end(tmp_path, database_url):
    slack_token, monday_token = f"xoxb-{uuid.uuid4().hex}", uuid.uuid4().hex
    with fakes.slack(slack_token) as slack, fakes.monday(monday_token) as monday:
        monday.add_items(3, status="0")
        monday.add_items(2, status="1", start=4)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")} | {
            "DWF_DATABASE_URL": database_url,
            "DWF_HOME": str(tmp_path / "home"),
            "DWF_SLACK_API_URL": slack.url,
            "DWF_MONDAY_API_URL": monday.url,
            "DWF_SECRETS_DIR": str(tmp_path / "secrets"),
            "DWF_SECRET_SLACK_TOKEN": slack_token,
        }
        (tmp_path / "secrets").mkdir()
        (tmp_path / "secrets" / "monday-token").write_text(monday_token + "\n")  # a volume file

        def run(request_id: str) -> dict:
            ran = subprocess.run(
                [DWF, "run", EXAMPLE, "--trigger", '{"boardId": 1234567890}',
                 "--request-id", request_id, "--output", "json"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert ran.returncode == 0, ran.stderr
            return json.loads(ran.stdout)

        document = run("digest-1")
        again = run("digest-1")  # the same request: the same execution, nothing posted again

    assert document["status"] == "Succeeded"
    nodes = document["nodes"]
    assert nodes["fetch-items"]["outputs"]["count"] == 3
    assert nodes["post-summary"]["status"] == "Succeeded"
    assert nodes["notify-failure"]["status"] == "Skipped"
    assert [p["text"] for p in slack.posted] == ["3 items are being worked on"]
    assert slack.posted[0]["channel"] == "C0OPS"
    assert again["executionId"] == document["executionId"]
    correlation = {r.headers["x-correlation-id"] for r in slack.requests + monday.requests}
    assert correlation == {document["correlationId"]}
