"""`dwf serve`: run the HTTP API until SIGTERM or SIGINT."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from runner.cli import exits, params

if TYPE_CHECKING:
    from runner.settings import Settings

#: The roles a process can play (as `runner.daemon.ROLES`, kept here so `--help` imports nothing).
ROLES = ("api", "worker", "sync", "scheduler")
DEFAULT_HOST = "127.0.0.1"


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
    "--insecure-bind", is_flag=True, default=None,
    help="Loose auth mode on an address other than loopback: accept unauthenticated callers "
    "from the network anyway (logged at every start; DWF_AUTH_INSECURE_BIND).",
)  # fmt: skip
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
    "--interval", type=params.Duration(minimum=1), default=None,
    help="sync: time between syncs, 1s to 365d, e.g. 30s, 5m or plain seconds "
    "(default: DWF_SYNC_INTERVAL_SECONDS, else 30).",
)  # fmt: skip
def serve(  # noqa: PLR0917 (click passes every option)
    host: str, insecure_bind: bool | None, port: int | None, roles: tuple[str, ...],
    repo: str | None, branch: str | None, folder: str | None, interval: float | None,
) -> None:  # fmt: skip
    """Serve the HTTP API (OpenAPI at /docs) until SIGTERM or SIGINT; with the sync role, sync
    the repository at start, every interval and on a push webhook (POST /api/v1/sync).

    Exit 0 after a clean stop, 1 when it cannot start, 2 when the database cannot be reached.
    """
    settings = exits.settings(
        "info", port=port, sync_repo=repo, sync_branch=branch, sync_path=folder,
        sync_interval=interval, auth_insecure_bind=insecure_bind or None,
    )  # fmt: skip
    if "sync" in roles and not settings.sync_repo:
        raise click.UsageError("the sync role needs a repository: --repo URL|PATH or DWF_SYNC_REPO")
    started = exits.run("serve", lambda: _serve(settings, roles, host))
    sys.exit(exits.EXIT_OK if started else exits.EXIT_FAILED)


@click.command()
def worker() -> None:
    """Claim and run queued executions until SIGTERM or SIGINT (then drain and hand back).

    Exit 0 after a clean stop, 2 when the database cannot be reached.
    """
    settings = exits.settings("info")
    exits.run("worker", lambda: _serve(settings, ("worker",), DEFAULT_HOST))
    sys.exit(exits.EXIT_OK)


async def _serve(settings: Settings, roles: tuple[str, ...], host: str) -> bool:
    from runner.daemon import Daemon

    if "api" in roles:
        from runner.api import access, server

        # Refused before the database is opened: the answer is the same whatever its state.
        server.check_bind(settings, host, warn=False)
        access.Guard(settings)  # strict mode without a key

    async with Daemon(settings) as daemon:
        return await daemon.serve(roles, host)


COMMANDS = (serve, worker)
