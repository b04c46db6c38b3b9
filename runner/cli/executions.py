"""Commands that run and inspect executions: `dwf run`, `dwf executions list|show|cancel`."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runner.cli import exits

if TYPE_CHECKING:
    from runner.cli.interrupts import Interrupts
    from runner.settings import Settings


@click.command()
@click.argument("target")
@click.option("--trigger", "trigger_text", help="Trigger payload: a JSON object, or @FILE.")
@click.option("--request-id", help="Idempotency: a repeated id returns the existing execution.")
@click.option("--draft", is_flag=True, help="Allow running a Draft workflow by id.")
@click.option(
    "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="json: print only the finished execution as JSON.",
)  # fmt: skip
def run(
    target: str, trigger_text: str | None, request_id: str | None, draft: bool, output: str
) -> None:
    """Run a workflow FILE (recorded as a local version) or a workflow by ID, to its end.

    Exit 0 iff the execution Succeeded. Ctrl-C cancels it (exit 130 once it ended Cancelled);
    a second Ctrl-C leaves at once, the execution left Running for a worker to resume.
    """
    from runner.cli.interrupts import Interrupts

    interrupts = Interrupts()
    try:
        document = _run_command(
            interrupts, target, trigger_text, request_id, draft=draft, output=output
        )
    except KeyboardInterrupt:
        # Before the start is sent (loading, linting, opening the database), or after the
        # execution ended: in between Ctrl-C is the Interrupts' (runner/cli/interrupts.py).
        said = "interrupted" if interrupts.watched else "interrupted; no execution was started"
        click.echo(f"dwf run: {said}", err=True)
        sys.exit(exits.EXIT_INTERRUPTED)
    if output == "json":
        click.echo(json.dumps(document, indent=2, default=str))
    else:
        _print_summary(document)
    if document["status"] == "Succeeded":
        sys.exit(exits.EXIT_OK)
    cancelled_here = interrupts.cancelled and document["status"] == "Cancelled"
    sys.exit(exits.EXIT_INTERRUPTED if cancelled_here else exits.EXIT_FAILED)


def _run_command(
    interrupts: Interrupts,
    target: str,
    trigger_text: str | None,
    request_id: str | None,
    *,
    draft: bool,
    output: str,
) -> dict[str, Any]:
    """Flags to a finished execution's document (usage errors end the command)."""
    from runner.engine import requests
    from runner.errors import DwfError, UsageError

    settings = exits.settings()
    payload: dict[str, Any] = {}
    if trigger_text:
        text = trigger_text
        if trigger_text.startswith("@"):
            try:
                text = Path(trigger_text[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                problem = UsageError(f"cannot read {trigger_text[1:]}: {exc.strerror}")
                exits.fail("run", problem)
        try:
            payload = requests.parse_trigger(
                text, max_bytes=settings.max_trigger_bytes, max_depth=settings.max_trigger_depth
            )
        except DwfError as exc:
            exits.fail("run", exc)
    path = Path(target)
    definition = None
    if path.suffix in (".yaml", ".yml") or path.is_file():
        definition = _load_file(path)
    return exits.run(
        "run",
        lambda: _run(
            settings,
            interrupts,
            target=target,
            definition=definition,
            payload=payload,
            # Ours when not given, so a Ctrl-C can find the execution before `execute` returns.
            request_id=request_id or f"manual:{uuid.uuid4()}",
            draft=draft,
            output=output,
        ),
    )


def _load_file(path: Path) -> dict[str, Any]:
    """The file's document when it lints without errors; otherwise print why and exit 1."""
    from runner.cli.definitions import _SourceLines
    from runner.lint import linter, report
    from runner.spec import loader

    if not path.is_file():
        from runner.errors import UsageError

        exits.fail("run", UsageError(f"{path}: no such file"))
    result = linter.lint_paths([path], jobs=1, across_files=False)
    if result.errors:
        text = report.render(
            "text", result.diagnostics, _SourceLines().line, files_checked=1, tool_version=""
        )
        click.echo(text, err=True)
        sys.exit(exits.EXIT_FAILED)
    return loader.load(loader.decode(str(path), path.read_bytes()).text)


async def _run(
    settings: Settings,
    interrupts: Interrupts,
    *,
    target: str,
    definition: dict[str, Any] | None,
    payload: dict[str, Any],
    request_id: str | None,
    draft: bool,
    output: str,
) -> dict[str, Any]:
    from runner.cli import progress
    from runner.daemon import Daemon
    from runner.engine.requests import StartRequest
    from runner.engine.summary import execution_document
    from runner.plan import compiler
    from runner.store import executions

    view: Any = None
    if output == "text":
        if sys.stderr.isatty() and definition is not None:
            nodes = [n.id for n in compiler.get_plan(definition).workflow.nodes]
            view = progress.LiveProgress(nodes)
        else:
            view = progress.PlainProgress()
    async with Daemon(settings, observer=view) as daemon:
        workflow_id, local, number = target, False, None
        if definition is not None:
            # Run by its number: the file never becomes what triggers and the API run.
            version, _ = await daemon.versions.record_local(
                definition, tenant=settings.tenant, source_path=str(Path(target).resolve())
            )
            workflow_id, local, number = version.workflow_id, True, version.version
        request = StartRequest(
            workflow_id=workflow_id,
            trigger=payload,
            trigger_type="manual",
            request_id=request_id,
            principal=cli_principal(),
            tenant=settings.tenant,
            allow_draft=draft,
            any_status=local,
            version=number,
        )
        async with interrupts.watching(daemon, request, view):
            try:
                row = await daemon.execute(request)
            finally:
                if view is not None:
                    view.close()
            async with daemon.db.connection() as conn:
                attempts = await executions.attempts(conn, row.execution_id)
        return execution_document(row, attempts)


def cli_principal() -> str:
    """Who starts an execution with `dwf run` (`execution.principal`): `cli:<os user>`, or
    `cli:<uid>` when the system knows no name for this process's user."""
    import getpass
    import os

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no LOGNAME/USER and no passwd entry: a container's bare uid
        return f"cli:{os.getuid()}"


def _print_summary(document: dict[str, Any]) -> None:
    click.echo(f"execution {document['executionId']}: {document['status']}")
    if document.get("error"):
        click.echo(f"  error: {document['error'].get('message')}")
    if document.get("outputs"):
        click.echo(f"  outputs: {json.dumps(document['outputs'], default=str)}")


@click.group()
def executions() -> None:
    """List, show and cancel executions."""


@executions.command("list")
@click.option("--workflow", "workflow_id", help="Only this workflow's executions.")
@click.option(
    "--status", type=click.Choice(["Pending", "Running", "Succeeded", "Failed", "Cancelled"])
)
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--cursor", help="The next page's cursor, from a previous listing.")
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_executions(
    workflow_id: str | None, status: str | None, limit: int, cursor: str | None, output: str
) -> None:
    """Executions, newest first."""
    settings = exits.settings()

    async def fetch() -> tuple[list[Any], str | None]:
        from runner.daemon import Daemon
        from runner.errors import InvalidRequest
        from runner.store import executions as store

        async with Daemon(settings) as daemon, daemon.db.connection() as conn:
            try:
                return await store.list_page(
                    conn, settings.tenant, workflow_id=workflow_id, status=status,
                    limit=limit, cursor=cursor,
                )  # fmt: skip
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from exc

    rows, next_cursor = exits.run("executions list", fetch)
    if output == "json":
        from runner.engine.summary import listing_item

        items = [listing_item(r) for r in rows]
        click.echo(json.dumps({"items": items, "nextCursor": next_cursor}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("execution", "workflow", "version", "status", "created", "took"):
        table.add_column(column)
    for r in rows:
        took = ""
        if r.finished_at and r.started_at:
            took = f"{(r.finished_at - r.started_at).total_seconds():.2f}s"
        table.add_row(
            str(r.execution_id), r.workflow_id, str(r.workflow_version), r.status,
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"), took,
        )  # fmt: skip
    Console().print(table)
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}")


@executions.command("show")
@click.argument("execution_id", type=click.UUID)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def show_execution(execution_id: uuid.UUID, output: str) -> None:
    """One execution with its nodes and attempts, and the resource links each attempt stored."""
    settings = exits.settings()

    async def fetch() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from runner.daemon import Daemon
        from runner.engine.summary import attempt_documents, execution_document
        from runner.errors import NotFound
        from runner.store import executions as store
        from runner.store import workflows

        async with Daemon(settings) as daemon, daemon.db.connection() as conn:
            row = await store.get(conn, settings.tenant, execution_id)
            if row is None:
                raise NotFound(f"execution {execution_id} does not exist")
            attempts = await store.attempts(conn, execution_id)
            links = await store.links(conn, execution_id)
            version = await workflows.get_definition(
                conn, row.tenant, row.workflow_id, row.workflow_version
            )
        document = execution_document(row, attempts) | {"source": version.source}
        return document, attempt_documents(attempts, links)

    document, attempts = exits.run("executions show", fetch)
    if output == "json":
        click.echo(json.dumps(document | {"attempts": attempts}, indent=2, default=str))
        return
    click.echo(f"execution {document['executionId']}  {document['status']}")
    click.echo(f"  workflow {document['workflowId']} v{document['workflowVersion']}")
    click.echo(f"  source   {document['source']}")
    click.echo(f"  request  {document['requestId']}   correlation {document['correlationId']}")
    if document.get("error"):
        click.echo(f"  error    {document['error'].get('message')}")
    for attempt in attempts:
        error = (attempt["error"] or {}).get("message", "")
        click.echo(
            f"  {attempt['nodeId']:<24} #{attempt['attempt']} {attempt['status']:<16} {error}"
        )
        for link in attempt["resourceLinks"]:
            where = f"  {link['url']}" if link["url"] else ""
            click.echo(
                f"    link {link['system']} {link['resourceType']} {link['externalId']}{where}"
            )


@executions.command("cancel")
@click.argument("execution_id", type=click.UUID)
def cancel_execution(execution_id: uuid.UUID) -> None:
    """Ask an execution to end Cancelled."""
    settings = exits.settings()

    async def cancel() -> Any:
        from runner.daemon import Daemon

        async with Daemon(settings) as daemon:
            return await daemon.conductor.cancel(settings.tenant, execution_id)

    row = exits.run("executions cancel", cancel)
    click.echo(f"execution {row.execution_id}: cancel requested")


COMMANDS = (run, executions)
