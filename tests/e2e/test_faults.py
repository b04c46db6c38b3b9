"""SPEC §4 under database faults, with real `dwf` processes on a real Postgres: backends
terminated under load, the database unreachable for longer than the lease (a paused network,
then a database refusing connections), the API answering through it, the scheduler across an
outage. Faults come from `tests/faults.py`: a TCP proxy the workers connect through, and the
server's own `pg_terminate_backend` and `ALLOW_CONNECTIONS`.

What must hold after every fault: each execution Succeeded, no node with two Succeeded attempts,
no attempt left Running, the queue empty.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest
from structlog.testing import capture_logs

from runner.daemon import Daemon
from runner.engine.requests import StartRequest
from tests.e2e.test_scheduler import Procs, even_seconds, fires, flow, schedule
from tests.e2e.test_scheduler import register as register_api
from tests.e2e.test_serve import free_port
from tests.e2e.test_workers import (
    FAST,
    LEASE,
    attempts,
    chaos_workflow,
    delay,
    echo,
    register,
    rows,
    status_is,
    workflow,
)
from tests.faults import Proxy, refusing, terminate_backends, upstream_of
from tests.waiting import until

pytestmark = pytest.mark.anyio

LOAD = 300  # executions of the five-node DAG per test
#: Longer than the lease: every lease held when the outage began has expired when it ends.
OUTAGE = LEASE * 1.5


@pytest.fixture
def proxy(database_url: str) -> Iterator[Proxy]:
    with Proxy(upstream_of(database_url)) as running:
        yield running


async def produce(daemon: Daemon, count: int, seconds: float) -> list[uuid.UUID]:
    """Start `count` executions of `chaos` spread over `seconds`; a start that meets a fault is
    sent again with its request id, as a client would, so it starts exactly once."""
    ids = []
    for n in range(count):
        request = StartRequest(workflow_id="chaos", trigger={"n": n}, request_id=f"load-{n}")
        row, _ = await daemon.db.retrying(
            functools.partial(daemon.starts.start, request), seconds=60
        )
        ids.append(row.execution_id)
        await anyio.sleep(seconds / count)
    return ids


async def all_ended(db) -> bool:
    left = await rows(
        db,
        "SELECT count(*) AS n FROM workflow_executions"
        " WHERE status NOT IN ('Succeeded', 'Failed', 'Cancelled')",
    )
    return left[0]["n"] == 0


async def assert_durable(db, ids: list[uuid.UUID]) -> None:
    """The four properties: all Succeeded (with the right outputs), no node Succeeded twice, no
    attempt Running, the queue empty."""
    await until(functools.partial(all_ended, db), 120, "every execution to end", interval=0.2)
    final = await rows(db, "SELECT execution_id, status, outputs, error FROM workflow_executions")
    assert sorted(r["execution_id"] for r in final) == sorted(ids)
    assert [r for r in final if r["status"] != "Succeeded"] == []
    n_of = {execution_id: n for n, execution_id in enumerate(ids)}
    for row in final:
        n = n_of[row["execution_id"]]
        assert row["outputs"] == {"n": n, "said": f"fan-{n}"}, row
    twice = await rows(
        db,
        "SELECT execution_id, node_id, count(*) AS n FROM action_executions"
        " WHERE status = 'Succeeded' GROUP BY 1, 2 HAVING count(*) > 1",
    )
    assert twice == []
    per_execution = await rows(
        db,
        "SELECT execution_id, count(DISTINCT node_id) AS n FROM action_executions"
        " WHERE status = 'Succeeded' GROUP BY 1",
    )
    assert sorted(r["n"] for r in per_execution) == [5] * len(ids)
    assert await rows(db, "SELECT * FROM action_executions WHERE status = 'Running'") == []
    assert await rows(db, "SELECT * FROM execution_queue") == []


# -- backends terminated under load ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_backends_terminated_five_times_under_load_lose_and_repeat_nothing(
    db,
    daemon,
    database_url,
    workers,
):
    await register(daemon, chaos_workflow())
    for worker in [workers.start("w0"), workers.start("w1")]:
        await workers.ready(worker)
    terminated: list[int] = []

    async def terminate() -> None:
        for _ in range(5):
            await anyio.sleep(1.5)
            terminated.append(await anyio.to_thread.run_sync(terminate_backends, database_url))

    async with anyio.create_task_group() as group:
        group.start_soon(terminate)
        ids = await produce(daemon, LOAD, 9.0)
    await assert_durable(db, ids)
    # Each fault hit the workers' connections (the pool's, the LISTEN one) and ours.
    assert len(terminated) == 5 and min(terminated) >= 2
    # An infrastructure error is nobody's failure: no worker logged one as an error.
    assert workers.errors() == []


# -- the database unreachable for longer than the lease -------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_database_unreachable_past_the_lease_twice_loses_and_repeats_nothing(
    db,
    daemon,
    database_url,
    workers,
    proxy,
):
    await register(daemon, chaos_workflow())
    through = proxy.url(database_url)
    for worker in [workers.start("w0", DWF_DATABASE_URL=through),
                   workers.start("w1", DWF_DATABASE_URL=through)]:  # fmt: skip
        await workers.ready(worker)

    async def outages() -> None:
        await anyio.sleep(2.5)
        # A partition: the workers' bytes and new connections are held, nothing is closed.
        proxy.pause()
        await anyio.sleep(OUTAGE)
        proxy.resume()
        proxy.slow(0.02)  # then a slow network: every chunk 20 ms late, for a while
        await anyio.sleep(2.5)
        proxy.resume()
        # The database refuses every connection and ends the open ones (the producer's too).
        with refusing(database_url):
            await anyio.sleep(OUTAGE)

    async with anyio.create_task_group() as group:
        group.start_soon(outages)
        ids = await produce(daemon, LOAD, 9.0)
    await assert_durable(db, ids)
    assert workers.errors() == []


async def test_an_outage_while_nodes_run_leaves_one_conductor_and_no_attempt_running(
    db,
    daemon,
    database_url,
    workers,
):
    # The report's case: one worker, its lease 3 s; the database refuses connections for 4.5 s
    # while b and c run. Its claim loop must not take back the execution it is still running,
    # and no conductor of an earlier claim may write.
    await register(
        daemon,
        workflow(
            "fan", echo("a", "b", "c"), delay("b", "4s", "d"), delay("c", "4s", "d"), echo("d")
        ),
    )
    await workers.ready(workers.start("w", DWF_LEASE_SECONDS="3", DWF_HEARTBEAT_SECONDS="1"))
    row, _ = await daemon.starts.start(StartRequest(workflow_id="fan"))

    async def b_and_c_run() -> bool:
        found = await attempts(db, row.execution_id)
        return {("b", 1, "Running"), ("c", 1, "Running")} <= set(found)

    await until(b_and_c_run, 20, "b and c to run")
    with refusing(database_url):
        await anyio.sleep(4.5)
    final = await daemon.db.retrying(
        lambda: status_is(db, row.execution_id, "Succeeded", "Failed", timeout=30), seconds=30
    )
    assert final["status"] == "Succeeded", final
    found = await attempts(db, row.execution_id)
    assert [a for a in found if a[2] == "Running"] == []
    succeeded = sorted(node for node, _, status in found if status == "Succeeded")
    assert succeeded == ["a", "b", "c", "d"]
    assert await rows(db, "SELECT * FROM execution_queue") == []
    assert workers.errors() == []


async def test_past_the_retry_bound_the_execution_is_handed_back_and_resumed_not_failed(
    db, daemon, settings, proxy
):
    # In-process, through the proxy: b ends while the database refuses connections; its
    # transition is sent again until DWF_DB_RETRY_SECONDS (here: the 1 s lease) runs out, then
    # the worker gives the execution up instead of failing it, and resumes it once it can.
    await register(daemon, workflow("back", echo("a", "b"), delay("b", "300ms", "c"), echo("c")))
    assert settings.database_url is not None
    through = dataclasses.replace(
        settings, database_url=proxy.url(settings.database_url), lease_seconds=1.0,
        heartbeat_seconds=0.25, poll_seconds=0.1, db_retry_seconds=0.5,
    )  # fmt: skip
    stop = asyncio.Event()
    async with Daemon(through) as cut_off:
        with capture_logs() as logs:
            running = asyncio.create_task(cut_off.worker(name="w").run(stop))
            try:
                row, _ = await daemon.starts.start(StartRequest(workflow_id="back"))

                async def b_runs() -> bool:
                    return ("b", 1, "Running") in await attempts(db, row.execution_id)

                await until(b_runs, 10, "b to run")
                proxy.refuse()

                async def handed_back() -> bool:
                    return any(e["event"] == "database unavailable; execution handed back"
                               for e in logs)  # fmt: skip

                await until(handed_back, 10, "the worker to give the execution up")
                proxy.resume()
                final = await status_is(db, row.execution_id, "Succeeded", "Failed", timeout=20)
            finally:
                stop.set()
                await running
    assert final["status"] == "Succeeded", final
    found = await attempts(db, row.execution_id)
    # b's first attempt ran to its end, but its result never reached the database: it is
    # closed as lost with its worker, and b runs again; nothing else runs twice.
    assert found == [
        ("a", 1, "Succeeded"), ("b", 1, "RetriableFailure"), ("b", 2, "Succeeded"),
        ("c", 1, "Succeeded"),
    ]  # fmt: skip
    assert await rows(db, "SELECT * FROM dead_letters") == []
    assert await rows(db, "SELECT * FROM execution_queue") == []


# -- the API through the faults -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_api_answers_503_never_500_and_every_202_runs_to_its_end(
    db, daemon, database_url, tmp_path, proxy
):
    await register_api(daemon, chaos_workflow())
    port = free_port()
    group = Procs(proxy.url(database_url), tmp_path)
    try:
        server = group.start("api", "serve", "--roles", "api,worker", "--port", str(port), **FAST)
        await group.ready(server, "worker started")
        await group.ready(group.start("worker", "worker", **FAST), "worker started")
        answers: list[httpx.Response] = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:

            async def post(n: int) -> httpx.Response:
                return await client.post(
                    "/api/v1/workflows/chaos/execute", json={"trigger": {"n": n}}
                )

            async def send(n: int) -> None:
                answers.append(await post(n))

            async def faults() -> None:
                await anyio.sleep(1)
                for _ in range(2):
                    await anyio.to_thread.run_sync(terminate_backends, database_url)
                    await anyio.sleep(1)
                    proxy.cut()
                    await anyio.sleep(1)
                proxy.refuse()
                await anyio.sleep(OUTAGE)
                proxy.resume()

            async with anyio.create_task_group() as load:
                load.start_soon(faults)
                for n in range(150):
                    load.start_soon(send, n)
                    await anyio.sleep(0.05)
            # After the outage the pool holds no dead connection: every request goes through.
            after = [await post(150 + n) for n in range(20)]
            statuses = sorted({a.status_code for a in answers})
            assert set(statuses) <= {202, 503}, [a.text for a in answers if a.status_code >= 500]
            assert [a.status_code for a in after] == [202] * 20
            for refused in (a for a in answers if a.status_code == 503):
                assert refused.headers["Retry-After"].isdigit()
                assert refused.json()["type"].endswith(":database-unavailable")
            accepted = [a.json()["executionId"] for a in [*answers, *after] if a.status_code == 202]
        await until(functools.partial(all_ended, db), 60, "every execution to end", 0.2)
        final = await rows(db, "SELECT execution_id::text AS id, status FROM workflow_executions")
        # Every 202 has its execution. (A 503 may have one too: its commit can land just before
        # the connection is cut; a client sends the same requestId again and finds it.)
        assert set(accepted) <= {r["id"] for r in final}
        assert {r["status"] for r in final} == {"Succeeded"}
        assert group.errors() == []
    finally:
        group.close()


# -- the scheduler across an outage ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_scheduler_fires_every_time_of_a_ten_second_outage_once(
    db, daemon, database_url, tmp_path, proxy
):
    await register_api(daemon, flow("ticks", schedule(overlap="allow", catchup="all")))
    group = Procs(proxy.url(database_url), tmp_path)
    try:
        await group.scheduler("s")
        began = datetime.now(UTC) + timedelta(seconds=1)

        async def fired_after(moment: datetime) -> bool:
            return any(f["scheduled_at"] > moment for f in await fires(db, "ticks"))

        await until(functools.partial(fired_after, began), 10, "a first fire")
        # From the first time fired before the outage (the schedule's first may come later than
        # `began`: its cursor starts when the scheduler reads it).
        began = min(
            f["scheduled_at"] for f in await fires(db, "ticks") if f["scheduled_at"] > began
        )
        proxy.refuse()
        await anyio.sleep(10)
        proxy.resume()
        back = datetime.now(UTC)
        await until(functools.partial(fired_after, back + timedelta(seconds=2)), 30, "fires again")
        ended = datetime.now(UTC) - timedelta(seconds=1)
        found = [f for f in await fires(db, "ticks") if began <= f["scheduled_at"] <= ended]
        times = sorted(f["scheduled_at"] for f in found)
        # Every scheduled time of the window decided once, and fired: late, but not lost.
        assert times == even_seconds(began, ended)
        assert {f["outcome"] for f in found} == {"fired"}
        assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(times))
        # Five times fell into the outage; at least three of them were decided over 4 s late.
        late = [f for f in found if f["decided_at"] - f["scheduled_at"] > timedelta(seconds=4)]
        assert len(late) >= 3, "the outage did not delay the fires it covered"
        executions = await rows(
            db, "SELECT request_id FROM workflow_executions WHERE workflow_id = 'ticks'"
        )
        stamps = {f"schedule:tick:{t.strftime('%Y-%m-%dT%H:%M:%SZ')}" for t in times}
        assert stamps <= {e["request_id"] for e in executions}
        assert group.errors() == []
    finally:
        group.close()
