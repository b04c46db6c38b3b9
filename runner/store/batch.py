"""The writes of one transition of one execution, sent together: `Batch` and `commit`.

The conductor gathers what a transition changes (a node finished, its successors started, the
events saying so) into a Batch of operations; `commit` sends them as one call of `dwf_apply`
(migrations 0007, 0008), which takes the lease fence and applies them in order: one statement,
one round trip and one commit per transition.

The fence is the claim's `Lease`: (owner, epoch), so a conductor of an earlier claim writes
nothing. Each batch gets the lease's next sequence number when it is first sent, and keeps it:
sending it again after a lost connection is a no-op when the first send did commit.
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

LEASE_LOST_SQLSTATE = translation.LEASE_LOST_SQLSTATE  # raised by dwf_hold_lease (migration 0008)
_APPLY = "SELECT dwf_apply(%s, %s, %s, %s, %s, %s)"


@dataclass(slots=True)
class Lease:
    """The fencing token of one claim of an execution: its owner and epoch (a new one per
    claim), and how many transitions were sent under it."""

    owner: str
    epoch: int
    sent: int = 0

    def next_seq(self) -> int:
        """The sequence number of the next transition under this claim."""
        self.sent += 1
        return self.sent


@dataclass(slots=True)
class Batch:
    """The writes of one transition of one execution, committed together by `commit`.

    With a `lease`, `dwf_apply` first takes the lease fence (`dwf_hold_lease`): if another
    claim holds the execution now, nothing of the batch is written (LeaseLost).
    """

    tenant: str
    execution_id: uuid.UUID
    ops: list[dict[str, Any]] = field(default_factory=list)
    lease: Lease | None = None
    seq: int | None = None

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

    @property
    def finishes(self) -> bool:
        """Whether this batch ends the execution."""
        return any(op["op"] == "finish_execution" for op in self.ops)


async def commit(conn: Connection, batch: Batch) -> None:
    """Apply a batch as its own transaction: one statement in autocommit, so a transition costs
    one round trip and one commit (inside a caller's open transaction: a savepoint of it)."""
    if not batch.ops:
        return
    # Secret values never reach the database: masked here, once per transition (a no-op
    # until the process reveals a secret).
    lease = batch.lease
    resend = batch.seq is not None
    if lease is not None and not resend:
        batch.seq = lease.next_seq()  # kept: a resend of this batch is recognised as a repeat
    params = (
        batch.tenant,
        batch.execution_id,
        None if lease is None else lease.owner,
        None if lease is None else lease.epoch,
        batch.seq,
        Jsonb(masking.mask(batch.ops)),
    )
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
            if resend and batch.finishes and await _ended(conn, batch.execution_id):
                # The first send did commit: ending the execution removed the queue row the
                # fence looks at, so the repeat cannot be recognised by its number.
                batch.ops.clear()
                return
            owner = None if lease is None else f"{lease.owner} (epoch {lease.epoch})"
            raise LeaseLost(
                f"execution {batch.execution_id}: the lease of {owner} was taken over by "
                "another claim; nothing was written"
            ) from exc
        raise
    batch.ops.clear()


async def _ended(conn: Connection, execution_id: uuid.UUID) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM workflow_executions WHERE execution_id = %s"
        " AND status IN ('Succeeded', 'Failed', 'Cancelled')",
        (execution_id,),
    )
    return await cur.fetchone() is not None
