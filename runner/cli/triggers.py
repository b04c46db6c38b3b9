"""`dwf triggers list|history`: a workflow's triggers, and their fire log."""

from __future__ import annotations

import json
from typing import Any

import click

from runner.cli import exits


@click.group()
def triggers() -> None:
    """A workflow's triggers and their fire log."""


@triggers.command("list")
@click.argument("workflow_id")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_triggers(workflow_id: str, output: str) -> None:
    """The workflow's triggers: status, next fire times (schedules), URL (webhooks), last fire."""
    settings = exits.settings()

    async def fetch() -> dict[str, Any]:
        from runner.daemon import Daemon
        from runner.triggers import documents

        async with Daemon(settings) as daemon, daemon.db.connection() as conn:
            return await documents.describe(conn, settings.tenant, workflow_id)

    listing = exits.run("triggers list", fetch)
    if output == "json":
        click.echo(json.dumps(listing, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{workflow_id} (version {listing['version']}, {listing['status']})")
    for column in ("trigger", "type", "state", "next fires / url", "last fired", "last outcome"):
        table.add_column(column)
    for item in listing["items"]:
        state = "disabled" if not item["enabled"] else (item["status"] or "not registered")
        if item["statusMessage"]:
            state += f": {item['statusMessage']}"
        where = "\n".join(item.get("nextFireTimes") or []) or item.get("url", "")
        last = item["lastFires"][0] if item["lastFires"] else None
        table.add_row(
            str(item["id"]), str(item["type"]), state, where, item["lastFiredAt"] or "",
            "" if last is None else last["outcome"],
        )  # fmt: skip
    Console().print(table)


@triggers.command("history")
@click.argument("workflow_id")
@click.option("--trigger", "trigger_id", help="Only this trigger's fires.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--before", type=click.IntRange(min=1), help="Only fires older than this fire id.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def history(
    workflow_id: str, trigger_id: str | None, limit: int, before: int | None, output: str
) -> None:
    """The fire log, newest first: every fire, skip (overlap, activation condition), miss (late,
    not caught up) and failure, with its reason."""
    settings = exits.settings()

    async def fetch() -> list[dict[str, Any]]:
        from runner.daemon import Daemon
        from runner.errors import NotFound
        from runner.store import triggers as store
        from runner.store import workflows
        from runner.triggers import documents

        async with Daemon(settings) as daemon, daemon.db.connection() as conn:
            if await workflows.get(conn, settings.tenant, workflow_id) is None:
                raise NotFound(f"workflow {workflow_id!r} does not exist")
            rows = await store.history(
                conn, settings.tenant, workflow_id, trigger_id=trigger_id, limit=limit,
                before=before,
            )  # fmt: skip
            return [documents.fire_document(r) for r in rows]

    fires = exits.run("triggers history", fetch)
    if output == "json":
        click.echo(json.dumps({"items": fires}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("fire", "trigger", "scheduled", "outcome", "execution", "lag", "reason"):
        table.add_column(column)
    for fire in fires:
        scheduled = fire["scheduledAt"] or fire["decidedAt"]
        if fire["fires"] > 1:
            scheduled = f"{fire['firstScheduledAt']} …\n{scheduled} ({fire['fires']})"
        lag = "" if fire["lagMs"] is None else f"{fire['lagMs']:.0f} ms"
        table.add_row(
            str(fire["fireId"]), fire["triggerId"], scheduled, fire["outcome"],
            fire["executionId"] or "", lag, fire["reason"] or "",
        )  # fmt: skip
    Console().print(table)
    if len(fires) == limit:
        click.echo(f"more: --before {fires[-1]['fireId']}")


COMMANDS = (triggers,)
