"""`dwf db`: apply migrations and show their state."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from runner.settings import Settings
    from runner.store.migrations import MigrationStatus

from runner.cli import exits


@click.group()
def db() -> None:
    """The database: migrations and their state (DWF_DATABASE_URL, else the embedded server)."""


@db.command()
def migrate() -> None:
    """Apply pending migrations; print what was applied, or "up to date".

    Exit 0 when done, 1 when a migration is refused (edited, missing or failing), 2 when the
    database cannot be reached.
    """
    applied = exits.run("db migrate", lambda: _migrate(exits.settings()))
    for name in applied:
        click.echo(f"applied {name}")
    if not applied:
        click.echo("up to date")


@db.command()
def status() -> None:
    """Show each migration: applied (when) or pending, and any edited since applied.

    Exit 0 when all are applied unchanged, 1 when any is pending, edited or missing from this
    runner, 2 when the database cannot be reached.
    """
    rows = exits.run("db status", lambda: _status(exits.settings()))
    click.echo(_table(rows))
    problems = []
    for row in rows:
        if row.missing:
            problems.append(
                f"warning: {row.name} is applied but this runner does not have it; "
                "run a newer runner"
            )
        elif not row.checksum_ok:
            problems.append(
                f"warning: runner/store/migrations/{row.name}.sql was edited after it was "
                "applied; restore it and add a new migration instead"
            )
    pending = sum(row.applied_at is None for row in rows)
    if pending:
        problems.append(f"{pending} pending: run `dwf db migrate`")
    for line in problems:
        click.echo(line, err=True)
    sys.exit(exits.EXIT_FAILED if problems else exits.EXIT_OK)


async def _migrate(settings: Settings) -> list[str]:
    from runner.daemon import Daemon
    from runner.store import migrations

    async with Daemon(settings, migrate=False) as daemon, daemon.db.connection() as conn:
        return await migrations.apply(conn)


async def _status(settings: Settings) -> list[MigrationStatus]:
    from runner.daemon import Daemon
    from runner.store import migrations

    async with Daemon(settings, migrate=False) as daemon, daemon.db.connection() as conn:
        return await migrations.status(conn)


def _table(rows: list[MigrationStatus]) -> str:
    lines = [("version", "name", "applied at")]
    for row in rows:
        when = "pending" if row.applied_at is None else f"{row.applied_at:%Y-%m-%d %H:%M:%S%z}"
        if row.missing:
            when += "  (not in this runner)"
        elif not row.checksum_ok:
            when += "  (EDITED since applied)"
        lines.append((f"{row.version:04d}", row.name, when))
    widths = [max(len(line[i]) for line in lines) for i in range(2)]
    return "\n".join(
        f"{version:<{widths[0]}}  {name:<{widths[1]}}  {when}".rstrip()
        for version, name, when in lines
    )


COMMANDS = (db,)
