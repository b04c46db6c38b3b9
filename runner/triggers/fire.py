"""Firing one scheduled time of a schedule: exactly one decision, however many replicas try.

Every replica's scheduler fires every schedule. The first to insert the fire log row of
(trigger, scheduled time) decides; in that same transaction it applies the overlap policy,
starts the execution (request id `schedule:<trigger>:<scheduled time UTC>`, unique per
workflow; principal `schedule:<trigger>`) with its queue row, and advances the trigger's
cursor. The others find the row taken and do nothing. A crash before the commit leaves
nothing, so another replica, or catch-up at the next start, still fires that time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from runner.engine.conductor import request_cancel_in
from runner.engine.requests import StartRequest
from runner.engine.starts import Starts
from runner.store import triggers
from runner.store.database import Database
from runner.store.triggers import FireOutcome, TriggerRow
from runner.triggers.catchup import Missed


@dataclass(frozen=True, slots=True)
class Decision:
    """What this replica decided about a scheduled time (None from `fire`: another did)."""

    outcome: FireOutcome
    execution_id: uuid.UUID | None = None
    reason: str | None = None


def utc_text(moment: datetime) -> str:
    """A time as UTC ISO 8601 to the second with a `Z`: `2026-03-29T01:00:00Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def principal(trigger_id: str) -> str:
    """Who started a schedule's executions (`execution.principal`): `schedule:<triggerId>`."""
    return f"schedule:{trigger_id}"


def request_id(trigger_id: str, scheduled_at: datetime) -> str:
    """The request id of a schedule's fire: the scheduled time, not the time it ran."""
    return f"schedule:{trigger_id}:{utc_text(scheduled_at)}"


async def fire(
    db: Database,
    starts: Starts,
    trigger: TriggerRow,
    scheduled_at: datetime,
    *,
    replica: str,
    exclude: Sequence[uuid.UUID] = (),
) -> Decision | None:
    """Decide one scheduled time: fire it, or skip it for overlap; None when it was decided
    already. `exclude`: executions this catch-up just started, which do not count as overlap.

    A start `Starts` refuses (the workflow was archived meanwhile, the payload is too big)
    is recorded `failed` with the reason; database errors propagate (nothing was written)."""
    (decision,) = await fire_many(
        db, starts, [(trigger, scheduled_at)], replica=replica, exclude=exclude
    )
    return decision


async def fire_many(
    db: Database,
    starts: Starts,
    due: Sequence[tuple[TriggerRow, datetime]],
    *,
    replica: str,
    exclude: Sequence[uuid.UUID] = (),
) -> list[Decision | None]:
    """`fire` for many scheduled times in one transaction of a few statements (a burst: many
    schedules due at the same second): the claims, the overlap look-up, the starts and the
    outcomes each go as one statement. Returns each time's decision, in order (None: decided
    already). A database error propagates and writes nothing: fire them one by one then."""
    decisions: list[Decision | None] = [None] * len(due)
    async with db.transaction() as conn:
        claimed = await triggers.claim_fires(conn, due, replica)

        def key(trigger: TriggerRow, at: datetime) -> tuple[str, str, str, datetime]:
            return (trigger.tenant, trigger.workflow_id, trigger.trigger_id, at)

        mine = [(i, t, at) for i, (t, at) in enumerate(due) if key(t, at) in claimed]
        watched = [t for _, t, _ in mine if t.config.get("overlap", "skip") != "allow"]
        running = await triggers.running_for(conn, watched, exclude)
        settled: list[triggers.Settled] = []
        starting: list[tuple[int, TriggerRow, datetime, list[uuid.UUID]]] = []
        reason: str | None
        for index, trigger, at in mine:
            fire_id = claimed[key(trigger, at)]
            previous = running.get((trigger.tenant, trigger.workflow_id, trigger.trigger_id), [])
            if previous and trigger.config.get("overlap", "skip") == "skip":
                reason = f"overlap: skip; execution {previous[-1]} of this trigger is still running"
                settled.append(triggers.Settled(trigger, fire_id, at, "skipped", reason))
                decisions[index] = Decision("skipped", None, reason)
                continue
            for execution_id in previous:  # cancelPrevious
                await request_cancel_in(conn, trigger.tenant, execution_id)
            starting.append((index, trigger, at, previous))
        started = await starts.start_many(
            [_start_request(trigger, at) for _, trigger, at, _ in starting], conn=conn
        )
        for (index, trigger, at, previous), result in zip(starting, started, strict=True):
            fire_id = claimed[key(trigger, at)]
            if isinstance(result, Exception):
                reason = f"the execution could not start: {result}"
                settled.append(triggers.Settled(trigger, fire_id, at, "failed", reason))
                decisions[index] = Decision("failed", None, reason)
                continue
            row, created = result
            reason = None
            if previous:
                reason = f"overlap: cancelPrevious; cancelled {', '.join(map(str, previous))}"
            if not created:
                reason = "its request id had already started this execution"
            settled.append(
                triggers.Settled(trigger, fire_id, at, "fired", reason, row.execution_id)
            )
            decisions[index] = Decision("fired", row.execution_id, reason)
        await triggers.settle_fires(conn, settled)
    return decisions


def _start_request(trigger: TriggerRow, scheduled_at: datetime) -> StartRequest:
    """The start of a schedule's fire: its payload, as its trigger, at the scheduled time."""
    return StartRequest(
        workflow_id=trigger.workflow_id,
        trigger=trigger.config.get("payload") or {},
        trigger_type="schedule",
        trigger_id=trigger.trigger_id,
        request_id=request_id(trigger.trigger_id, scheduled_at),
        principal=principal(trigger.trigger_id),
        tenant=trigger.tenant,
        fired_at=scheduled_at,
    )


async def miss(db: Database, trigger: TriggerRow, missed: Missed, *, replica: str) -> bool:
    """Record scheduled times that will not run (late past the grace, or not caught up); False
    when that time was decided already."""
    async with db.transaction() as conn:
        return await triggers.record_missed(
            conn, trigger, missed.last, missed.reason, replica,
            first_scheduled_at=missed.first, fires=missed.count,
        )  # fmt: skip
