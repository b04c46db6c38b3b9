"""Schedules in process on a real Postgres (SPEC §5): one decision per scheduled time across
schedulers, overlap skip and cancelPrevious, a malformed cron reported on its row, the DST
nights fired through the real fire path, and the fire log."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runner.engine.conductor import Conductor
from runner.engine.worker import Worker
from runner.settings import Settings
from runner.store import triggers
from runner.triggers import fire
from runner.triggers.cron import FireTimes
from runner.triggers.scheduler import Scheduler
from tests.waiting import until

pytestmark = pytest.mark.anyio


def flow(workflow_id: str, *schedule: dict[str, Any], node: dict[str, Any] | None = None):
    return {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": workflow_id,
        "status": "active",
        "startNode": "a",
        "triggers": list(schedule),
        "nodes": [node or {"id": "a", "actionType": "core.echo", "parameters": {"message": "hi"}}],
    }


def every_second(trigger_id: str = "tick", **extra: Any) -> dict[str, Any]:
    return {"id": trigger_id, "type": "schedule", "cron": "* * * * * *"} | extra


SLOW = {"id": "a", "actionType": "core.delay", "parameters": {"duration": "30s"}}


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return replace(
        settings, scheduler_poll_seconds=0.5, poll_seconds=0.1, shutdown_grace_seconds=0.2
    )


@pytest.fixture
async def conductor(db, fast) -> Conductor:
    return Conductor(db, fast)


async def rows(db, query: str, *params: Any) -> list[dict[str, Any]]:
    async with db.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


class Running:
    """Schedulers (and workers) running in this process until the test ends."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def add(self, runner: Any) -> Any:
        self.tasks.append(asyncio.create_task(runner.run(self.stop)))
        return runner

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)


@pytest.fixture
async def running():
    group = Running()
    try:
        yield group
    finally:
        await group.close()


async def fires_of(db, workflow_id: str) -> list[dict[str, Any]]:
    return await rows(
        db, "SELECT * FROM trigger_fires WHERE workflow_id = %s ORDER BY scheduled_at", workflow_id
    )


async def test_two_schedulers_fire_each_scheduled_time_exactly_once(db, fast, conductor, running):
    await conductor.register(flow("w", every_second(overlap="allow")), source_kind="api")
    for name in ("replica-a", "replica-b"):
        running.add(Scheduler(db, Conductor(db, fast), fast, replica=name))

    async def four() -> list[dict[str, Any]]:
        found = await fires_of(db, "w")
        return found if len(found) >= 4 else []

    await until(four, 15, "four fires")
    await running.close()
    found = await fires_of(db, "w")
    executions = await rows(
        db, "SELECT request_id, event FROM workflow_executions WHERE workflow_id = 'w'"
    )
    times = [f["scheduled_at"] for f in found]
    assert all(f["outcome"] == "fired" for f in found)
    # One execution per scheduled time, named by it, none in between skipped.
    assert sorted(e["request_id"] for e in executions) == [
        fire.request_id("tick", t) for t in times
    ]
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(times))
    assert {e["event"]["firedAt"] for e in executions} == {t.isoformat() for t in times}
    [trigger] = await rows(db, "SELECT * FROM workflow_triggers WHERE workflow_id = 'w'")
    assert trigger["last_fired_at"] == times[-1]
    # Each fire was reported by whichever replica decided it; lag stays well under the grace.
    assert {f["replica"] for f in found} <= {"replica-a", "replica-b"}
    assert max(f["decided_at"] - f["scheduled_at"] for f in found) < timedelta(seconds=2)


async def test_overlap_skip_records_each_skipped_time_with_the_running_execution(
    db, fast, conductor, running
):
    await conductor.register(flow("w", every_second()), source_kind="api")  # overlap: skip
    running.add(Scheduler(db, conductor, fast))  # no worker: the first run stays Pending

    async def three() -> list[dict[str, Any]]:
        found = await fires_of(db, "w")
        return found if len(found) >= 3 else []

    found = await until(three, 15, "three fires")
    first, *rest = found
    assert first["outcome"] == "fired"
    assert [f["outcome"] for f in rest] == ["skipped"] * len(rest)
    assert all(str(first["execution_id"]) in f["reason"] for f in rest)
    assert len(await rows(db, "SELECT 1 FROM workflow_executions WHERE workflow_id = 'w'")) == 1


async def test_overlap_cancel_previous_cancels_the_run_still_going(db, fast, conductor, running):
    await conductor.register(
        flow("w", every_second(overlap="cancelPrevious"), node=SLOW), source_kind="api"
    )
    running.add(Worker(conductor, fast))
    running.add(Scheduler(db, conductor, fast))

    async def cancelled() -> list[dict[str, Any]]:
        return await rows(
            db,
            "SELECT execution_id FROM workflow_executions"
            " WHERE workflow_id = 'w' AND status = 'Cancelled'",
        )

    [first, *_] = await until(cancelled, 15, "a run cancelled by the next fire")
    named = str(first["execution_id"])
    cancelling = [f for f in await fires_of(db, "w") if f["reason"] and named in f["reason"]]
    assert cancelling and cancelling[0]["outcome"] == "fired"
    assert "cancelPrevious" in cancelling[0]["reason"]


