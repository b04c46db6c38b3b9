"""What the database says at scrape time (`/metrics`): how many executions wait for a worker
and for how long, when the last good sync finished; and how the pool is used.

    async with db.connection() as conn:
        now = await gauges.read(conn, tenant)       # one statement, every index-driven
    usage = gauges.pool(db)                          # no round trip

Read from the database, not counted in memory, so every replica reports the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.store.database import Connection, Database
from runner.store.rows import FromRow


@dataclass(frozen=True, slots=True)
class Gauges(FromRow):
    """The database's answer at one moment."""

    #: Executions a worker could claim now: ready ones, and ones whose lease expired.
    queue_depth: int
    #: How long the oldest of those has waited (seconds, by the database clock; 0 when none).
    queue_oldest_seconds: float
    #: When the tenant's last good sync run (applied or unchanged) finished (Unix seconds).
    sync_last_success: float | None


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """The connection pool now."""

    in_use: int  # connections lent out
    idle: int  # connections in the pool, ready
    max_size: int
    waiting: int  # requests waiting for a connection


# "Claimable" is the claim statement's own condition (`store.queue.claim`), so the depth is what
# workers would take. Each branch reads only its partial index (`execution_queue_ready` on
# available_at, `execution_queue_leases` on lease_expires_at), never the executions, so the cost
# follows the backlog, not the history. The sync run is the newest good one of the tenant by
# `sync_runs_recent`, and a tenant keeps at most `store.sync.KEEP_RUNS` runs.
_READ = """
WITH claimable AS (
    SELECT available_at AS since FROM execution_queue
    WHERE status = 'ready' AND available_at <= now()
    UNION ALL
    SELECT lease_expires_at FROM execution_queue
    WHERE status = 'claimed' AND lease_expires_at < now()
)
SELECT count(*)::integer AS queue_depth,
       coalesce(extract(epoch FROM now() - min(since)), 0)::float8 AS queue_oldest_seconds,
       (SELECT extract(epoch FROM finished_at)::float8 FROM sync_runs
        WHERE tenant = %(tenant)s AND status IN ('applied', 'unchanged')
        ORDER BY sync_id DESC LIMIT 1) AS sync_last_success
FROM claimable
"""


async def read(conn: Connection, tenant: str) -> Gauges:
    """The queue's depth and oldest wait (every tenant), and `tenant`'s last good sync."""
    cur = await conn.execute(_READ, {"tenant": tenant})
    row = await cur.fetchone()
    assert row is not None  # an aggregate always answers one row
    return Gauges.from_row(row)


async def explain(conn: Connection, tenant: str) -> str:
    """The plan of `read`'s statement (EXPLAIN ANALYZE), for the bench and the docs."""
    cur = await conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + _READ, {"tenant": tenant})
    return "\n".join(str(next(iter(r.values()))) for r in await cur.fetchall())


def pool(db: Database) -> PoolUsage:
    """The pool's connections in use and idle, its bound, and the requests waiting."""
    stats = db.pool_stats()
    size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
    return PoolUsage(
        in_use=max(size - idle, 0),
        idle=idle,
        max_size=stats.get("pool_max", 0),
        waiting=stats.get("requests_waiting", 0),
    )
