"""The writes of one transition of one execution, sent together: `Batch` and `commit`.

The conductor gathers what a transition changes (a node finished, its successors started, the
events saying so) into a Batch; `commit` sends it in one pipelined transaction, behind the lease
fence: one round trip and one commit per transition.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from runner.errors import LeaseLost

LEASE_LOST_SQLSTATE = "DWL01"  # raised by dwf_hold_lease (migration 0002)


@dataclass(slots=True)
class Batch:
    """The writes of one transition of one execution, committed together by `commit`.

    With a `lease_owner`, the transaction first takes the lease fence (`dwf_hold_lease`): if
    another worker holds the execution now, nothing of the batch is written (LeaseLost).
    """

    tenant: str
    execution_id: uuid.UUID
    statements: list[tuple[str, Sequence[Any]]] = field(default_factory=list)
    lease_owner: str | None = None

    def start_attempt(
        self, node_id: str, attempt: int, action_type: str | None, parameters: Any
    ) -> None:
        """A node's attempt begins (row Running)."""
        self.statements.append(
            (
                "INSERT INTO action_executions (tenant, execution_id, node_id, attempt,"
                " action_type, status, parameters_json, started_at)"
                " VALUES (%s, %s, %s, %s, %s, 'Running', %s, clock_timestamp())",
                (self.tenant, self.execution_id, node_id, attempt, action_type, _json(parameters)),
            )
        )
        self.event("NodeStarted", node_id, attempt)

    def finish_attempt(
        self,
        node_id: str,
        attempt: int,
        status: str,
        outputs: Any = None,
        error: Any = None,
        *,
        reused: bool = False,
    ) -> None:
        """A running attempt ended; fenced so only a Running row changes. `reused`: its
        outputs came from an earlier execution with the same idempotency key."""
        self.statements.append(
            (
                "UPDATE action_executions SET status = %s, outputs_json = %s, error_json = %s,"
                " reused = %s, finished_at = clock_timestamp()"
                " WHERE execution_id = %s AND node_id = %s AND attempt = %s AND status = 'Running'",
                (status, _json(outputs), _json(error), reused, self.execution_id, node_id, attempt),
            )
        )

    def record_attempt(
        self,
        node_id: str,
        attempt: int,
        action_type: str | None,
        status: str,
        *,
        parameters: Any = None,
        outputs: Any = None,
        error: Any = None,
        reused: bool = False,
    ) -> None:
        """An attempt that starts and ends at once: Skipped (attempt 0), reused or refused."""
        self.statements.append(
            (
                "INSERT INTO action_executions (tenant, execution_id, node_id, attempt,"
                " action_type, status, parameters_json, outputs_json, error_json, reused,"
                " started_at, finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " clock_timestamp(), clock_timestamp())",
                (
                    self.tenant,
                    self.execution_id,
                    node_id,
                    attempt,
                    action_type,
                    status,
                    _json(parameters),
                    _json(outputs),
                    _json(error),
                    reused,
                ),
            )
        )

    def event(
        self, kind: str, node_id: str | None = None, attempt: int | None = None, **data: Any
    ) -> None:
        """An entry of the execution's event log."""
        self.statements.append(
            (
                "INSERT INTO execution_events (tenant, execution_id, node_id, attempt, kind, data)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (self.tenant, self.execution_id, node_id, attempt, kind, Jsonb(data)),
            )
        )

    def link(
        self,
        *,
        workflow_id: str,
        node_id: str,
        attempt: int,
        idempotency_key: str | None,
        system: str,
        resource_type: str,
        external_id: str,
        url: str | None,
        outputs: Any,
    ) -> None:
        """A resource an action created (and the outputs to reuse for its idempotency key)."""
        self.statements.append(
            (
                """
                INSERT INTO workflow_resource_links (tenant, workflow_id, node_id,
                    idempotency_key, execution_id, action_execution_id, system, resource_type,
                    external_id, url, outputs)
                SELECT %s, %s, %s, %s, %s, action_execution_id, %s, %s, %s, %s, %s
                FROM action_executions WHERE execution_id = %s AND node_id = %s AND attempt = %s
                """,
                (
                    self.tenant,
                    workflow_id,
                    node_id,
                    idempotency_key,
                    self.execution_id,
                    system,
                    resource_type,
                    external_id,
                    url,
                    _json(outputs),
                    self.execution_id,
                    node_id,
                    attempt,
                ),
            )
        )

    def start_execution(self, variables: Any) -> None:
        """Pending -> Running, with the rendered vars."""
        self.statements.append(
            (
                "UPDATE workflow_executions SET status = 'Running', vars = %s,"
                " started_at = clock_timestamp() WHERE execution_id = %s AND status = 'Pending'",
                (_json(variables), self.execution_id),
            )
        )
        self.event("ExecutionStarted")

    def finish_execution(
        self,
        status: str,
        outputs: Any = None,
        error: Any = None,
        *,
        parent_execution_id: uuid.UUID | None = None,
    ) -> None:
        """The execution ends; fenced so a finished execution never changes again. Its queue
        row goes, and a parent parked waiting for it is made claimable again."""
        self.statements.append(
            (
                "UPDATE workflow_executions SET status = %s, outputs = %s, error = %s,"
                " finished_at = clock_timestamp()"
                " WHERE execution_id = %s AND status IN ('Pending', 'Running')",
                (status, _json(outputs), _json(error), self.execution_id),
            )
        )
        self.event(f"Execution{status}", error=error)
        self.statements.append(
            ("DELETE FROM execution_queue WHERE execution_id = %s", (self.execution_id,))
        )
        if parent_execution_id is not None:
            self.statements.append(
                (
                    "UPDATE execution_queue SET status = 'ready', available_at = now()"
                    " WHERE execution_id = %s AND status = 'waiting'",
                    (parent_execution_id,),
                )
            )
            self.statements.append(
                ("SELECT pg_notify('dwf_child', %s), pg_notify('dwf_queue', '')",
                 (str(parent_execution_id),))
            )  # fmt: skip

    def park(self) -> None:
        """Give up the lease and the worker slot until a child this execution waits for ends."""
        self.statements.append(
            (
                "UPDATE execution_queue SET status = 'waiting', lease_owner = NULL,"
                " lease_expires_at = NULL, deliveries = 0 WHERE execution_id = %s",
                (self.execution_id,),
            )
        )
        self.event("ExecutionParked")

    def __bool__(self) -> bool:
        return bool(self.statements)


async def commit(conn: AsyncConnection, batch: Batch) -> None:
    """Apply a batch in its own transaction, pipelined: BEGIN, the statements and COMMIT go
    out together, so a transition costs one round trip and one commit."""
    if not batch.statements:
        return
    try:
        async with conn.pipeline(), conn.transaction():
            if batch.lease_owner is not None:
                await conn.execute(
                    "SELECT dwf_hold_lease(%s, %s)", (batch.execution_id, batch.lease_owner)
                )
            await write(conn, batch)
    except psycopg.Error as exc:
        if exc.sqlstate == LEASE_LOST_SQLSTATE:
            raise LeaseLost(
                f"execution {batch.execution_id}: the lease of {batch.lease_owner} was taken "
                "over by another worker; nothing was written"
            ) from exc
        raise


async def write(conn: AsyncConnection, batch: Batch) -> None:
    """Send a batch's statements within the caller's transaction."""
    cur = conn.cursor()
    for sql, params in batch.statements:
        await cur.execute(sql, params)
    batch.statements.clear()


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)
