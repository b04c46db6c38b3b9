"""What the browser tests (and bench/ui_screenshots.py) put on a served runner: workflows that
succeed or fail, runs of them, a sync run with an invalid file, a missed fire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from runner.store import sync, triggers
from tests.browser.conftest import Served


def flow(workflow_id: str, *, fail: bool = False, **top: Any) -> dict[str, Any]:
    """A one-node workflow that succeeds, or fails for good with `fail`."""
    parameters: dict[str, Any] = {"message": "hi"}
    if fail:
        parameters |= {"failTimes": 99, "failMode": "permanent"}
    node = {"id": "a", "actionType": "core.echo", "parameters": parameters}
    return {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": workflow_id,
        "status": "active",
        "startNode": "a",
        "nodes": [node],
        **top,
    }


NIGHTLY = {"id": "nightly", "type": "schedule", "cron": "0 3 * * *", "timezone": "UTC"}


async def ran(ui: Served, workflow_id: str, count: int = 1) -> list[str]:
    """Start `count` executions one after another, each waited for; their ids, oldest first."""
    ids = []
    for _ in range(count):
        execution_id = await ui.start(workflow_id)
        await ui.wait(execution_id)
        ids.append(execution_id)
    return ids


async def seed_sync_run(ui: Served) -> None:
    """A finished sync run with one invalid file, as a sync of a bad commit records it."""
    async with ui.daemon.db.connection() as conn:
        run = await sync.start_run(
            conn, tenant=ui.settings.tenant, repo="https://git.test/flows.git", branch="main",
            path="workflows", reason="interval", replica="r1",
        )  # fmt: skip
        await sync.finish_run(
            conn, run, status="applied", commit="0123456789abcdef0123456789abcdef01234567",
            summary={"files": 2, "added": 1, "invalid": 1},
            files=[
                {"path": "workflows/good.yaml", "workflowId": "good", "outcome": "added",
                 "version": 1, "status": "Active", "diagnostics": []},
                {"path": "workflows/bad.yaml", "workflowId": "bad", "outcome": "invalid",
                 "diagnostics": [{"line": 7, "column": 5, "severity": "error",
                                  "rule": "DWF101", "message": "startNode 'x' is not a node"}]},
            ],
            target_tenant=ui.settings.tenant,
        )  # fmt: skip


async def seed_missed_fire(ui: Served, workflow_id: str, reason: str) -> None:
    """A missed fire of the workflow's `nightly` schedule, as a scheduler that was down logs it."""
    async with ui.daemon.db.connection() as conn:
        (trigger,) = await triggers.for_workflow(conn, ui.settings.tenant, workflow_id)
        at = datetime(2025, 1, 30, 3, tzinfo=UTC)
        await triggers.record_missed(
            conn, trigger, at, reason, "r1", first_scheduled_at=at - timedelta(days=2), fires=3
        )
