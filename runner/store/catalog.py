"""The action catalog in `connectors` and `action_catalog` (migration 0006).

`publish` replaces the catalog with the registry of the runner that calls it, in one
transaction: types and connectors no longer provided are removed, so the tables always show
what the most recently started runner can run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import structlog
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from runner.actions import registry
from runner.actions.registry import CatalogEntry
from runner.errors import ActionRegistryError
from runner.store.database import Database

_log = structlog.get_logger("runner.store")


async def publish(conn: AsyncConnection, entries: Sequence[CatalogEntry]) -> None:
    """Write `entries` as the whole catalog (call inside a transaction)."""
    # One writer at a time: replicas starting together would otherwise interleave deletes.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('dwf_action_catalog'))")
    connectors = sorted({(e.connector, e.package, e.package_version) for e in entries})
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO connectors (connector, package, package_version) VALUES (%s, %s, %s)
            ON CONFLICT (connector, package) DO UPDATE
                SET package_version = EXCLUDED.package_version, updated_at = now()
            """,
            connectors,
        )
        await cur.executemany(
            """
            INSERT INTO action_catalog (action_type, connector, package, version, description,
                parameters_schema, outputs_schema, entry_point)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (action_type) DO UPDATE SET connector = EXCLUDED.connector,
                package = EXCLUDED.package, version = EXCLUDED.version,
                description = EXCLUDED.description,
                parameters_schema = EXCLUDED.parameters_schema,
                outputs_schema = EXCLUDED.outputs_schema,
                entry_point = EXCLUDED.entry_point, updated_at = now()
            """,
            [
                (
                    e.action_type,
                    e.connector,
                    e.package,
                    e.version,
                    e.description,
                    Jsonb(dict(e.parameters_schema)),
                    Jsonb(dict(e.outputs_schema)),
                    e.entry_point,
                )
                for e in entries
            ],
        )
    await conn.execute(
        "DELETE FROM action_catalog WHERE NOT (action_type = ANY(%s))",
        ([e.action_type for e in entries],),
    )
    await conn.execute(
        "DELETE FROM connectors c WHERE NOT EXISTS (SELECT 1 FROM action_catalog a"
        " WHERE a.connector = c.connector AND a.package = c.package)"
    )


async def read(conn: AsyncConnection) -> list[dict[str, Any]]:
    """The catalog, one dict per action type (with its connector's package), by type."""
    cur = await conn.execute(
        """
        SELECT a.action_type, a.connector, a.version, a.description, a.parameters_schema,
               a.outputs_schema, a.entry_point, c.package, c.package_version, a.updated_at
        FROM action_catalog a JOIN connectors c USING (connector, package)
        ORDER BY a.action_type
        """
    )
    return list(await cur.fetchall())


async def publish_registry(db: Database) -> int:
    """Publish this runner's registry as the catalog (at start); how many types it wrote.

    A plugin that fails to load is logged and the catalog is left as it was: the runner still
    starts and runs every other action type.
    """
    try:
        entries = registry.catalog()
    except ActionRegistryError as exc:
        _log.error("action catalog not published", error=str(exc))
        return 0
    try:
        async with db.transaction() as conn:
            await publish(conn, entries)
    except psycopg.Error as exc:  # e.g. started with migrations pending: /ready says so
        _log.warning("action catalog not published", error=str(exc))
        return 0
    return len(entries)
