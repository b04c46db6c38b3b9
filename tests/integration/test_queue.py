"""SPEC §8 in-process on a real Postgres: the outbox, SKIP LOCKED claims, leases and their
fence, release, dead letters, orphan rows, the sweep, NOTIFY."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import pytest
from structlog.testing import capture_logs

from runner.daemon import Daemon
from runner.engine.requests import StartRequest
from runner.errors import Conflict, LeaseLost
from runner.store import batch as batch_store
from runner.store import queue
from runner.store.batch import Batch, Lease
from tests.waiting import until

pytestmark = pytest.mark.anyio

FLOW = {
    "apiVersion": "dataworkflows/v1",
    "kind": "Workflow",
    "id": "q",
    "status": "active",
    "startNode": "a",
    "nodes": [{"id": "a", "actionType": "core.echo", "parameters": {"message": "hi"}}],
}


async def record(daemon: Daemon, definition: dict[str, Any], **version: Any) -> None:
    """Record a version of a local file's workflow."""
    await daemon.versions.record(
        definition, tenant=daemon.settings.tenant, source_kind="local", **version
    )


@pytest.fixture
async def daemon(daemon: Daemon) -> Daemon:
    """The test's Daemon (conftest), with FLOW recorded."""
    await record(daemon, FLOW)
    return daemon


async def start(daemon: Daemon, **request: Any) -> uuid.UUID:
    row, created = await daemon.starts.start(StartRequest(workflow_id="q", **request))
    assert created
    return row.execution_id


async def rows(db, query: str, *params: Any) -> list[dict[str, Any]]:
    async with db.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


async def queued(db, execution_id: uuid.UUID) -> dict[str, Any] | None:
    found = await rows(db, "SELECT * FROM execution_queue WHERE execution_id = %s", execution_id)
    return found[0] if found else None


async def claim(db, owner: str, limit: int = 10, lease: float = 30.0, **kw: Any) -> list:
    async with db.connection() as conn:
        return await queue.claim(conn, owner, limit, lease, **kw)


async def lease_expired(db, execution_id: uuid.UUID) -> None:
    """Wait until the lease has run out by the database's clock (the one claims use)."""

    async def expired() -> bool:
        found = await rows(
            db,
            "SELECT lease_expires_at < now() AS expired FROM execution_queue"
            " WHERE execution_id = %s",
            execution_id,
        )
        return bool(found and found[0]["expired"])

    await until(expired, 5, "the lease to expire")


async def test_a_start_writes_the_execution_and_its_queue_row_together(db, daemon):
    execution_id = await start(daemon)
    row = await queued(db, execution_id)
    assert row is not None
    assert (row["status"], row["lease_owner"], row["deliveries"]) == ("ready", None, 0)
    found = await rows(db, "SELECT status FROM workflow_executions")
    assert found == [{"status": "Pending"}]


async def test_a_start_that_rolls_back_leaves_neither_row_nor_a_notification(db, daemon):
    async with db.listener(queue.QUEUE_CHANNEL) as listener:
        # A start inside a caller's transaction (a trigger fire's) that then fails.
        with pytest.raises(RuntimeError, match="after enqueueing"):
            async with db.transaction() as conn:
                await daemon.starts.start(StartRequest(workflow_id="q"), conn=conn)
                raise RuntimeError("the caller failed after enqueueing")
        assert await rows(db, "SELECT * FROM workflow_executions") == []
        assert await rows(db, "SELECT * FROM execution_queue") == []
        assert await rows(db, "SELECT * FROM execution_events") == []
        # NOTIFY is transactional too: the rolled-back start told no worker anything.
        heard = [n async for n in listener.notifies(timeout=0.3)]
        assert heard == []
        execution_id = await start(daemon)
        heard = [n async for n in listener.notifies(timeout=2, stop_after=1)]
    assert [(n.channel, n.payload) for n in heard] == [(queue.QUEUE_CHANNEL, "")]
    assert await queued(db, execution_id) is not None


