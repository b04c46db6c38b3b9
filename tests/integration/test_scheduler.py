"""Schedules in process on a real Postgres (SPEC §5): one decision per scheduled time across
schedulers, overlap skip and cancelPrevious, a malformed cron reported on its row, the DST
nights fired through the real fire path, and the fire log."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runner.daemon import Daemon
from runner.settings import Settings
from runner.store import triggers
from runner.triggers import catchup, fire
from runner.triggers.cron import FireTimes
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
async def daemon(db, fast) -> AsyncIterator[Daemon]:
    """A Daemon on `fast` settings (in place of conftest's on the plain ones)."""
    async with Daemon(fast, database=db) as opened:
        yield opened


async def record(daemon: Daemon, definition: dict[str, Any], **version: Any) -> None:
    """Record a workflow version as the API does."""
    await daemon.versions.record(
        definition, tenant=daemon.settings.tenant, source_kind="api", **version
    )


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


async def test_two_schedulers_fire_each_scheduled_time_exactly_once(db, fast, daemon, running):
    await record(daemon, flow("w", every_second(overlap="allow")))

    async def four() -> list[dict[str, Any]]:
        found = await fires_of(db, "w")
        return found if len(found) >= 4 else []

    # Two replicas: two processes, each its own Daemon (and replica name).
    async with Daemon(fast, database=db) as one, Daemon(fast, database=db) as two:
        for replica in (one, two):
            running.add(replica.scheduler())
        await until(four, 15, "four fires")
        await running.close()
        replicas = {one.replica, two.replica}
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
    assert {f["replica"] for f in found} <= replicas
    assert max(f["decided_at"] - f["scheduled_at"] for f in found) < timedelta(seconds=2)


async def test_overlap_skip_records_each_skipped_time_with_the_running_execution(
    db, fast, daemon, running
):
    await record(daemon, flow("w", every_second()))  # overlap: skip
    running.add(daemon.scheduler())  # no worker: the first run stays Pending

    async def three() -> list[dict[str, Any]]:
        found = await fires_of(db, "w")
        return found if len(found) >= 3 else []

    found = await until(three, 15, "three fires")
    first, *rest = found
    assert first["outcome"] == "fired"
    assert [f["outcome"] for f in rest] == ["skipped"] * len(rest)
    assert all(str(first["execution_id"]) in f["reason"] for f in rest)
    assert len(await rows(db, "SELECT 1 FROM workflow_executions WHERE workflow_id = 'w'")) == 1


async def test_overlap_cancel_previous_cancels_the_run_still_going(db, fast, daemon, running):
    await record(daemon, flow("w", every_second(overlap="cancelPrevious"), node=SLOW))
    running.add(daemon.worker())
    running.add(daemon.scheduler())

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
    db, fast, daemon, running
):
    # Recorded without lint (as a definition written straight into the store could be).
    bad = {"id": "bad", "type": "schedule", "cron": "61 * * * *"}
    await record(daemon, flow("w", bad, every_second("good", overlap="allow")))
    running.add(daemon.scheduler())

    async def reported() -> list[dict[str, Any]]:
        return await rows(
            db, "SELECT * FROM workflow_triggers WHERE trigger_id = 'bad' AND status = 'error'"
        )

    [row] = await until(reported, 10, "the bad trigger's status")
    assert "61" in row["status_message"] and "minute" in row["status_message"]

    async def good_fired() -> list[dict[str, Any]]:
        return [f for f in await fires_of(db, "w") if f["trigger_id"] == "good"]

    await until(good_fired, 10, "the good trigger to fire")


async def test_concurrent_fires_of_one_time_start_one_execution(db, daemon):
    await record(daemon, flow("w", every_second(overlap="allow")))
    async with db.connection() as conn:
        [row] = await triggers.for_workflow(conn, "default", "w")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    decisions = await asyncio.gather(
        *(fire.fire(db, daemon.starts, row, at, replica=f"r{k}") for k in range(6))
    )
    decided = [d for d in decisions if d is not None]
    assert len(decided) == 1 and decided[0].outcome == "fired"
    executions = await rows(db, "SELECT request_id FROM workflow_executions")
    assert [e["request_id"] for e in executions] == ["schedule:tick:2026-01-01T00:00:00Z"]


