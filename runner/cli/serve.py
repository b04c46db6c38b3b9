"""`dwf serve`: run the HTTP API until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import sys

import click

ROLES = ("api", "worker", "sync", "scheduler")
DEFAULT_HOST = "127.0.0.1"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _roles(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    roles = tuple(dict.fromkeys(r.strip() for r in value.split(",") if r.strip()))
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        named = ", ".join(unknown) or "(none given)"
        raise click.BadParameter(f"unknown role {named}; this runner serves: {', '.join(ROLES)}")
    return roles


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None,
    help="Port to listen on (default: DWF_PORT, else 8080).",
)  # fmt: skip
@click.option(
    "--roles", default="api", show_default=True, callback=_roles,
    help="Comma-separated roles this process plays: api, worker, sync, scheduler.",
)  # fmt: skip
@click.option("--repo", help="sync: the repository, a URL or a path (default: DWF_SYNC_REPO).")
@click.option("--branch", help="sync: the branch (default: DWF_SYNC_BRANCH, else main).")
@click.option("--path", "folder", help="sync: the repository's folder of workflows "
              "(default: DWF_SYNC_PATH, else the root).")  # fmt: skip
@click.option(
    "--interval", type=click.FloatRange(min=1), default=None,
    help="sync: seconds between syncs (default: DWF_SYNC_INTERVAL_SECONDS, else 30).",
)  # fmt: skip
def serve(  # noqa: PLR0917 (click passes every option)
    host: str, port: int | None, roles: tuple[str, ...], repo: str | None, branch: str | None,
    folder: str | None, interval: float | None,
) -> None:  # fmt: skip
    """Serve the HTTP API (OpenAPI at /docs) until SIGTERM or SIGINT; with the sync role, sync
    the repository at start, every interval and on a push webhook (POST /api/v1/sync).

    Exit 0 after a clean stop, 1 when it cannot start, 2 when the database cannot be reached.
    """
    from runner import logs
    from runner.api import server
    from runner.errors import DwfError, StoreError, UsageError
    from runner.settings import Settings

    try:
        settings = Settings.from_env(
            port=port, sync_repo=repo, sync_branch=branch, sync_path=folder, sync_interval=interval
        )
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    if "sync" in roles and not settings.sync_repo:
        raise click.UsageError("the sync role needs a repository: --repo URL|PATH or DWF_SYNC_REPO")
    logs.configure(settings.log_format, "info")
    try:
        if "api" in roles:
            started = asyncio.run(
                server.serve(
                    settings,
                    host,
                    worker="worker" in roles,
                    sync="sync" in roles,
                    scheduler="scheduler" in roles,
                )
            )
        else:
            started = asyncio.run(_work(settings, roles))
    except StoreError as exc:
        click.echo(f"dwf serve: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except DwfError as exc:
        click.echo(f"dwf serve: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(EXIT_OK if started else EXIT_FAILED)


@click.command()
def worker() -> None:
    """Claim and run queued executions until SIGTERM or SIGINT (then drain and hand back).

    Exit 0 after a clean stop, 2 when the database cannot be reached.
    """
    from runner import logs
    from runner.errors import StoreError
    from runner.settings import Settings

    settings = Settings.from_env()
    logs.configure(settings.log_format, "info")
    try:
        asyncio.run(_work(settings))
    except StoreError as exc:
        click.echo(f"dwf worker: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_OK)


async def _work(settings: object, roles: tuple[str, ...] = ("worker",)) -> bool:
    """The roles but the API (worker, sync, scheduler) in this process until SIGTERM or SIGINT."""
    import signal

    from runner.engine.conductor import Conductor
    from runner.engine.worker import Worker
    from runner.store import catalog
    from runner.store.database import Database

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Database.open(settings) as db:  # type: ignore[arg-type]
        await catalog.publish_registry(db)  # SPEC §10: the catalog is written at start
        jobs = []
        if "sync" in roles:
            from runner.sync.apply import syncer_for

            jobs.append(syncer_for(db, settings).run(stop))  # type: ignore[arg-type]
        if "worker" in roles:
            jobs.append(Worker(Conductor(db, settings), settings).run(stop))  # type: ignore[arg-type]
        if "scheduler" in roles:
            from runner.triggers.scheduler import Scheduler

            scheduler = Scheduler(db, Conductor(db, settings), settings)  # type: ignore[arg-type]
            jobs.append(scheduler.run(stop))
        await asyncio.gather(*jobs)
    return True


COMMANDS = (serve, worker)
