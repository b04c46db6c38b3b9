"""SPEC §4 (durability, cancellation, subworkflows) and §8 (queue and workers) with real
`dwf worker` processes on a real Postgres: kill -9 chaos, SIGSTOP past the lease, dead letters,
graceful SIGTERM, cancellation across processes, subworkflow trees.

The test process registers workflows and starts executions (which only enqueues them); the
worker subprocesses claim and run them. Every wait polls the database (or a worker's JSON log)
until a condition holds, under a timeout.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from runner.daemon import Daemon
from runner.engine.requests import StartRequest
from runner.store.executions import ExecutionRow
from tests.documents import workflow
from tests.waiting import until

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
DWF = shutil.which("dwf", path=str(Path(sys.executable).parent)) or "dwf"
LEASE = 2.0
#: Short timings, so a dead worker's executions are reclaimed within a couple of seconds.
FAST = {
    "DWF_LEASE_SECONDS": str(LEASE),
    "DWF_HEARTBEAT_SECONDS": "0.5",
    "DWF_POLL_SECONDS": "0.2",
}
T = TypeVar("T")


# -- worker processes -----------------------------------------------------------------------------


@dataclass
class WorkerProc:
    """One `dwf worker` subprocess; its stderr (JSON log lines) goes to `log`."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def owns(self, lease_owner: str | None) -> bool:
        """Whether a queue row's `lease_owner` is this process (`host:pid:suffix`)."""
        return lease_owner is not None and lease_owner.split(":")[-2] == str(self.pid)

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]

    def cpu_seconds(self) -> float | None:
        """User and system CPU time used so far (Linux /proc), None once it is gone."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False

    async def exited(self, timeout: float) -> int:
        """The exit code, once the process has ended (AssertionError after `timeout`)."""

        async def ended() -> tuple[int] | None:
            code = self.proc.poll()
            return None if code is None else (code,)  # a tuple: exit code 0 is falsy

        return (await until(ended, timeout, f"{self.name} to exit"))[0]


@dataclass
class Workers:
    """Starts workers against the test database and makes sure none outlives the test."""

    database_url: str
    folder: Path
    started: list[WorkerProc] = field(default_factory=list)

    def start(self, name: str | None = None, **env: str) -> WorkerProc:
        name = name or f"w{len(self.started)}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")}
        base |= {
            "DWF_DATABASE_URL": self.database_url,
            "DWF_HOME": str(self.folder / "home"),
            "DWF_LOG_FORMAT": "json",
            **FAST,
            **env,
        }
        log = self.folder / f"{name}-{len(self.started)}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [DWF, "worker"], cwd=ROOT, env=base, stdout=sink, stderr=sink,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        worker = WorkerProc(name, proc, log)
        self.started.append(worker)
        return worker

    async def ready(self, worker: WorkerProc, timeout: float = 20.0) -> WorkerProc:
        """Wait until the worker logged that it started (it is claiming)."""
        await until(
            lambda: _async(bool(worker.logged("worker started")) or _died(worker)),
            timeout,
            f"{worker.name} to start",
        )
        assert worker.proc.poll() is None, worker.log.read_text()
        return worker

    def errors(self) -> list[dict[str, Any]]:
        """Lines any worker logged at error level or above (a crash, a failed claim)."""
        return [
            line
            for worker in self.started
            for line in worker.lines()
            if line.get("level") in ("error", "critical", "exception")
        ]

    def kill(self, worker: WorkerProc) -> None:
        worker.proc.kill()
        worker.proc.wait(timeout=10)

    def close(self) -> None:
        for worker in self.started:
            if worker.proc.poll() is None:
                if worker.stopped:
                    worker.proc.send_signal(signal.SIGCONT)
                worker.proc.kill()
            worker.proc.wait(timeout=10)


def _died(worker: WorkerProc) -> bool:
    if worker.proc.poll() is not None:
        raise AssertionError(f"{worker.name} exited: {worker.log.read_text()[-3000:]}")
    return False


@pytest.fixture
def workers(database_url: str, tmp_path: Path):
    pool = Workers(database_url, tmp_path)
    try:
        yield pool
    finally:
        pool.close()  # before the database fixture drops the database


# -- waiting and reading ----------------------------------------------------------------------


async def _async(value: T) -> T:
    return value


async def rows(db, query: str, *params: Any) -> list[dict[str, Any]]:
    async with db.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


async def execution(db, execution_id: uuid.UUID) -> dict[str, Any]:
    found = await rows(
        db, "SELECT * FROM workflow_executions WHERE execution_id = %s", execution_id
    )
    assert found, f"no execution {execution_id}"
    return found[0]


async def attempts(db, execution_id: uuid.UUID) -> list[tuple[str, int, str]]:
    found = await rows(
        db,
        "SELECT node_id, attempt, status FROM action_executions WHERE execution_id = %s"
        " ORDER BY action_execution_id",
        execution_id,
    )
    return [(r["node_id"], r["attempt"], r["status"]) for r in found]


async def queue_row(db, execution_id: uuid.UUID) -> dict[str, Any] | None:
    found = await rows(db, "SELECT * FROM execution_queue WHERE execution_id = %s", execution_id)
    return found[0] if found else None


async def status_is(
    db, execution_id: uuid.UUID, *statuses: str, timeout: float, interval: float = 0.05
) -> dict:
    """Wait until the execution has one of `statuses`; its row."""

    async def check() -> dict | None:
        row = await execution(db, execution_id)
        return row if row["status"] in statuses else None

    what = f"execution {execution_id} to be {'/'.join(statuses)}"
    return await until(check, timeout, what, interval)


async def running_on(
    db,
    execution_id: uuid.UUID,
    node_id: str,
    worker: WorkerProc,
    *,
    attempt: int = 1,
    timeout: float = 20.0,
) -> None:
    """Wait until `worker` holds the execution's lease and runs that attempt of `node_id`."""

    async def check() -> bool:
        _died(worker)
        held = await queue_row(db, execution_id)
        if held is None or not worker.owns(held["lease_owner"]):
            return False
        return (node_id, attempt, "Running") in await attempts(db, execution_id)

    what = f"{worker.name} to run attempt {attempt} of {node_id} of {execution_id}"
    await until(check, timeout, what, 0.02)