async def test_a_malformed_cron_is_reported_on_its_row_and_the_others_still_fire(
    db, fast, conductor, running
):
    # Recorded without lint (as a definition written straight into the store could be).
    bad = {"id": "bad", "type": "schedule", "cron": "61 * * * *"}
    await conductor.register(flow("w", bad, every_second("good", overlap="allow")),
                             source_kind="api")  # fmt: skip
    running.add(Scheduler(db, conductor, fast))

    async def reported() -> list[dict[str, Any]]:
        return await rows(
            db, "SELECT * FROM workflow_triggers WHERE trigger_id = 'bad' AND status = 'error'"
        )

    [row] = await until(reported, 10, "the bad trigger's status")
    assert "61" in row["status_message"] and "minute" in row["status_message"]

    async def good_fired() -> list[dict[str, Any]]:
        return [f for f in await fires_of(db, "w") if f["trigger_id"] == "good"]

    await until(good_fired, 10, "the good trigger to fire")


async def test_concurrent_fires_of_one_time_start_one_execution(db, conductor):
    await conductor.register(flow("w", every_second(overlap="allow")), source_kind="api")
    async with db.connection() as conn:
        [row] = await triggers.for_workflow(conn, "default", "w")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    decisions = await asyncio.gather(
        *(fire.fire(db, conductor, row, at, replica=f"r{k}") for k in range(6))
    )
    decided = [d for d in decisions if d is not None]
    assert len(decided) == 1 and decided[0].outcome == "fired"
    executions = await rows(db, "SELECT request_id FROM workflow_executions")
    assert [e["request_id"] for e in executions] == ["schedule:tick:2026-01-01T00:00:00Z"]


async def test_a_burst_is_decided_in_one_batch_with_each_policy_and_refusal(db, conductor):
    # Four schedules due at the same second: one free, one whose previous run still runs
    # (overlap skip), one decided already by another replica, one whose workflow is archived.
    await conductor.register(flow("free", every_second(overlap="allow")), source_kind="api")
    await conductor.register(flow("busy", every_second(), node=SLOW), source_kind="api")
    await conductor.register(flow("taken", every_second(overlap="allow")), source_kind="api")
    await conductor.register(flow("gone", every_second(overlap="allow")), source_kind="api")
    async with db.connection() as conn:
        rows_of = {w: (await triggers.for_workflow(conn, "default", w))[0]
                   for w in ("free", "busy", "taken", "gone")}  # fmt: skip
    earlier, at = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert (await fire.fire(db, conductor, rows_of["busy"], earlier, replica="r0")).outcome == (
        "fired"
    )
    assert await fire.fire(db, conductor, rows_of["taken"], at, replica="r0") is not None
    # Archived after this process last saw it Active: the batch's statement notices.
    await Conductor(db, conductor.settings).register(
        flow("gone", every_second(overlap="allow")), source_kind="api", status="Archived"
    )
    due = [(rows_of[w], at) for w in ("free", "busy", "taken", "gone")]
    decisions = await fire.fire_many(db, conductor, due, replica="r1")
    free, busy, taken, gone = decisions
    assert free is not None and free.outcome == "fired" and free.execution_id is not None
    assert busy is not None and busy.outcome == "skipped" and "still running" in str(busy.reason)
    assert taken is None
    assert gone is not None and gone.outcome == "failed" and "Archived" in str(gone.reason)
    log = await rows(
        db,
        "SELECT workflow_id, outcome, replica FROM trigger_fires WHERE scheduled_at = %s"
        " ORDER BY workflow_id",
        at,
    )
    assert [(r["workflow_id"], r["outcome"], r["replica"]) for r in log] == [
        ("busy", "skipped", "r1"), ("free", "fired", "r1"), ("gone", "failed", "r1"),
        ("taken", "fired", "r0"),
    ]  # fmt: skip
    started = await rows(
        db, "SELECT request_id FROM workflow_executions WHERE workflow_id = 'free'"
    )
    assert [r["request_id"] for r in started] == ["schedule:tick:2026-01-01T00:00:01Z"]
    cursors = await rows(db, "SELECT workflow_id, last_fired_at FROM workflow_triggers")
    assert {r["workflow_id"]: r["last_fired_at"] for r in cursors}["free"] == at