async def test_a_start_sees_changes_another_process_made_since_its_last_start(db, settings, daemon):
    # `daemon` remembers the workflow as Active at version 1 after its first start.
    first = await daemon.starts.start(StartRequest(workflow_id="q"))
    assert first[0].workflow_version == 1
    # Another process: publishes version 2, then archives.
    async with Daemon(settings, database=db) as other:
        await record(other, FLOW | {"description": "v2"})
        second, _ = await daemon.starts.start(StartRequest(workflow_id="q"))
        assert second.workflow_version == 2
        await record(other, FLOW | {"description": "v2"}, status="Archived")
    with pytest.raises(Conflict, match="'q' is Archived; only Active workflows start"):
        await daemon.starts.start(StartRequest(workflow_id="q"))
    # Nothing was written for the refused start.
    assert len(await rows(db, "SELECT 1 FROM workflow_executions")) == 2
    assert len(await rows(db, "SELECT 1 FROM execution_queue")) == 2
    # A repeated request id still finds its execution, whatever the workflow became since.
    again, created = await daemon.starts.start(
        StartRequest(workflow_id="q", request_id=first[0].request_id)
    )
    assert (again.execution_id, created) == (first[0].execution_id, False)


async def test_notify_reaches_a_listener_for_starts_and_cancels(db, daemon):
    async with db.listener(queue.QUEUE_CHANNEL, queue.CANCEL_CHANNEL) as listener:
        execution_id = await start(daemon)
        started = [n async for n in listener.notifies(timeout=2, stop_after=1)]
        await daemon.conductor.cancel("default", execution_id)
        cancelled = [n async for n in listener.notifies(timeout=2, stop_after=2)]
    assert [(n.channel, n.payload) for n in started] == [(queue.QUEUE_CHANNEL, "")]
    assert sorted((n.channel, n.payload) for n in cancelled) == [
        (queue.CANCEL_CHANNEL, str(execution_id)),
        (queue.QUEUE_CHANNEL, ""),
    ]


async def test_concurrent_claims_take_each_row_exactly_once(db, daemon):
    ids = {await start(daemon) for _ in range(60)}
    go = asyncio.Event()

    async def claimer(owner: str) -> list[uuid.UUID]:
        got: list[uuid.UUID] = []
        await go.wait()
        while True:
            claims = await claim(db, owner, limit=3)
            got += [c.execution_id for c in claims]
            if not claims:
                # SKIP LOCKED passes over rows another claimer is taking: stop only when none
                # is left ready.
                left = await rows(db, "SELECT 1 FROM execution_queue WHERE status = 'ready'")
                if not left:
                    return got

    tasks = [asyncio.create_task(claimer(f"owner-{i}")) for i in range(8)]
    go.set()
    results = await asyncio.gather(*tasks)
    every = [execution_id for got in results for execution_id in got]
    assert len(every) == len(set(every)) == 60
    assert set(every) == ids
    assert sum(1 for got in results if got) > 1, "the claimers did not overlap"
    held = await rows(db, "SELECT execution_id, lease_owner, deliveries FROM execution_queue")
    owner_of = {execution_id: f"owner-{i}" for i, got in enumerate(results) for execution_id in got}
    assert {r["execution_id"]: r["lease_owner"] for r in held} == owner_of
    assert {r["deliveries"] for r in held} == {1}


async def test_an_expired_lease_is_claimed_again_and_counts_a_delivery(db, daemon):
    execution_id = await start(daemon)
    [first] = await claim(db, "a", lease=0.3)
    assert (first.execution_id, first.deliveries) == (execution_id, 1)
    assert await claim(db, "b") == []  # held, not expired
    await lease_expired(db, execution_id)
    [second] = await claim(db, "b")
    assert (second.execution_id, second.deliveries) == (execution_id, 2)
    assert second.epoch == first.epoch + 1  # a new fencing token
    row = await queued(db, execution_id)
    assert row is not None and row["lease_owner"] == "b"
    async with db.connection() as conn:  # a no longer holds it
        assert await queue.renew(conn, "a", 30, {execution_id: first.epoch}) == set()


async def test_renew_extends_only_the_owners_leases(db, daemon):
    mine, theirs = await start(daemon), await start(daemon)
    await claim(db, "me", limit=1, lease=5)
    await claim(db, "them", limit=1, lease=5)
    before = {r["execution_id"]: r for r in await rows(db, "SELECT * FROM execution_queue")}
    if before[mine]["lease_owner"] != "me":
        mine, theirs = theirs, mine
    async with db.connection() as conn:
        held = await queue.renew(conn, "me", 60, {mine: 1, theirs: 1})
    after = {r["execution_id"]: r for r in await rows(db, "SELECT * FROM execution_queue")}
    assert held == {mine}
    gained = after[mine]["lease_expires_at"] - before[mine]["lease_expires_at"]
    assert gained.total_seconds() > 50
    assert after[theirs] == before[theirs]