# -- workflows --------------------------------------------------------------------------------


def echo(node_id: str, *targets: str, message: Any = None) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": node_id,
        "actionType": "core.echo",
        "parameters": {"message": node_id if message is None else message},
    }
    if targets:
        node["edges"] = [{"targetNode": t} for t in targets]
    return node


def delay(node_id: str, duration: str, *targets: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": node_id,
        "actionType": "core.delay",
        "parameters": {"duration": duration},
    }
    if targets:
        node["edges"] = [{"targetNode": t} for t in targets]
    return node


def subworkflow(node_id: str, workflow_id: str, *targets: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": node_id,
        "nodeType": "subworkflow",
        "workflowId": workflow_id,
        "waitForCompletion": True,
        "parameters": {"pause": "{{ trigger.pause }}", "n": "{{ trigger.n }}"},
    }
    if targets:
        node["edges"] = [{"targetNode": t} for t in targets]
    return node


async def register(daemon: Daemon, definition: dict[str, Any]) -> None:
    """Record a workflow version as `dwf run FILE` does."""
    await daemon.versions.record(definition, tenant=daemon.settings.tenant, source_kind="local")


async def start(daemon: Daemon, workflow_id: str, **trigger: Any) -> ExecutionRow:
    row, created = await daemon.starts.start(StartRequest(workflow_id=workflow_id, trigger=trigger))
    assert created and row.status == "Pending"
    return row


# -- 1. kill -9 chaos ---------------------------------------------------------------------------

CHAOS_EXECUTIONS = 300
CHAOS_KILLS = 30
CHAOS_SECONDS = 20.0  # how long executions keep arriving (and workers keep dying)