async def test_a_burst_is_decided_in_one_batch_with_each_policy_and_refusal(db, daemon):
    # Four schedules due at the same second: one free, one whose previous run still runs
    # (overlap skip), one decided already by another replica, one whose workflow is archived.
    await record(daemon, flow("free", every_second(overlap="allow")))
    await record(daemon, flow("busy", every_second(), node=SLOW))
    await record(daemon, flow("taken", every_second(overlap="allow")))
    await record(daemon, flow("gone", every_second(overlap="allow")))
    async with db.connection() as conn:
        rows_of = {w: (await triggers.for_workflow(conn, "default", w))[0]
                   for w in ("free", "busy", "taken", "gone")}  # fmt: skip
    earlier, at = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    busy_earlier = await fire.fire(db, daemon.starts, rows_of["busy"], earlier, replica="r0")
    assert busy_earlier is not None and busy_earlier.outcome == "fired"
    assert await fire.fire(db, daemon.starts, rows_of["taken"], at, replica="r0") is not None
    # Archived after this process last saw it Active: the batch's statement notices.
    async with Daemon(daemon.settings, database=db) as other:
        await record(other, flow("gone", every_second(overlap="allow")), status="Archived")
    due = [(rows_of[w], at) for w in ("free", "busy", "taken", "gone")]
    decisions = await fire.fire_many(db, daemon.starts, due, replica="r1")
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
    db, daemon, zone, cron, start, expected
):
    schedule = {"id": "nightly", "type": "schedule", "cron": cron, "timezone": zone,
                "overlap": "allow"}  # fmt: skip
    await record(daemon, flow("w", schedule))
    async with db.connection() as conn:
        [row] = await triggers.for_workflow(conn, "default", "w")
    times = list(FireTimes(cron, zone).between(start, start + timedelta(days=3), 10))
    # Every replica fires every time (twice here), the way three replicas would.
    for at in times + times:
        await fire.fire(db, daemon.starts, row, at, replica="r")
    executions = await rows(db, "SELECT request_id FROM workflow_executions ORDER BY request_id")
    assert [e["request_id"] for e in executions] == [f"schedule:nightly:{t}" for t in expected]


async def test_catch_up_on_load_fires_per_policy_and_logs_the_missed_times(db, fast, daemon):
    policies = {"none": "none", "latest": "latest", "all": "all"}
    schedules = [every_second(f"c-{p}", catchup=p, overlap="allow", misfireGraceTime="1s")
                 for p in policies]  # fmt: skip
    await record(daemon, flow("w", *schedules))
    # As if every replica had been down for the last ten seconds.
    down_since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE workflow_triggers SET last_fired_at = %s, active_since = %s",
            (down_since, down_since - timedelta(hours=1)),
        )
    # The catch-up decides every scheduled time up to the scheduler's load, which is after this.
    loaded_after = datetime.now(UTC)
    owed = [down_since + timedelta(seconds=k)
            for k in range(1, int((loaded_after - down_since).total_seconds()) + 1)]  # fmt: skip

    def decided(found: list[dict[str, Any]], trigger_id: str) -> list[dict[str, Any]]:
        return [f for f in found if f["trigger_id"] == trigger_id]

    def covered(decisions: list[dict[str, Any]]) -> list[datetime]:
        """The scheduled times `decisions` decided: each fired one, and each missed range."""
        times: list[datetime] = []
        for f in decisions:
            first = f["first_scheduled_at"] or f["scheduled_at"]
            times += [first + timedelta(seconds=k) for k in range(f["fires"])]
        return times

    stop = asyncio.Event()
    task = asyncio.create_task(daemon.scheduler().run(stop))
    try:

        async def caught_up() -> bool:
            found = await fires_of(db, "w")
            return all(set(owed) <= set(covered(decided(found, f"c-{p}"))) for p in policies)

        await until(caught_up, 10, "every schedule caught up")
    finally:
        stop.set()
        await task
    found = await fires_of(db, "w")

    for policy in policies:
        # Every second since the outage began is decided exactly once: fired, or in a range.
        times = covered(decided(found, f"c-{policy}"))
        last = max(times)
        span = int((last - down_since).total_seconds())
        assert sorted(times) == [down_since + timedelta(seconds=k) for k in range(1, span + 1)]
    missed = {
        p: [f for f in decided(found, f"c-{p}") if f["outcome"] == "missed"] for p in policies
    }
    assert missed["all"] == []
    [none] = missed["none"]
    assert none["fires"] >= 7 and "catchup: none" in none["reason"]
    [latest] = missed["latest"]
    assert latest["fires"] >= 6 and "catchup: latest" in latest["reason"]
    # `latest` fired the newest missed time, right after the range it dropped.
    fired = [f["scheduled_at"] for f in decided(found, "c-latest") if f["outcome"] == "fired"]
    assert fired[0] == latest["scheduled_at"] + timedelta(seconds=1)


async def test_the_fire_log_and_next_fires_through_the_store(db, daemon):
    await record(daemon, flow("w", every_second(overlap="allow")))
    async with db.connection() as conn:
        [row] = await triggers.for_workflow(conn, "default", "w")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for k in range(3):
        await fire.fire(db, daemon.starts, row, base + timedelta(seconds=k), replica="r")
    late = base + timedelta(seconds=3)
    await fire.miss(db, row, catchup.Missed(late, late, 1, "late"), replica="r")
    async with db.connection() as conn:
        newest = await triggers.history(conn, "default", "w", limit=2)
        older = await triggers.history(conn, "default", "w", limit=10, before=newest[-1].fire_id)
        last = await triggers.last_fires(conn, "default", "w", per_trigger=2)
    assert [f.outcome for f in newest] == ["missed", "fired"]
    assert len(older) == 2 and all(f.fire_id < newest[-1].fire_id for f in older)
    assert [f.fire_id for f in last["tick"]] == [f.fire_id for f in newest]
    assert isinstance(newest[1].execution_id, uuid.UUID)
