"""The action catalog in `connectors` and `action_catalog` (migration 0006).

`publish` replaces the catalog with the registry of the runner that calls it, in one
transaction: types and connectors no longer provided are removed, so the tables always show
what the most recently started runner can run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg.types.json import Jsonb

from runner.store.database import Connection


async def publish(conn: Connection, entries: Sequence[Mapping[str, Any]]) -> None:
    """Write `entries` (rows: action_type, connector, version, description, parameters_schema,
    outputs_schema, package, package_version, entry_point) as the whole catalog (call inside a
    transaction)."""
    # One writer at a time: replicas starting together would otherwise interleave deletes.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('dwf_action_catalog'))")
    connectors = sorted({(e["connector"], e["package"], e["package_version"]) for e in entries})
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
            VALUES (%(action_type)s, %(connector)s, %(package)s, %(version)s, %(description)s,
                %(parameters_schema)s, %(outputs_schema)s, %(entry_point)s)
            ON CONFLICT (action_type) DO UPDATE SET connector = EXCLUDED.connector,
                package = EXCLUDED.package, version = EXCLUDED.version,
                description = EXCLUDED.description,
                parameters_schema = EXCLUDED.parameters_schema,
                outputs_schema = EXCLUDED.outputs_schema,
                entry_point = EXCLUDED.entry_point, updated_at = now()
            """,
            [
                {
                    **e,
                    "parameters_schema": Jsonb(dict(e["parameters_schema"])),
                    "outputs_schema": Jsonb(dict(e["outputs_schema"])),
                }
                for e in entries
            ],
        )
    await conn.execute(
        "DELETE FROM action_catalog WHERE NOT (action_type = ANY(%s))",
        ([e["action_type"] for e in entries],),
    )
    await conn.execute(
        "DELETE FROM connectors c WHERE NOT EXISTS (SELECT 1 FROM action_catalog a"
        " WHERE a.connector = c.connector AND a.package = c.package)"
    )


async def read(conn: Connection) -> list[dict[str, Any]]:
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