async def test_renew_leaves_leases_the_worker_no_longer_runs_to_expire(db, daemon):
    running, forgotten = await start(daemon), await start(daemon)
    await claim(db, "me", limit=2, lease=5)
    async with db.connection() as conn:
        held = await queue.renew(conn, "me", 60, {running: 1})
    after = {r["execution_id"]: r for r in await rows(db, "SELECT * FROM execution_queue")}
    assert held == {running}
    assert after[forgotten]["lease_expires_at"] < after[running]["lease_expires_at"]


async def test_the_fence_refuses_every_write_of_a_worker_that_lost_its_lease(db, daemon):
    execution_id = await start(daemon)
    await claim(db, "old", lease=0.2)
    await lease_expired(db, execution_id)
    await claim(db, "new")
    events_before = await rows(db, "SELECT * FROM execution_events ORDER BY event_id")

    stale = Batch("default", execution_id, lease=Lease("old", 1))
    stale.start_execution({"from": "old"})
    stale.start_attempt("a", 1, "core.echo", {})
    stale.finish_execution("Succeeded", outputs={"by": "old"})
    async with db.connection() as conn:
        with pytest.raises(LeaseLost, match="nothing was written"):
            await batch_store.commit(conn, stale)
    # Not one statement of the batch went through, the queue row's delete included.
    assert await rows(db, "SELECT status, vars, outputs FROM workflow_executions") == [
        {"status": "Pending", "vars": None, "outputs": None}
    ]
    assert await rows(db, "SELECT * FROM action_executions") == []
    assert await rows(db, "SELECT * FROM execution_events ORDER BY event_id") == events_before
    row = await queued(db, execution_id)
    assert row is not None and row["lease_owner"] == "new"

    # The lease holder writes; once its execution ended, even it is refused.
    current = Batch("default", execution_id, lease=Lease("new", 2))
    current.start_execution({})
    current.finish_execution("Succeeded", outputs={"by": "new"})
    async with db.connection() as conn:
        await batch_store.commit(conn, current)
        late = Batch("default", execution_id, lease=Lease("new", 2))
        late.event("Late")
        with pytest.raises(LeaseLost):
            await batch_store.commit(conn, late)
    assert await rows(db, "SELECT status, outputs FROM workflow_executions") == [
        {"status": "Succeeded", "outputs": {"by": "new"}}
    ]
    assert await queued(db, execution_id) is None


async def test_an_earlier_claim_by_the_same_owner_writes_nothing(db, daemon):
    # One process cut off from the database past its lease claims the execution again: its
    # earlier conductor has the same owner name, and only the epoch tells them apart.
    execution_id = await start(daemon)
    [first] = await claim(db, "w", lease=0.2)
    await lease_expired(db, execution_id)
    [second] = await claim(db, "w")
    assert (second.owner, second.epoch) == (first.owner, first.epoch + 1)
    stale = Batch("default", execution_id, lease=first.lease)
    stale.start_attempt("a", 1, "core.echo", {})
    async with db.connection() as conn:
        with pytest.raises(LeaseLost, match=r"w \(epoch 1\)"):
            await batch_store.commit(conn, stale)
        current = Batch("default", execution_id, lease=second.lease)
        current.start_attempt("a", 2, "core.echo", {})
        await batch_store.commit(conn, current)
        assert await queue.renew(conn, "w", 30, {execution_id: first.epoch}) == set()
        assert await queue.renew(conn, "w", 30, {execution_id: second.epoch}) == {execution_id}
    assert await rows(db, "SELECT attempt FROM action_executions") == [{"attempt": 2}]


