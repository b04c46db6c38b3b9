"""The durable queue: enqueue with the execution, claim with SKIP LOCKED, leases, dead letters.

Every start inserts its queue row in the transaction that creates the execution (an outbox) and
NOTIFYs `dwf_queue` (delivered at commit). Workers LISTEN for the hint and also poll, since a
NOTIFY can be missed while a worker reconnects. Times are the database's (`now()`), so workers
on machines with skewed clocks still agree on who holds a lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from psycopg.types.json import Jsonb

from runner.credentials import masking
from runner.store import batch as batch_store
from runner.store import executions
from runner.store.batch import Batch, Lease
from runner.store.database import Connection
from runner.store.executions import ExecutionRow, NewExecution

QUEUE_CHANNEL = "dwf_queue"  # payload: empty; "there may be work"
CANCEL_CHANNEL = "dwf_cancel"  # payload: an execution id whose cancel was requested
CHILD_CHANNEL = "dwf_child"  # payload: a parent execution id whose child just ended
TERMINAL_SQL = "('Succeeded', 'Failed', 'Cancelled')"


@dataclass(frozen=True, slots=True)
class Claim:
    """An execution a worker now holds the lease of, with its row as the claim found it (None
    when the execution is gone). Every write for this claim goes through its one `lease`, which
    numbers the transitions."""

    execution_id: uuid.UUID
    tenant: str
    deliveries: int
    execution: ExecutionRow | None
    lease: Lease

    @property
    def owner(self) -> str:
        """Who holds the lease."""
        return self.lease.owner

    @property
    def epoch(self) -> int:
        """The claim's epoch: writes of any earlier claim are refused."""
        return self.lease.epoch


async def enqueue(
    conn: Connection,
    new: NewExecution,
    *,
    claimed_by: str | None = None,
    lease_seconds: float = 0.0,
    statuses: Sequence[str] = ("Active",),
    current_version: int | None = None,
) -> tuple[ExecutionRow | None, bool, Claim | None]:
    """Create a Pending execution with its queue row (the outbox), its `ExecutionCreated` event
    and, for a subworkflow, its hierarchy row, in one statement; workers hear of it at commit.
    A known request id returns the existing execution (created False) and writes nothing.

    With `claimed_by`, the caller keeps it (already claimed, nobody is notified): `dwf run`'s
    way of running what it just started without a second round trip to claim it.

    It starts nothing (None, False, None) unless the workflow's status is one of `statuses`
    and, when given, its current version is `current_version`: the caller's view of the
    workflow is checked in the same statement that acts on it.
    """
    ((row, created),) = await enqueue_many(
        conn,
        [(new, current_version)],
        claimed_by=claimed_by,
        lease_seconds=lease_seconds,
        statuses=statuses,
    )
    if created and claimed_by is not None:
        return row, True, Claim(new.execution_id, new.tenant, 1, row, Lease(claimed_by, 1))
    return row, created, None