def chaos_workflow() -> dict[str, Any]:
    """Five nodes: fan-out to three 20 ms delays, fan-in to a join that reads the first node."""
    return workflow(
        "chaos",
        echo("fan", "d1", "d2", "d3", message="fan-{{ trigger.n }}"),
        delay("d1", "20ms", "join"),
        delay("d2", "20ms", "join"),
        delay("d3", "20ms", "join"),
        echo("join", message="{{ nodes.fan.outputs.echo }}"),
        outputs={"n": "{{ trigger.n }}", "said": "{{ nodes.join.outputs.echo }}"},
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_kill_9_chaos_every_execution_ends_and_no_node_succeeds_twice(
    db, daemon, workers, capsys
):
    await register(daemon, chaos_workflow())
    pool = [workers.start(f"w{i}") for i in range(3)]
    for worker in pool:
        await workers.ready(worker)
    rng = random.Random(4)
    began = time.monotonic()
    ids: list[uuid.UUID] = []
    arrival = CHAOS_SECONDS / CHAOS_EXECUTIONS

    async def produce() -> None:
        # Work arrives steadily for the whole run, so every kill lands among running executions.
        for n in range(CHAOS_EXECUTIONS):
            ids.append((await start(daemon, "chaos", n=n)).execution_id)
            await anyio.sleep(arrival)

    bitten = 0  # kills of a worker that held at least one lease at that moment

    async def holds_a_lease(worker: WorkerProc) -> bool:
        held = await rows(db, "SELECT lease_owner FROM execution_queue WHERE status = 'claimed'")
        return any(worker.owns(r["lease_owner"]) for r in held)

    async def kill() -> None:
        nonlocal bitten
        for _ in range(CHAOS_KILLS):
            await anyio.sleep(rng.uniform(0.5, 1.5) * CHAOS_SECONDS / CHAOS_KILLS / 2)
            index = rng.randrange(len(pool))
            victim = pool[index]
            # Kill it in the middle of some execution (a fresh one may still be starting up:
            # after 3 s it is killed all the same).
            with contextlib.suppress(AssertionError):
                await until(
                    functools.partial(holds_a_lease, victim), 3, f"{victim.name} to lease", 0.005
                )
            bitten += await holds_a_lease(victim)
            workers.kill(victim)
            pool[index] = workers.start(victim.name)

    async with anyio.create_task_group() as group:
        group.start_soon(produce)
        group.start_soon(kill)
    kills_done = time.monotonic() - began

    async def all_ended() -> bool:
        left = await rows(
            db,
            "SELECT count(*) AS n FROM workflow_executions"
            " WHERE status NOT IN ('Succeeded', 'Failed', 'Cancelled')",
        )
        return left[0]["n"] == 0

    await until(all_ended, 90, "every execution to end", interval=0.2)
    finished = time.monotonic() - began

    final = await rows(db, "SELECT execution_id, status, outputs, error FROM workflow_executions")
    assert len(final) == CHAOS_EXECUTIONS
    succeeded = [r for r in final if r["status"] == "Succeeded"]
    others = [r for r in final if r["status"] != "Succeeded"]
    # Anything but Succeeded must be a dead letter: its workers kept dying under it.
    dead = {r["execution_id"] for r in await rows(db, "SELECT execution_id FROM dead_letters")}
    for row in others:
        assert row["status"] == "Failed" and row["error"]["type"] == "DeadLettered", row
        assert row["execution_id"] in dead
    n_of = {i: n for n, i in enumerate(ids)}
    for row in succeeded:
        n = n_of[row["execution_id"]]
        assert row["outputs"] == {"n": n, "said": f"fan-{n}"}, row

    twice = await rows(
        db,
        "SELECT execution_id, node_id, count(*) AS n FROM action_executions"
        " WHERE status = 'Succeeded' GROUP BY 1, 2 HAVING count(*) > 1",
    )
    assert twice == []
    # Every succeeded execution has each of its five nodes succeeded (exactly once, above).
    per_node = await rows(
        db,
        "SELECT a.execution_id, count(DISTINCT a.node_id) AS n FROM action_executions a"
        " JOIN workflow_executions e USING (execution_id)"
        " WHERE e.status = 'Succeeded' AND a.status = 'Succeeded' GROUP BY 1",
    )
    assert sorted(r["n"] for r in per_node) == [5] * len(succeeded)
    # A node in flight when its worker died was attempted again as its next attempt: each
    # node's attempts read 1..n, all lost with their worker but the last, which succeeded.
    histories = await rows(
        db,
        "SELECT a.execution_id, a.node_id, array_agg(a.attempt ORDER BY a.attempt) AS numbers,"
        " array_agg(a.status || ':' || COALESCE(a.error_json->>'type', '') ORDER BY a.attempt)"
        " AS outcomes FROM action_executions a JOIN workflow_executions e USING (execution_id)"
        " WHERE e.status = 'Succeeded' GROUP BY 1, 2",
    )
    assert len(histories) == 5 * len(succeeded)
    for history in histories:
        tries = len(history["numbers"])
        assert history["numbers"] == list(range(1, tries + 1)), history
        assert history["outcomes"] == ["RetriableFailure:WorkerLost"] * (tries - 1) + [
            "Succeeded:"
        ], history
    assert await rows(db, "SELECT * FROM action_executions WHERE status = 'Running'") == []
    assert await rows(db, "SELECT * FROM execution_queue") == []

    resumed = await rows(
        db, "SELECT count(DISTINCT execution_id) AS n FROM execution_events"
        " WHERE kind = 'ExecutionResumed'",
    )  # fmt: skip
    lost = await rows(
        db, "SELECT count(*) AS n FROM action_executions WHERE error_json->>'type' = 'WorkerLost'"
    )
    # The kills did bite: executions were taken over from dead workers and resumed.
    assert resumed[0]["n"] > 0 and bitten > 0
    assert workers.errors() == []
    with capsys.disabled():
        print(
            f"\nchaos: {len(succeeded)} succeeded, {len(others)} dead-lettered "
            f"{sorted(str(r['execution_id']) for r in others)}; {CHAOS_KILLS} kills "
            f"({bitten} of a worker holding leases) in {kills_done:.1f} s; "
            f"{resumed[0]['n']} executions resumed, {lost[0]['n']} attempts lost with their "
            f"worker; all ended after {finished:.1f} s"
        )


# -- 2. SIGSTOP past the lease ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("wake", ["after", "during"])
async def test_a_worker_stopped_past_its_lease_loses_the_execution_and_overwrites_nothing(
    db, daemon, workers, wake
):
    """`after`: the first worker is woken once the second finished the execution; `during`:
    while the second still runs it, the first's own attempt of the node long overdue."""
    await register(
        daemon,
        workflow(
            "stop",
            delay("a", "6s", "b"),
            echo("b", message="done"),
            outputs={"said": "{{ nodes.b.outputs.echo }}"},
        ),
    )
    first = await workers.ready(workers.start("first"))
    row = await start(daemon, "stop")
    await running_on(db, row.execution_id, "a", first)
    first.send(signal.SIGSTOP)
    second = await workers.ready(workers.start("second"))
    # The lease runs out (no heartbeat from a stopped process): the second worker takes over,
    # re-attempts the node that was in flight and finishes the execution.
    await running_on(db, row.execution_id, "a", second, attempt=2, timeout=3 * LEASE + 10)

    async def lease_lost() -> list[dict[str, Any]]:
        return await until(
            lambda: _async([line for line in first.lines() if "lease lost" in line["event"]]),
            10,
            "the first worker to log that it lost the lease",
        )

    lost: list[dict[str, Any]] = []
    if wake == "during":
        # Wake it once its own 6 s attempt is overdue, while the second's attempt still runs.
        async def overdue() -> bool:
            found = await rows(
                db,
                "SELECT clock_timestamp() >= started_at + interval '6.2 s' AS overdue"
                " FROM action_executions WHERE execution_id = %s AND node_id = 'a'"
                " AND attempt = 1",
                row.execution_id,
            )
            return found[0]["overdue"]

        await until(overdue, 10, "the first worker's attempt of a to be overdue", 0.02)
        first.send(signal.SIGCONT)
        lost = await lease_lost()
    await status_is(db, row.execution_id, "Succeeded", timeout=15)

    async def snapshot() -> tuple[Any, ...]:
        return (
            await execution(db, row.execution_id),
            await rows(db, "SELECT * FROM action_executions WHERE execution_id = %s"
                       " ORDER BY action_execution_id", row.execution_id),
            await rows(db, "SELECT * FROM execution_events WHERE execution_id = %s"
                       " ORDER BY event_id", row.execution_id),
            await rows(db, "SELECT * FROM execution_queue"),
            await rows(db, "SELECT * FROM dead_letters"),
        )  # fmt: skip

    before = await snapshot()
    final, rows_before, events = before[0], before[1], before[2]
    assert final["outputs"] == {"said": "done"}
    assert [(r["node_id"], r["attempt"], r["status"]) for r in rows_before] == [
        ("a", 1, "RetriableFailure"),
        ("a", 2, "Succeeded"),
        ("b", 1, "Succeeded"),
    ]
    assert rows_before[0]["error_json"]["type"] == "WorkerLost"
    assert [(e["kind"], e["node_id"], e["attempt"]) for e in events] == [
        ("ExecutionCreated", None, None),
        ("ExecutionStarted", None, None),
        ("NodeStarted", "a", 1),
        ("ExecutionResumed", None, None),
        ("NodeStarted", "a", 2),
        ("NodeSucceeded", "a", 2),
        ("NodeStarted", "b", 1),
        ("NodeSucceeded", "b", 1),
        ("ExecutionSucceeded", None, None),
    ]
    assert before[3] == [] and before[4] == []

    if wake == "after":
        # Woken, the first worker's node has long finished: it tries to go on.
        first.send(signal.SIGCONT)
        lost = await lease_lost()
    else:
        # It was refused while the second worker was still at work, not after.
        assert datetime.fromisoformat(lost[0]["timestamp"]) < rows_before[1]["finished_at"]
    assert lost[0]["level"] == "warning" and lost[0]["executionId"] == str(row.execution_id)
    await anyio.sleep(2 * LEASE)  # a couple of lease periods in which it could try to write
    assert await snapshot() == before
    assert first.proc.poll() is None, "losing a lease must not kill the worker"


# -- 3. dead letters --------------------------------------------------------------------------


async def test_an_execution_whose_workers_keep_dying_is_dead_lettered(db, daemon, workers):
    await register(daemon, workflow("doomed", delay("a", "10s")))
    row = await start(daemon, "doomed")
    env = {"DWF_MAX_DELIVERIES": "2"}
    for delivery in (1, 2):
        worker = workers.start(f"victim{delivery}", **env)
        await running_on(
            db, row.execution_id, "a", worker, attempt=delivery, timeout=3 * LEASE + 20
        )
        workers.kill(worker)
    # The third claim is one past DWF_MAX_DELIVERIES: the worker gives up on it at once.
    last = workers.start("last", **env)
    final = await status_is(db, row.execution_id, "Succeeded", "Failed", timeout=3 * LEASE + 20)
    assert final["status"] == "Failed"
    assert final["error"]["type"] == "DeadLettered"
    assert "2 deliveries" in final["error"]["message"]
    letters = await rows(db, "SELECT * FROM dead_letters")
    assert [(r["execution_id"], r["deliveries"]) for r in letters] == [(row.execution_id, 3)]
    assert last.owns(letters[0]["last_lease_owner"])
    assert await queue_row(db, row.execution_id) is None
    # Nothing is left looking as if it still ran.
    assert await attempts(db, row.execution_id) == [
        ("a", 1, "RetriableFailure"),
        ("a", 2, "Failed"),
    ]
    logged = await until(
        lambda: _async(last.logged("execution dead-lettered")), 5, "the dead-letter log line"
    )
    assert logged[0]["executionId"] == str(row.execution_id)


# -- 4. graceful SIGTERM ----------------------------------------------------------------------


async def test_sigterm_lets_the_running_node_finish_and_hands_the_rest_back(db, daemon, workers):
    await register(daemon, workflow("drain", delay("a", "1s", "b"), echo("b", message="after")))
    grace = 5.0
    first = await workers.ready(workers.start("first", DWF_SHUTDOWN_GRACE_SECONDS=str(grace)))
    row = await start(daemon, "drain")
    await running_on(db, row.execution_id, "a", first)
    asked, cpu_before = time.monotonic(), first.cpu_seconds()
    first.send(signal.SIGTERM)
    samples: list[tuple[float, float]] = []  # (when, CPU seconds) while it drains

    async def gone() -> tuple[int] | None:
        cpu = first.cpu_seconds()
        code = first.proc.poll()
        if code is None and cpu is not None:
            samples.append((time.monotonic(), cpu))
        return None if code is None else (code,)

    assert await until(gone, grace + 5, "the worker to exit", 0.02) == (0,)
    took = time.monotonic() - asked
    assert took < grace, f"exited {took:.1f} s after SIGTERM; the grace is {grace} s"
    # Waiting for the node to finish is waiting, not spinning: the worker stays nearly idle.
    assert cpu_before is not None and samples
    drained, cpu = samples[-1][0] - asked, samples[-1][1] - cpu_before
    assert cpu < 0.5 * drained + 0.1, f"{cpu:.2f} s of CPU in {drained:.2f} s of draining"
    # The running node finished; the next one was not started; the execution went back.
    assert await attempts(db, row.execution_id) == [("a", 1, "Succeeded")]
    assert (await execution(db, row.execution_id))["status"] == "Running"
    back = await queue_row(db, row.execution_id)
    assert back is not None
    assert (back["status"], back["lease_owner"], back["deliveries"]) == ("ready", None, 0)
    assert first.logged("draining") and first.logged("worker stopped")

    second = await workers.ready(workers.start("second"))
    final = await status_is(db, row.execution_id, "Succeeded", "Failed", timeout=20)
    assert final["status"] == "Succeeded"
    assert await attempts(db, row.execution_id) == [("a", 1, "Succeeded"), ("b", 1, "Succeeded")]
    assert second.proc.poll() is None


async def test_sigterm_past_the_grace_hands_the_execution_back_and_the_node_runs_again(
    db, daemon, workers
):
    await register(daemon, workflow("slow", delay("a", "30s")))
    grace = 1.0
    first = await workers.ready(workers.start("first", DWF_SHUTDOWN_GRACE_SECONDS=str(grace)))
    row = await start(daemon, "slow")
    await running_on(db, row.execution_id, "a", first)
    asked = time.monotonic()
    first.send(signal.SIGTERM)
    assert await first.exited(grace + 10) == 0
    took = time.monotonic() - asked
    assert grace <= took < grace + 2, f"exited {took:.1f} s after SIGTERM; the grace is {grace} s"
    # The node did not finish in time: the execution went back at once (not after a lease),
    # as a voluntary hand-back that does not count as a delivery.
    back = await queue_row(db, row.execution_id)
    assert back is not None
    assert (back["status"], back["lease_owner"], back["deliveries"]) == ("ready", None, 0)
    assert await attempts(db, row.execution_id) == [("a", 1, "Running")]
    second = await workers.ready(workers.start("second"))
    await running_on(db, row.execution_id, "a", second, attempt=2)
    history = await rows(
        db,
        "SELECT attempt, status, error_json FROM action_executions WHERE execution_id = %s"
        " ORDER BY attempt",
        row.execution_id,
    )
    assert [(h["attempt"], h["status"]) for h in history] == [
        (1, "RetriableFailure"),
        (2, "Running"),
    ]
    assert history[0]["error_json"]["type"] == "WorkerLost"
    assert (await queue_row(db, row.execution_id) or {}).get("deliveries") == 1


# -- 5. cancellation across processes -----------------------------------------------------------


@pytest.mark.parametrize("how", ["conductor", "cli"])
async def test_cancel_from_another_process_ends_the_execution_within_a_second(
    db, daemon, workers, how
):
    await register(daemon, workflow("long", delay("a", "30s", "b"), echo("b")))
    worker = await workers.ready(workers.start("a"))
    row = await start(daemon, "long")
    await running_on(db, row.execution_id, "a", worker)
    if how == "conductor":
        asked = time.monotonic()
        await daemon.conductor.cancel(row.tenant, row.execution_id)
    else:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")}
        env |= {"DWF_DATABASE_URL": workers.database_url, "DWF_HOME": str(workers.folder / "home")}
        proc = subprocess.run(
            [DWF, "executions", "cancel", str(row.execution_id)],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        # Counted from when the command returns: the cancel is committed by then.
        asked = time.monotonic()
        assert proc.returncode == 0, proc.stderr
        assert "cancel requested" in proc.stdout
    final = await status_is(
        db, row.execution_id, "Cancelled", "Succeeded", "Failed", timeout=5, interval=0.02
    )
    took = time.monotonic() - asked
    assert final["status"] == "Cancelled"
    assert took < 1.0, f"ended Cancelled {took:.2f} s after the cancel"
    assert final["error"]["type"] == "Cancelled"
    assert await attempts(db, row.execution_id) == [("a", 1, "Cancelled")]
    assert await queue_row(db, row.execution_id) is None
    assert worker.proc.poll() is None


# -- 6. subworkflow trees three deep ------------------------------------------------------------


async def register_tree(daemon: Daemon) -> None:
    await register(
        daemon,
        workflow(
            "grandchild",
            delay("wait", "{{ trigger.pause }}", "say"),
            echo("say", message="gc-{{ trigger.n }}"),
            outputs={"said": "{{ nodes.say.outputs.echo }}"},
        ),
    )
    for name, callee in (("child", "grandchild"), ("parent", "child")):
        await register(
            daemon,
            workflow(
                name,
                subworkflow("call", callee, "after"),
                echo("after", message="{{ nodes.call.outputs.outputs.said }}"),
                outputs={"said": "{{ nodes.after.outputs.echo }}"},
            ),
        )


async def tree_of(db, root: uuid.UUID) -> list[dict[str, Any]]:
    """The root's execution and its descendants, root first, by depth."""
    return await rows(
        db,
        """
        WITH RECURSIVE tree AS (
            SELECT * FROM workflow_executions WHERE execution_id = %s
            UNION ALL
            SELECT e.* FROM workflow_executions e JOIN tree t
                ON e.parent_execution_id = t.execution_id)
        SELECT * FROM tree ORDER BY depth
        """,
        root,
    )


@pytest.mark.slow
async def test_subworkflow_trees_three_deep_park_while_waiting_and_cancel_as_a_tree(
    db, daemon, workers
):
    await register_tree(daemon)
    # One worker with one execution slot: three trees of three can only finish if a parent
    # waiting for its child parks and frees the slot.
    single = await workers.ready(workers.start("single", DWF_WORKER_EXECUTIONS="1"))
    roots = [await start(daemon, "parent", pause="100ms", n=n) for n in range(3)]
    for n, root in enumerate(roots):
        final = await status_is(db, root.execution_id, "Succeeded", "Failed", timeout=30)
        assert final["status"] == "Succeeded", final
        assert final["outputs"] == {"said": f"gc-{n}"}
        tree = await tree_of(db, root.execution_id)
        assert [(t["workflow_id"], t["depth"], t["status"]) for t in tree] == [
            ("parent", 0, "Succeeded"),
            ("child", 1, "Succeeded"),
            ("grandchild", 2, "Succeeded"),
        ]
        links = await rows(
            db,
            "SELECT parent_execution_id, child_execution_id, parent_node_id, depth"
            " FROM workflow_execution_hierarchy WHERE child_execution_id = ANY(%s)"
            " ORDER BY depth",
            [t["execution_id"] for t in tree],
        )
        assert [tuple(link.values()) for link in links] == [
            (tree[0]["execution_id"], tree[1]["execution_id"], "call", 1),
            (tree[1]["execution_id"], tree[2]["execution_id"], "call", 2),
        ]
        for waiting in tree[:2]:
            parked = await rows(
                db,
                "SELECT 1 FROM execution_events WHERE execution_id = %s"
                " AND kind = 'ExecutionParked'",
                waiting["execution_id"],
            )
            assert parked, f"{waiting['workflow_id']} never parked"
    assert await rows(db, "SELECT * FROM execution_queue") == []

    # Cancelling the root while the grandchild runs a long delay cancels the whole tree, on the
    # same single slot: the grandchild holds it, and its parked ancestors must not need one to
    # learn of the cancel.
    root = await start(daemon, "parent", pause="30s", n=9)

    async def grandchild_running() -> dict[str, Any] | None:
        tree = await tree_of(db, root.execution_id)
        if len(tree) < 3:
            return None
        running = await attempts(db, tree[2]["execution_id"])
        return tree[2] if ("wait", 1, "Running") in running else None

    grandchild = await until(grandchild_running, 20, "the grandchild to run its delay")
    asked = time.monotonic()
    await daemon.conductor.cancel(root.tenant, root.execution_id)

    async def all_cancelled() -> list[dict[str, Any]] | None:
        tree = await tree_of(db, root.execution_id)
        ended = all(t["status"] in ("Succeeded", "Failed", "Cancelled") for t in tree)
        return tree if ended else None

    cancelled = await status_is(
        db, root.execution_id, "Cancelled", "Succeeded", "Failed", timeout=10, interval=0.02
    )
    root_took = time.monotonic() - asked
    tree = await until(all_cancelled, 10, "the tree to end", interval=0.02)
    took = time.monotonic() - asked
    assert cancelled["status"] == "Cancelled"
    assert [(t["workflow_id"], t["status"]) for t in tree] == [
        ("parent", "Cancelled"),
        ("child", "Cancelled"),
        ("grandchild", "Cancelled"),
    ]
    assert await attempts(db, grandchild["execution_id"]) == [("wait", 1, "Cancelled")]
    for waiting in tree[:2]:
        assert await attempts(db, waiting["execution_id"]) == [("call", 1, "Cancelled")]
    assert await rows(db, "SELECT * FROM execution_queue") == []
    assert root_took < 1.0, f"the root took {root_took:.2f} s to end Cancelled"
    assert took < 1.0, f"the tree took {took:.2f} s to end Cancelled"
    assert workers.errors() == []
    assert single.proc.poll() is None


async def test_cancelling_a_running_parent_cancels_the_child_it_waits_for(db, daemon, workers):
    await register_tree(daemon)
    # The parent does not park: a node of its own runs beside the subworkflow node.
    await register(
        daemon,
        workflow(
            "busy",
            echo("fork", "call", "side"),
            subworkflow("call", "grandchild"),
            delay("side", "30s"),
        ),
    )
    worker = await workers.ready(workers.start("w"))
    root = await start(daemon, "busy", pause="30s", n=1)

    async def child_running() -> dict[str, Any] | None:
        tree = await tree_of(db, root.execution_id)
        if len(tree) < 2:
            return None
        running = await attempts(db, tree[1]["execution_id"])
        return tree[1] if ("wait", 1, "Running") in running else None

    child = await until(child_running, 20, "the child to run its delay")
    held = await queue_row(db, root.execution_id)
    assert held is not None and held["status"] == "claimed"
    asked = time.monotonic()
    await daemon.conductor.cancel(root.tenant, root.execution_id)
    await status_is(db, root.execution_id, "Cancelled", timeout=5, interval=0.02)
    final = await status_is(
        db, child["execution_id"], "Cancelled", "Succeeded", "Failed", timeout=5, interval=0.02
    )
    took = time.monotonic() - asked
    assert final["status"] == "Cancelled"
    assert took < 1.0, f"the parent and its child took {took:.2f} s to end Cancelled"
    assert sorted(await attempts(db, root.execution_id)) == [
        ("call", 1, "Cancelled"),
        ("fork", 1, "Succeeded"),
        ("side", 1, "Cancelled"),
    ]
    assert await attempts(db, child["execution_id"]) == [("wait", 1, "Cancelled")]
    assert await rows(db, "SELECT * FROM execution_queue") == []
    assert worker.proc.poll() is None
