"""Schema migrations: the numbered files `runner/store/migrations/NNNN_name.sql`, applied in order.

Migrations are forward-only. Each runs in its own transaction and is recorded in
`schema_migrations` with the SHA-256 of its file; an applied migration is never edited (add a new
one instead), so a recorded checksum that no longer matches its file is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import psycopg
import psycopg.rows
from psycopg import AsyncConnection

from runner.errors import MigrationError, UsageError
from runner.store import translation

MIGRATIONS_PACKAGE = "runner.store"
MIGRATIONS_FOLDER = "migrations"
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

# One fixed key ("dwf:migr" as a big-endian integer) so every replica of every runner version
# contends for the same lock in a database; advisory locks are per database, so separate
# databases never wait on each other.
MIGRATION_LOCK_KEY = int.from_bytes(b"dwf:migr", "big")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_SELECT_APPLIED = (
    "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
)
_INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file shipped with the package."""

    version: int
    name: str  # the file name without `.sql`, e.g. "0001_initial"
    sql: str
    checksum: str

    @property
    def path(self) -> str:
        """The file's path in the source tree, for messages."""
        return f"runner/store/{MIGRATIONS_FOLDER}/{self.name}.sql"


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """A migration as the database sees it; `missing` means applied but absent from the package."""

    version: int
    name: str
    applied_at: datetime | None
    checksum_ok: bool
    missing: bool = False


@dataclass(frozen=True, slots=True)
class _Applied:
    version: int
    name: str
    checksum: str
    applied_at: datetime


def checksum(text: str) -> str:
    """SHA-256 of a migration's text, with line endings normalised to `\\n`."""
    # A checkout with CRLF line endings must not look like an edited migration.
    return hashlib.sha256(text.replace("\r\n", "\n").encode()).hexdigest()


def load() -> list[Migration]:
    """The package's migrations, in version order."""
    folder = resources.files(MIGRATIONS_PACKAGE).joinpath(MIGRATIONS_FOLDER)
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(
                f"runner/store/{MIGRATIONS_FOLDER}/{entry.name}: a migration file must be named "
                "NNNN_name.sql (four digits, then lower-case letters, digits and underscores)"
            )
        text = entry.read_text(encoding="utf-8")
        migration = Migration(
            int(match["version"]), entry.name.removesuffix(".sql"), text, checksum(text)
        )
        if migration.version in found:
            raise MigrationError(
                f"{found[migration.version].path} and {migration.path} have the same version "
                f"{migration.version}; renumber the newer one"
            )
        found[migration.version] = migration
    return [found[version] for version in sorted(found)]


async def apply(conn: AsyncConnection[Any]) -> list[str]:
    """Apply pending migrations in order; return the names applied (empty when up to date).

    `conn` must not be inside a transaction: each migration commits on its own.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise UsageError("migrations.apply needs a connection that is not inside a transaction")
    migrations = load()
    # A session-level lock, because it must span the separate transactions of several
    # migrations; pg_advisory_lock waits, so a replica that comes second finds nothing pending.
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        # Every statement runs in a transaction block: a bare one would open an implicit
        # transaction (autocommit off) and turn each migration's own transaction into a savepoint.
        async with conn.transaction():
            await conn.execute(_CREATE_TABLE)
            applied = await _applied(conn)
        _check(applied, migrations)
        names = []
        for migration in migrations:
            if migration.version in applied:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        _INSERT_APPLIED, (migration.version, migration.name, migration.checksum)
                    )
            except psycopg.Error as exc:
                if translation.is_unavailable(exc, connection_lost=conn.closed):
                    raise  # not the file's fault: the caller's block says the database is gone
                raise MigrationError(
                    f"{migration.path} failed and was rolled back: {exc}; fix the file (it was "
                    "never applied) and run `dwf db migrate` again"
                ) from exc
            names.append(migration.name)
        return names
    finally:
        if not conn.broken and not conn.closed:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


async def status(conn: AsyncConnection[Any]) -> list[MigrationStatus]:
    """Every migration, applied or pending, in version order; reads only, takes no lock."""
    migrations = {m.version: m for m in load()}
    # In a transaction block, so the connection is left as it was found (idle stays idle).
    async with conn.transaction(), conn.cursor(row_factory=psycopg.rows.tuple_row) as cursor:
        await cursor.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        [present] = await cursor.fetchone() or (False,)
        applied = await _applied(conn) if present else {}
    result = []
    for version in sorted(migrations.keys() | applied.keys()):
        migration, done = migrations.get(version), applied.get(version)
        if migration is None:
            assert done is not None
            result.append(MigrationStatus(version, done.name, done.applied_at, False, True))
        elif done is None:
            result.append(MigrationStatus(version, migration.name, None, True))
        else:
            ok = done.checksum == migration.checksum
            result.append(MigrationStatus(version, migration.name, done.applied_at, ok))
    return result


async def _applied(conn: AsyncConnection[Any]) -> dict[int, _Applied]:
    # A plain cursor, so this works whatever row factory the connection was given.
    async with conn.cursor(row_factory=psycopg.rows.tuple_row) as cursor:
        await cursor.execute(_SELECT_APPLIED)
        rows = await cursor.fetchall()
    return {row[0]: _Applied(*row) for row in rows}


def _check(applied: dict[int, _Applied], migrations: list[Migration]) -> None:
    by_version = {m.version: m for m in migrations}
    for version, done in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"migration {done.name} (version {version}) is applied to the database but "
                f"runner/store/{MIGRATIONS_FOLDER}/{done.name}.sql is not in this package: this "
                "runner is older than the database; run a runner that has it"
            )
        if migration.checksum != done.checksum:
            raise MigrationError(
                f"{migration.path} was edited after it was applied (its checksum differs from "
                "the one recorded in schema_migrations): restore the file as it was applied; "
                "never edit an applied migration, add a new numbered one instead"
            )
