"""The durable queue: enqueue with the execution, claim with SKIP LOCKED, leases, dead letters.

Every start inserts its queue row in the transaction that creates the execution (an outbox) and
NOTIFYs `dwf_queue` (delivered at commit). Workers LISTEN for the hint and also poll, since a
NOTIFY can be missed while a worker reconnects. Times are the database's (`now()`), so workers
on machines with skewed clocks still agree on who holds a lease.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from runner.store import batch as batch_store
from runner.store.batch import Batch

QUEUE_CHANNEL = "dwf_queue"  # payload: empty; "there may be work"
CANCEL_CHANNEL = "dwf_cancel"  # payload: an execution id whose cancel was requested
CHILD_CHANNEL = "dwf_child"  # payload: a parent execution id whose child just ended
TERMINAL_SQL = "('Succeeded', 'Failed', 'Cancelled')"


@dataclass(frozen=True, slots=True)
class Claim:
    """An execution a worker now holds the lease of."""

    execution_id: uuid.UUID
    tenant: str
    deliveries: int


async def enqueue(
    conn: AsyncConnection,
    tenant: str,
    execution_id: uuid.UUID,
    *,
    claimed_by: str | None = None,
    lease_seconds: float = 0.0,
) -> Claim | None:
    """Queue an execution in the caller's transaction; workers hear of it at commit. With
    `claimed_by`, the caller keeps it (already claimed, nobody is notified): `dwf run`'s way
    of running what it just started without a second round trip to claim it."""
    if claimed_by is None:
        await conn.execute(
            "WITH queued AS (INSERT INTO execution_queue (execution_id, tenant) VALUES (%s, %s)"
            " ON CONFLICT (execution_id) DO NOTHING RETURNING 1) SELECT pg_notify(%s, '')",
            (execution_id, tenant, QUEUE_CHANNEL),
        )
        return None
    await conn.execute(
        """
        INSERT INTO execution_queue (execution_id, tenant, status, lease_owner, lease_expires_at,
            deliveries, claimed_at)
        VALUES (%s, %s, 'claimed', %s, now() + make_interval(secs => %s), 1, now())
        """,
        (execution_id, tenant, claimed_by, lease_seconds),
    )
    return Claim(execution_id, tenant, 1)


async def claim(
    conn: AsyncConnection,
    owner: str,
    limit: int,
    lease_seconds: float,
    *,
    correlation_id: str | None = None,
    execution_id: uuid.UUID | None = None,
) -> list[Claim]:
    """Take up to `limit` executions: fresh ones, and ones whose lease expired (a dead worker's).

    One statement. SKIP LOCKED lets concurrent workers pass over rows another is claiming
    instead of queueing behind it; a row whose lease a live worker is using inside a transaction
    (the fence holds it FOR UPDATE) is skipped the same way and claimed on a later round.
    """
    cur = await conn.execute(
        """
        WITH next AS (
            SELECT execution_id FROM execution_queue
            WHERE ((status = 'ready' AND available_at <= now())
                   OR (status = 'claimed' AND lease_expires_at < now()))
              AND (%(execution)s::uuid IS NULL OR execution_id = %(execution)s::uuid)
              -- `dwf run`'s own worker takes only the execution it runs and its children.
              AND (%(correlation)s::text IS NULL OR EXISTS (
                   SELECT 1 FROM workflow_executions e
                   WHERE e.execution_id = execution_queue.execution_id
                     AND e.correlation_id = %(correlation)s))
            ORDER BY available_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE execution_queue q
        SET status = 'claimed', lease_owner = %(owner)s,
            lease_expires_at = now() + make_interval(secs => %(lease)s),
            deliveries = q.deliveries + 1, claimed_at = now()
        FROM next WHERE q.execution_id = next.execution_id
        RETURNING q.execution_id, q.tenant, q.deliveries
        """,
        {
            "owner": owner,
            "limit": limit,
            "lease": lease_seconds,
            "correlation": correlation_id,
            "execution": execution_id,
        },
    )
    rows = await cur.fetchall()
    await conn.commit()
    return [Claim(r["execution_id"], r["tenant"], r["deliveries"]) for r in rows]


async def renew(
    conn: AsyncConnection, owner: str, lease_seconds: float, execution_ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    """Extend this worker's leases on the executions it is running; returns those it still
    holds. Only those: a lease it holds on something it no longer runs is left to expire."""
    cur = await conn.execute(
        """
        UPDATE execution_queue SET lease_expires_at = now() + make_interval(secs => %s)
        WHERE status = 'claimed' AND lease_owner = %s AND execution_id = ANY(%s)
        RETURNING execution_id
        """,
        (lease_seconds, owner, execution_ids),
    )
    held = {r["execution_id"] for r in await cur.fetchall()}
    await conn.commit()
    return held


async def release(conn: AsyncConnection, execution_id: uuid.UUID, owner: str) -> None:
    """Give an execution back (a worker shutting down): claimable at once, not a failed delivery."""
    await conn.execute(
        """
        UPDATE execution_queue SET status = 'ready', available_at = now(), lease_owner = NULL,
            lease_expires_at = NULL, deliveries = GREATEST(deliveries - 1, 0)
        WHERE execution_id = %s AND status = 'claimed' AND lease_owner = %s
        """,
        (execution_id, owner),
    )
    await conn.execute("SELECT pg_notify(%s, '')", (QUEUE_CHANNEL,))
    await conn.commit()


async def drop(conn: AsyncConnection, execution_id: uuid.UUID) -> None:
    """Remove a queue row (its execution ended, or is gone)."""
    await conn.execute("DELETE FROM execution_queue WHERE execution_id = %s", (execution_id,))
    await conn.commit()


async def request_cancel(conn: AsyncConnection, execution_id: uuid.UUID) -> bool:
    """Tell every worker (in the caller's transaction), and unpark a waiting execution so a
    worker picks it up and cancels it. True when it was parked: then no worker runs it to
    cancel the children it waits for, and the caller does (`Conductor.cancel`)."""
    cur = await conn.execute(
        "UPDATE execution_queue SET status = 'ready', available_at = now()"
        " WHERE execution_id = %s AND status = 'waiting' RETURNING execution_id",
        (execution_id,),
    )
    parked = await cur.fetchone() is not None
    await conn.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, str(execution_id)))
    await conn.execute("SELECT pg_notify(%s, '')", (QUEUE_CHANNEL,))
    return parked


async def sweep_waiting(conn: AsyncConnection) -> int:
    """Unpark waiting executions one of whose awaited children ended: a safety net for a wake-up
    lost in the narrow race between a parent parking and its child ending."""
    cur = await conn.execute(
        f"""
        UPDATE execution_queue q SET status = 'ready', available_at = now()
        WHERE q.status = 'waiting' AND EXISTS (
            SELECT 1 FROM workflow_executions c
            JOIN action_executions a ON a.execution_id = c.parent_execution_id
                AND a.node_id = c.parent_node_id AND a.status = 'Running'
            WHERE c.parent_execution_id = q.execution_id AND c.status IN {TERMINAL_SQL})
        RETURNING execution_id
        """
    )
    count = len(await cur.fetchall())
    if count:
        await conn.execute("SELECT pg_notify(%s, '')", (QUEUE_CHANNEL,))
    await conn.commit()
    return count


async def dead_letter(conn: AsyncConnection, claim: Claim, owner: str, reason: str) -> None:
    """Give up on an execution that keeps killing or losing its workers: it ends Failed."""
    batch = Batch(claim.tenant, claim.execution_id, lease_owner=owner)
    error = {"type": "DeadLettered", "message": reason, "nodeId": None}
    batch.statements.append(
        (
            "UPDATE action_executions SET status = 'Failed', error_json = %s,"
            " finished_at = clock_timestamp() WHERE execution_id = %s AND status = 'Running'",
            (Jsonb({"type": "WorkerLost", "message": reason}), claim.execution_id),
        )
    )
    batch.finish_execution("Failed", error=error)
    batch.statements.append(
        (
            "INSERT INTO dead_letters (execution_id, tenant, deliveries, reason, last_lease_owner)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (execution_id) DO NOTHING",
            (claim.execution_id, claim.tenant, claim.deliveries, reason, owner),
        )
    )
    await batch_store.commit(conn, batch)
    await drop(conn, claim.execution_id)


async def queue_depth(conn: AsyncConnection) -> dict[str, Any]:
    """How many rows wait in each status, and the oldest ready one's age in seconds."""
    cur = await conn.execute(
        """
        SELECT count(*) FILTER (WHERE status = 'ready') AS ready,
               count(*) FILTER (WHERE status = 'claimed') AS claimed,
               count(*) FILTER (WHERE status = 'waiting') AS waiting,
               COALESCE(EXTRACT(EPOCH FROM now() - min(available_at)
                                FILTER (WHERE status = 'ready')), 0) AS oldest_ready_seconds
        FROM execution_queue
        """
    )
    row = await cur.fetchone()
    await conn.commit()
    return dict(row or {})