@pytest.mark.parametrize(
    ("zone", "cron", "start", "expected"),
    [
        # Berlin, spring: 02:30 does not exist on 29 March; it fires once at 03:00 CEST.
        ("Europe/Berlin", "30 2 * * *", datetime(2026, 3, 27, 12, tzinfo=UTC),
         ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]),
        # Berlin, autumn: 02:30 happens twice on 25 October; it fires at the first (CEST).
        ("Europe/Berlin", "30 2 * * *", datetime(2026, 10, 23, 12, tzinfo=UTC),
         ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
        # New York, spring: 02:30 does not exist on 8 March: once at 03:00 EDT.
        ("America/New_York", "30 2 * * *", datetime(2026, 3, 6, 12, tzinfo=UTC),
         ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]),
        # New York, autumn: 01:30 happens twice on 1 November: once, at 01:30 EDT.
        ("America/New_York", "30 1 * * *", datetime(2026, 10, 30, 12, tzinfo=UTC),
         ["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]),
    ],
)  # fmt: skip
async def test_dst_nights_start_one_execution_per_wall_clock_time(  # noqa: PLR0917
    db, conductor, zone, cron, start, expected
):
    schedule = {"id": "nightly", "type": "schedule", "cron": cron, "timezone": zone,
                "overlap": "allow"}  # fmt: skip
    await conductor.register(flow("w", schedule), source_kind="api")
    async with db.connection() as conn:
        [row] = await triggers.for_workflow(conn, "default", "w")
    times = list(FireTimes(cron, zone).between(start, start + timedelta(days=3), 10))
    # Every replica fires every time (twice here), the way three replicas would.
    for at in times + times:
        await fire.fire(db, conductor, row, at, replica="r")
    executions = await rows(db, "SELECT request_id FROM workflow_executions ORDER BY request_id")
    assert [e["request_id"] for e in executions] == [f"schedule:nightly:{t}" for t in expected]


async def test_catch_up_on_load_fires_per_policy_and_logs_the_missed_times(db, fast, conductor):
    policies = {"none": "none", "latest": "latest", "all": "all"}
    schedules = [every_second(f"c-{p}", catchup=p, overlap="allow", misfireGraceTime="1s")
                 for p in policies]  # fmt: skip
    await conductor.register(flow("w", *schedules), source_kind="api")
    # As if every replica had been down for the last ten seconds.
    down_since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE workflow_triggers SET last_fired_at = %s, active_since = %s",
            (down_since, down_since - timedelta(hours=1)),
        )
    scheduler = Scheduler(db, conductor, fast, replica="r")
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:

        async def caught_up() -> bool:
            found = await fires_of(db, "w")
            # Fires at or before the outage's end: those the catch-up decided.
            return {f["trigger_id"] for f in found} == {f"c-{p}" for p in policies}

        await until(caught_up, 10, "every schedule caught up")
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await task
    found = await fires_of(db, "w")

    def decided(trigger_id: str) -> list[dict[str, Any]]:
        return [f for f in found if f["trigger_id"] == trigger_id]

    for policy in policies:
        rows_ = decided(f"c-{policy}")
        # Every second since the outage began is decided exactly once: fired, or in a range.
        covered: list[datetime] = []
        for f in rows_:
            first = f["first_scheduled_at"] or f["scheduled_at"]
            covered += [first + timedelta(seconds=k) for k in range(f["fires"])]
        last = max(covered)
        span = int((last - down_since).total_seconds())
        assert sorted(covered) == [down_since + timedelta(seconds=k) for k in range(1, span + 1)]
    missed = {p: [f for f in decided(f"c-{p}") if f["outcome"] == "missed"] for p in policies}
    assert missed["all"] == []
    [none] = missed["none"]
    assert none["fires"] >= 7 and "catchup: none" in none["reason"]
    [latest] = missed["latest"]
    assert latest["fires"] >= 6 and "catchup: latest" in latest["reason"]
    # `latest` fired the newest missed time, right after the range it dropped.
    fired = [f["scheduled_at"] for f in decided("c-latest") if f["outcome"] == "fired"]
    assert fired[0] == latest["scheduled_at"] + timedelta(seconds=1)


async def test_the_fire_log_and_next_fires_through_the_store(db, conductor):
    await conductor.register(flow("w", every_second(overlap="allow")), source_kind="api")
    async with db.connection() as conn:
        [row] = await triggers.for_workflow(conn, "default", "w")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for k in range(3):
        await fire.fire(db, conductor, row, base + timedelta(seconds=k), replica="r")
    await fire.miss(db, row, base + timedelta(seconds=3), "late", replica="r")
    async with db.connection() as conn:
        newest = await triggers.history(conn, "default", "w", limit=2)
        older = await triggers.history(conn, "default", "w", limit=10, before=newest[-1].fire_id)
        last = await triggers.last_fires(conn, "default", "w", per_trigger=2)
    assert [f.outcome for f in newest] == ["missed", "fired"]
    assert len(older) == 2 and all(f.fire_id < newest[-1].fire_id for f in older)
    assert [f.fire_id for f in last["tick"]] == [f.fire_id for f in newest]
    assert isinstance(newest[1].execution_id, uuid.UUID)