async def test_a_transition_sent_again_after_it_committed_changes_nothing(db, daemon):
    # A connection lost after COMMIT reached the server: the worker cannot know it committed
    # and sends the same transition again on a fresh connection.
    execution_id = await start(daemon)
    [held] = await claim(db, "w")
    sent = Batch("default", execution_id, lease=held.lease)
    sent.start_execution({})
    sent.start_attempt("a", 1, "core.echo", {})
    async with db.connection() as conn:
        await batch_store.commit(conn, sent)
        again = Batch("default", execution_id, lease=held.lease, seq=sent.seq)
        again.start_execution({})
        again.start_attempt("a", 1, "core.echo", {})
        await batch_store.commit(conn, again)  # no duplicate key, no second event
        later = Batch("default", execution_id, lease=held.lease)
        later.finish_attempt("a", 1, "Succeeded", {"message": "hi"})
        await batch_store.commit(conn, later)  # the next transition still goes through
    assert await rows(db, "SELECT attempt, status FROM action_executions") == [
        {"attempt": 1, "status": "Succeeded"}
    ]
    kinds = await rows(db, "SELECT kind FROM execution_events ORDER BY event_id")
    assert [k["kind"] for k in kinds] == [
        "ExecutionCreated", "ExecutionStarted", "NodeStarted"
    ]  # fmt: skip


async def test_the_last_transition_sent_again_after_it_committed_is_no_lease_lost(db, daemon):
    execution_id = await start(daemon)
    [held] = await claim(db, "w")
    sent = Batch("default", execution_id, lease=held.lease)
    sent.start_execution({})
    sent.finish_execution("Succeeded", outputs={})
    async with db.connection() as conn:
        await batch_store.commit(conn, sent)
        again = Batch("default", execution_id, lease=held.lease, seq=sent.seq)
        again.finish_execution("Succeeded", outputs={})
        await batch_store.commit(conn, again)  # the queue row is gone, yet no LeaseLost
        stale = Batch("default", execution_id, lease=held.lease)  # a new transition is refused
        stale.finish_execution("Failed")
        with pytest.raises(LeaseLost):
            await batch_store.commit(conn, stale)
    assert await rows(db, "SELECT status FROM workflow_executions") == [{"status": "Succeeded"}]


async def test_a_claim_passes_over_the_executions_the_worker_still_runs(db, daemon):
    running, other = await start(daemon), await start(daemon)
    await claim(db, "w", limit=2, lease=0.2)
    await lease_expired(db, running)
    await lease_expired(db, other)
    again = await claim(db, "w", running=[running])
    assert [c.execution_id for c in again] == [other]


async def test_a_lease_in_use_by_a_transaction_is_not_taken_even_when_expired(db, daemon):
    execution_id = await start(daemon)
    await claim(db, "old", lease=0.2)
    async with db.connection() as conn, conn.transaction():
        # The fence holds the queue row while the worker's transaction runs.
        await conn.execute("SELECT dwf_hold_lease(%s, 'old', 1, 1)", (execution_id,))
        await lease_expired(db, execution_id)
        assert await claim(db, "new") == []  # skipped, not waited for nor stolen
    [claimed] = await claim(db, "new")  # the transaction ended: the expired lease is claimable
    assert claimed.deliveries == 2


async def test_release_makes_an_execution_claimable_at_once_without_a_delivery(db, daemon):
    execution_id = await start(daemon)
    [held] = await claim(db, "a")
    async with db.connection() as conn:  # not theirs: nothing happens
        await queue.release(conn, dataclasses.replace(held, lease=Lease("someone-else", 1)))
    row = await queued(db, execution_id)
    assert row is not None and row["lease_owner"] == "a"
    async with db.connection() as conn:
        await queue.release(conn, held)
    row = await queued(db, execution_id)
    assert row is not None
    assert (row["status"], row["lease_owner"], row["deliveries"]) == ("ready", None, 0)
    [again] = await claim(db, "b")
    assert (again.execution_id, again.deliveries) == (execution_id, 1)


