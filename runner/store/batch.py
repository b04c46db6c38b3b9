"""The writes of one transition of one execution, sent together: `Batch` and `commit`.

The conductor gathers what a transition changes (a node finished, its successors started, the
events saying so) into a Batch of operations; `commit` sends them as one call of `dwf_apply`
(migration 0007), which takes the lease fence and applies them in order: one statement, one
round trip and one commit per transition.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from runner.credentials import masking
from runner.errors import LeaseLost
from runner.store import translation
from runner.store.database import Connection

LEASE_LOST_SQLSTATE = translation.LEASE_LOST_SQLSTATE  # raised by dwf_hold_lease (migration 0002)
_APPLY = "SELECT dwf_apply(%s, %s, %s, %s)"


@dataclass(slots=True)
class Batch:
    """The writes of one transition of one execution, committed together by `commit`.

    With a `lease_owner`, `dwf_apply` first takes the lease fence (`dwf_hold_lease`): if
    another worker holds the execution now, nothing of the batch is written (LeaseLost).
    """

    tenant: str
    execution_id: uuid.UUID
    ops: list[dict[str, Any]] = field(default_factory=list)
    lease_owner: str | None = None

    def start_attempt(
        self, node_id: str, attempt: int, action_type: str | None, parameters: Any
    ) -> None:
        """A node's attempt begins (row Running)."""
        self._add(
            "start_attempt", node=node_id, attempt=attempt, type=action_type, params=parameters
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
        self._add(
            "finish_attempt",
            node=node_id,
            attempt=attempt,
            status=status,
            outputs=outputs,
            error=error,
            reused=reused,
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
        self._add(
            "record_attempt",
            node=node_id,
            attempt=attempt,
            type=action_type,
            status=status,
            params=parameters,
            outputs=outputs,
            error=error,
            reused=reused,
        )

    def fail_running_attempts(self, error: Any) -> None:
        """Every attempt still Running ends Failed with this error (its worker is gone)."""
        self._add("fail_running", error=error)

    def event(
        self, kind: str, node_id: str | None = None, attempt: int | None = None, **data: Any
    ) -> None:
        """An entry of the execution's event log."""
        self._add("event", kind=kind, node=node_id, attempt=attempt, data=data)

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
        self._add(
            "link",
            workflow=workflow_id,
            node=node_id,
            attempt=attempt,
            key=idempotency_key,
            system=system,
            resourceType=resource_type,
            externalId=external_id,
            url=url,
            outputs=outputs,
        )

    def start_execution(self, variables: Any) -> None:
        """Pending -> Running, with the rendered vars."""
        self._add("start_execution", vars=variables)
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
        parent = None if parent_execution_id is None else str(parent_execution_id)
        # The event first: it must be in the log before a woken parent can read it.
        self.event(f"Execution{status}", error=error)
        self._add("finish_execution", status=status, outputs=outputs, error=error, parent=parent)

    def park(self) -> None:
        """Give up the lease and the worker slot until a child this execution waits for ends."""
        self._add("park")
        self.event("ExecutionParked")

    def dead_letter(self, deliveries: int, reason: str, owner: str | None) -> None:
        """Record the execution in `dead_letters` (once)."""
        self._add("dead_letter", deliveries=deliveries, reason=reason, owner=owner)

    def _add(self, op: str, **fields: Any) -> None:
        # The keys are what `dwf_apply` (migration 0007) reads.
        fields["op"] = op
        self.ops.append(fields)

    def __bool__(self) -> bool:
        return bool(self.ops)


async def commit(conn: Connection, batch: Batch) -> None:
    """Apply a batch as its own transaction: one statement in autocommit, so a transition costs
    one round trip and one commit (inside a caller's open transaction: a savepoint of it)."""
    if not batch.ops:
        return
    # Secret values never reach the database: masked here, once per transition (a no-op
    # until the process reveals a secret).
    params = (batch.tenant, batch.execution_id, batch.lease_owner, Jsonb(masking.mask(batch.ops)))
    try:
        if conn.autocommit:
            await conn.execute(_APPLY, params)
        elif conn.info.transaction_status == TransactionStatus.IDLE:
            await conn.set_autocommit(True)
            try:
                await conn.execute(_APPLY, params)
            finally:
                await conn.set_autocommit(False)
        else:
            async with conn.transaction():
                await conn.execute(_APPLY, params)
    except psycopg.Error as exc:
        if exc.sqlstate == LEASE_LOST_SQLSTATE:
            raise LeaseLost(
                f"execution {batch.execution_id}: the lease of {batch.lease_owner} was taken "
                "over by another worker; nothing was written"
            ) from exc
        raise
    batch.ops.clear()