async def enqueue_many(
    conn: Connection,
    items: Sequence[tuple[NewExecution, int | None]],
    *,
    claimed_by: str | None = None,
    lease_seconds: float = 0.0,
    statuses: Sequence[str] = ("Active",),
) -> list[tuple[ExecutionRow | None, bool]]:
    """`enqueue` for many executions in one statement (a burst of schedule fires): each item is
    an execution and the current version its workflow must have (None: any). Returns, in
    order, each one's row and whether it was created (the existing row for a known request id;
    None when its workflow's status or version did not match)."""
    if not items:
        return []
    wanted = [
        {
            "execution_id": str(new.execution_id),
            "tenant": new.tenant,
            "workflow_id": new.workflow_id,
            "workflow_version": new.workflow_version,
            "request_id": new.request_id,
            "correlation_id": new.correlation_id,
            "principal": new.principal,
            "trigger_type": new.trigger_type,
            "trigger_id": new.trigger_id,
            # A subworkflow's trigger is its parent node's rendered parameters: secrets masked.
            "trigger_payload": masking.mask(new.trigger_payload),
            "event": masking.mask(new.event),
            "parent_execution_id": (
                None if new.parent_execution_id is None else str(new.parent_execution_id)
            ),
            "parent_node_id": new.parent_node_id,
            "depth": new.depth,
            "traceparent": new.traceparent,
            "tracestate": new.tracestate,
            "current": current,
        }
        for new, current in items
    ]
    cur = await conn.execute(
        """
        WITH wanted AS (
            SELECT * FROM jsonb_to_recordset(%(wanted)s) AS r(execution_id uuid, tenant text,
                workflow_id text, workflow_version integer, request_id text,
                correlation_id text, principal text, trigger_type text, trigger_id text,
                trigger_payload jsonb, event jsonb, parent_execution_id uuid,
                parent_node_id text, depth integer, traceparent text, tracestate text,
                current integer)
        ), inserted AS (
            INSERT INTO workflow_executions (execution_id, tenant, workflow_id, workflow_version,
                request_id, correlation_id, principal, trigger_type, trigger_id, trigger_payload,
                event, parent_execution_id, parent_node_id, depth, traceparent, tracestate)
            SELECT r.execution_id, r.tenant, r.workflow_id, r.workflow_version, r.request_id,
                r.correlation_id, r.principal, r.trigger_type, r.trigger_id,
                COALESCE(r.trigger_payload, '{}'), COALESCE(r.event, '{}'),
                r.parent_execution_id, r.parent_node_id, r.depth, r.traceparent, r.tracestate
            FROM wanted r
            JOIN workflows w ON w.tenant = r.tenant AND w.workflow_id = r.workflow_id
            WHERE w.status = ANY(%(statuses)s)
              AND (r.current IS NULL OR w.current_version = r.current)
            -- The unique (tenant, workflow_id, request_id) makes a repeated request a no-op.
            ON CONFLICT (tenant, workflow_id, request_id) DO NOTHING
            RETURNING *
        ), linked AS (
            INSERT INTO workflow_execution_hierarchy (tenant, parent_execution_id,
                child_execution_id, parent_node_id, depth)
            SELECT tenant, parent_execution_id, execution_id, parent_node_id, depth
            FROM inserted WHERE parent_execution_id IS NOT NULL
            ON CONFLICT DO NOTHING
        ), logged AS (
            INSERT INTO execution_events (tenant, execution_id, kind, data)
            SELECT tenant, execution_id, 'ExecutionCreated',
                   jsonb_build_object('requestId', request_id)
            FROM inserted
        ), queued AS (
            INSERT INTO execution_queue (execution_id, tenant, status, lease_owner,
                lease_expires_at, deliveries, lease_epoch, claimed_at)
            SELECT execution_id, tenant,
                   CASE WHEN %(owner)s::text IS NULL THEN 'ready' ELSE 'claimed' END,
                   %(owner)s::text,
                   CASE WHEN %(owner)s::text IS NOT NULL
                        THEN now() + make_interval(secs => %(lease)s) END,
                   CASE WHEN %(owner)s::text IS NULL THEN 0 ELSE 1 END,
                   CASE WHEN %(owner)s::text IS NULL THEN 0 ELSE 1 END,
                   CASE WHEN %(owner)s::text IS NOT NULL THEN now() END
            FROM inserted
        )
        -- Identical notifications of one transaction are delivered once.
        SELECT inserted.*,
               CASE WHEN %(owner)s::text IS NULL THEN pg_notify(%(channel)s, '') END AS notified
        FROM inserted
        """,
        {
            "wanted": Jsonb(wanted),
            "owner": claimed_by,
            "lease": lease_seconds,
            "channel": QUEUE_CHANNEL,
            "statuses": list(statuses),
        },
    )
    made = {r["execution_id"]: ExecutionRow.from_row(r) for r in await cur.fetchall()}
    missing = [new for new, _ in items if new.execution_id not in made]
    found = await executions.by_requests(
        conn, [(new.tenant, new.workflow_id, new.request_id) for new in missing]
    )
    results: list[tuple[ExecutionRow | None, bool]] = []
    for new, _ in items:
        if new.execution_id in made:
            results.append((made[new.execution_id], True))
        else:
            results.append((found.get((new.tenant, new.workflow_id, new.request_id)), False))
    return results


