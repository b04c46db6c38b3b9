"""GitOps commands: `dwf sync` (apply a branch once), `dwf plan` (what a checkout would change)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runner.cli import exits

if TYPE_CHECKING:
    from runner.settings import Settings
    from runner.store.sync import SyncRunRow

#: `dwf plan --detailed-exitcode`: no change, changes, errors (as terraform plan).
PLAN_NO_CHANGE, PLAN_ERRORS, PLAN_CHANGES = 0, 1, 2


@click.command()
@click.option("--repo", help="Repository: a URL (https, ssh, file) or a local path "
              "(default: DWF_SYNC_REPO).")  # fmt: skip
@click.option("--branch", help="Branch to sync (default: DWF_SYNC_BRANCH, else main).")
@click.option("--path", "folder", help="Folder of the repository holding the workflows "
              "(default: DWF_SYNC_PATH, else the root).")  # fmt: skip
@click.option(
    "--allow-mass-delete", is_flag=True, default=None,
    help="Apply even when the commit archives all git workflows or more than the allowed share.",
)  # fmt: skip
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def sync(
    repo: str | None, branch: str | None, folder: str | None, allow_mass_delete: bool | None,
    output: str,
) -> None:  # fmt: skip
    """Sync a git branch into the database once: new and changed files make new versions,
    deleted files archive their workflows, invalid files keep their last good version.

    Exit 0 when applied or unchanged with every file valid; 1 when a file is invalid or the
    sync failed or was refused (the mass-delete guard); 2 on a usage error or when the database
    cannot be reached.
    """
    settings = exits.settings(sync_repo=repo, sync_branch=branch, sync_path=folder)
    if not settings.sync_repo:
        raise click.UsageError("no repository: pass --repo URL|PATH or set DWF_SYNC_REPO")
    # A bad --branch or --path fails before anything ran: SourceError, exit 2.
    run = exits.run("sync", lambda: _sync(settings, allow_mass_delete))
    if output == "json":
        from runner.sync.apply import run_document

        click.echo(json.dumps(run_document(run), indent=2, default=str))
    else:
        _print_run(run)
    failed = run.status in ("failed", "refused") or run.summary.get("invalid", 0) > 0
    sys.exit(exits.EXIT_FAILED if failed else exits.EXIT_OK)


async def _sync(settings: Settings, allow_mass_delete: bool | None) -> SyncRunRow:
    from runner.daemon import Daemon

    async with Daemon(settings) as daemon:
        run = await daemon.syncer().sync("cli", wait=True, allow_mass_delete=allow_mass_delete)
    assert run is not None  # with wait=True it waits for the lock, then syncs
    return run


def _print_run(run: Any) -> None:
    commit = (run.commit or "")[:12] or "(no commit)"
    counts = ", ".join(f"{v} {k}" for k, v in run.summary.items() if k != "files")
    files = f"{run.summary.get('files', 0)} files" + (f": {counts}" if counts else "")
    if run.target_tenant not in (None, run.tenant):  # dwf.yaml named the tenant
        files = f"tenant {run.target_tenant}; {files}"
    click.echo(f"sync {run.status}: {run.repo} {run.branch} at {commit} ({files})")
    if run.error:
        click.echo(f"  {run.error}")
    for entry in run.files:
        version = f" v{entry['version']}" if "version" in entry else ""
        click.echo(f"  {entry['outcome']:<9} {entry['path']} ({entry['workflowId']}{version})")
        for d in entry["diagnostics"]:
            click.echo(
                f"    {entry['path']}:{d['line']}:{d['column']}: {d['severity']}: "
                f"{d['message']} [{d['rule']}]"
            )


@click.command()
@click.option(
    "--repo", "root", type=click.Path(path_type=Path), default=Path("."), show_default=True,
    help="The checkout to compare (its files as they are on disk).",
)  # fmt: skip
@click.option("--path", "folder", help="Folder of the checkout holding the workflows "
              "(default: DWF_SYNC_PATH, else the root).")  # fmt: skip
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
    show_default=True, help="markdown is meant for a pull-request comment.",
)  # fmt: skip
@click.option(
    "--detailed-exitcode", is_flag=True,
    help="Exit 0 with no change, 2 with changes, 1 on errors (invalid files, refused).",
)  # fmt: skip
@click.option("--allow-mass-delete", is_flag=True, default=None,
              help="Plan as `dwf sync --allow-mass-delete` would apply.")  # fmt: skip
@click.option(
    "--now", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]), default=None,
    help="Count schedules' next fire times from this UTC time (default: now), for "
    "reproducible output.",
)  # fmt: skip
def plan(  # noqa: PLR0917 (click passes every option)
    root: Path, folder: str | None, fmt: str, detailed_exitcode: bool,
    allow_mass_delete: bool | None, now: datetime | None,
) -> None:  # fmt: skip
    """Show what syncing a checkout would change in the database: workflows added, new
    versions with a node-level diff, status changes, archived workflows, trigger changes
    (with the next fire times of changed schedules) and lint errors.

    Exit 0 when it succeeds (with --detailed-exitcode: 0 no change, 2 changes), 1 on invalid
    files or a refusal, 2 on a usage error (1 with --detailed-exitcode).
    """
    import asyncio

    from runner.errors import DwfError

    settings = exits.settings(sync_path=folder)
    moment = datetime.now(UTC) if now is None else now if now.tzinfo else now.replace(tzinfo=UTC)
    try:
        document = asyncio.run(_plan(settings, root, moment, allow_mass_delete))
    except DwfError as exc:
        if not detailed_exitcode:
            exits.fail("plan", exc)
        # --detailed-exitcode keeps 2 for "changes": any error is 1 there.
        click.echo(f"dwf plan: {exc}", err=True)
        sys.exit(PLAN_ERRORS)
    from runner.sync import plan as plans

    render = {"text": plans.render_text, "markdown": plans.render_markdown}.get(
        fmt, plans.render_json
    )
    click.echo(render(document))
    if document["errors"]:
        sys.exit(PLAN_ERRORS)
    if detailed_exitcode and document["changes"]:
        sys.exit(PLAN_CHANGES)
    sys.exit(PLAN_NO_CHANGE)


async def _plan(
    settings: Settings, root: Path, now: datetime, allow_mass_delete: bool | None
) -> dict[str, Any]:
    from runner.daemon import Daemon
    from runner.sync import apply, source
    from runner.sync import plan as plans

    snapshot, raw = source.folder_files(root, settings.sync_path)
    allow = settings.sync_allow_mass_delete if allow_mass_delete is None else allow_mass_delete
    async with Daemon(settings) as daemon:
        changes, previous = await apply.preview(
            daemon.db, settings, snapshot, raw, allow_mass_delete=allow
        )
    return plans.build(changes, previous, now=now)


COMMANDS = (sync, plan)