async def test_dead_letter_fails_the_execution_closes_attempts_and_leaves_the_queue(db, daemon):
    execution_id = await start(daemon)
    [held] = await claim(db, "w")
    opened = Batch("default", execution_id, lease=held.lease)
    opened.start_execution({})
    opened.start_attempt("a", 1, "core.echo", {})
    async with db.connection() as conn:
        await batch_store.commit(conn, opened)
        with pytest.raises(LeaseLost):  # only the lease holder may give up on it
            intruder = dataclasses.replace(held, lease=Lease("intruder", held.epoch))
            await queue.dead_letter(conn, intruder, "no")
        await queue.dead_letter(conn, held, "gave up")
    [final] = await rows(db, "SELECT status, error FROM workflow_executions")
    assert final["status"] == "Failed"
    assert final["error"] == {"type": "DeadLettered", "message": "gave up", "nodeId": None}
    [attempt] = await rows(db, "SELECT status, error_json FROM action_executions")
    assert attempt["status"] == "Failed" and attempt["error_json"]["type"] == "WorkerLost"
    letters = await rows(
        db, "SELECT execution_id, deliveries, reason, last_lease_owner FROM dead_letters"
    )
    assert letters == [
        {
            "execution_id": execution_id,
            "deliveries": 1,
            "reason": "gave up",
            "last_lease_owner": "w",
        }
    ]
    assert await queued(db, execution_id) is None


async def test_deleting_an_execution_deletes_its_queue_row(db, daemon):
    execution_id = await start(daemon)
    await claim(db, "w")
    async with db.transaction() as conn:
        await conn.execute(
            "DELETE FROM workflow_executions WHERE execution_id = %s", (execution_id,)
        )
    assert await queued(db, execution_id) is None


async def test_a_queue_row_without_its_execution_is_dropped_with_a_log_line(db, daemon, settings):
    # The foreign key makes such a row impossible in normal use; a restore of a partial dump
    # (or a future bug) could still leave one. Bypass the key to make one.
    orphan = uuid.uuid4()
    async with db.transaction() as conn:
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("INSERT INTO execution_queue (execution_id) VALUES (%s)", (orphan,))
    fast = dataclasses.replace(settings, poll_seconds=0.05, heartbeat_seconds=0.1)
    stop = asyncio.Event()
    async with Daemon(fast, database=db) as other:
        worker = other.worker(name="w")
        with capture_logs() as logs:
            task = asyncio.create_task(worker.run(stop))
            try:
                await until(lambda: _gone(db, orphan), 5, "the orphan row to be dropped")
                # Dropped, not retried: a real execution started afterwards runs normally.
                execution_id = await start(daemon)
                await until(lambda: _ended(db, execution_id), 5, "the next execution to end")
            finally:
                stop.set()
                await task
    dropped = [e for e in logs if e["event"] == "queue row without execution dropped"]
    assert [e["executionId"] for e in dropped] == [str(orphan)]


async def _gone(db, execution_id: uuid.UUID) -> bool:
    return await queued(db, execution_id) is None


async def _ended(db, execution_id: uuid.UUID) -> bool:
    found = await rows(
        db, "SELECT status FROM workflow_executions WHERE execution_id = %s", execution_id
    )
    return found[0]["status"] == "Succeeded"


async def test_a_worker_of_one_run_claims_only_that_runs_executions(db, daemon):
    mine = await start(daemon, correlation_id="run-1")
    await start(daemon, correlation_id="run-2")
    claims = await claim(db, "cli", correlation_id="run-1")
    assert [c.execution_id for c in claims] == [mine]


async def test_the_sweep_unparks_a_parent_whose_child_ended(db, daemon):
    parent = await start(daemon)
    child, _ = await daemon.starts.start(
        StartRequest(
            workflow_id="q",
            trigger_type="subworkflow",
            parent_execution_id=parent,
            parent_node_id="a",
            depth=1,
        )
    )
    [held] = await claim(db, "w", limit=1)  # the parent (enqueued first)
    parked = Batch("default", parent, lease=held.lease)
    parked.start_execution({})
    parked.start_attempt("a", 1, None, {})  # the subworkflow node, waiting for the child
    parked.park()
    async with db.connection() as conn:
        await batch_store.commit(conn, parked)
        assert await queue.sweep_waiting(conn) == 0  # the child still runs
        # The child ends without the wake-up reaching the parent (the race the sweep covers).
        await conn.execute(
            "UPDATE workflow_executions SET status = 'Succeeded', finished_at = now()"
            " WHERE execution_id = %s",
            (child.execution_id,),
        )
        await conn.commit()
        assert await queue.sweep_waiting(conn) == 1
    row = await queued(db, parent)
    assert row is not None and row["status"] == "ready"