async def claim(
    conn: Connection,
    owner: str,
    limit: int,
    lease_seconds: float,
    *,
    correlation_id: str | None = None,
    execution_id: uuid.UUID | None = None,
    running: Sequence[uuid.UUID] = (),
) -> list[Claim]:
    """Take up to `limit` executions: fresh ones, and ones whose lease expired (a dead worker's),
    but none of `running` (those the caller still conducts: a conductor that lost its lease to
    an outage must stop before its execution can be claimed again). Each claim is a new epoch.

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
              AND NOT (execution_id = ANY(%(running)s::uuid[]))
              -- `dwf run`'s own worker takes only the execution it runs and its children.
              AND (%(correlation)s::text IS NULL OR EXISTS (
                   SELECT 1 FROM workflow_executions e
                   WHERE e.execution_id = execution_queue.execution_id
                     AND e.correlation_id = %(correlation)s))
            ORDER BY available_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        -- The execution's row comes back with the claim: the worker needs no second read.
        UPDATE execution_queue q
        SET status = 'claimed', lease_owner = %(owner)s,
            lease_expires_at = now() + make_interval(secs => %(lease)s),
            deliveries = q.deliveries + 1, claimed_at = now(),
            -- The fencing token: writes of any earlier claim are refused from here on.
            lease_epoch = q.lease_epoch + 1, applied_seq = 0
        FROM next LEFT JOIN workflow_executions e ON e.execution_id = next.execution_id
        WHERE q.execution_id = next.execution_id
        RETURNING q.execution_id AS claimed_id, q.tenant AS claimed_tenant, q.deliveries,
            q.lease_epoch, e.*
        """,
        {
            "owner": owner,
            "limit": limit,
            "lease": lease_seconds,
            "correlation": correlation_id,
            "execution": execution_id,
            "running": list(running),
        },
    )
    rows = await cur.fetchall()
    await conn.commit()
    return [
        Claim(
            r["claimed_id"],
            r["claimed_tenant"],
            r["deliveries"],
            None if r["execution_id"] is None else ExecutionRow.from_row(r),
            Lease(owner, r["lease_epoch"]),
        )
        for r in rows
    ]


async def renew(
    conn: Connection, owner: str, lease_seconds: float, epochs: Mapping[uuid.UUID, int]
) -> set[uuid.UUID]:
    """Extend this worker's leases on the executions it is running, each in the epoch of its
    claim; returns those it still holds. Only those: a lease it holds on something it no longer
    runs is left to expire, and one taken over by a later claim is not renewed."""
    cur = await conn.execute(
        """
        UPDATE execution_queue q SET lease_expires_at = now() + make_interval(secs => %s)
        FROM unnest(%s::uuid[], %s::bigint[]) AS held(execution_id, epoch)
        WHERE q.execution_id = held.execution_id AND q.lease_epoch = held.epoch
          AND q.status = 'claimed' AND q.lease_owner = %s
        RETURNING q.execution_id
        """,
        (lease_seconds, list(epochs), list(epochs.values()), owner),
    )
    held = {r["execution_id"] for r in await cur.fetchall()}
    await conn.commit()
    return held


async def release(conn: Connection, claim: Claim) -> None:
    """Give an execution back (a worker shutting down, or one the database failed): claimable
    at once, not a failed delivery. Only by its current claim."""
    await conn.execute(
        """
        UPDATE execution_queue SET status = 'ready', available_at = now(), lease_owner = NULL,
            lease_expires_at = NULL, deliveries = GREATEST(deliveries - 1, 0)
        WHERE execution_id = %s AND status = 'claimed' AND lease_owner = %s AND lease_epoch = %s
        """,
        (claim.execution_id, claim.owner, claim.epoch),
    )
    await conn.execute("SELECT pg_notify(%s, '')", (QUEUE_CHANNEL,))
    await conn.commit()


async def drop(conn: Connection, execution_id: uuid.UUID) -> None:
    """Remove a queue row (its execution ended, or is gone)."""
    await conn.execute("DELETE FROM execution_queue WHERE execution_id = %s", (execution_id,))
    await conn.commit()


async def request_cancel(conn: Connection, execution_id: uuid.UUID) -> bool:
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


async def sweep_waiting(conn: Connection) -> int:
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


async def dead_letter(conn: Connection, claim: Claim, reason: str) -> None:
    """Give up on an execution that keeps killing or losing its workers: it ends Failed."""
    owner = claim.owner
    batch = Batch(claim.tenant, claim.execution_id, lease=claim.lease)
    error = {"type": "DeadLettered", "message": reason, "nodeId": None}
    batch.fail_running_attempts({"type": "WorkerLost", "message": reason})
    batch.finish_execution("Failed", error=error)
    batch.dead_letter(claim.deliveries, reason, owner)
    await batch_store.commit(conn, batch)
    await drop(conn, claim.execution_id)
