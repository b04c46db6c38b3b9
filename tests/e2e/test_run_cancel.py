"""Cancelling `dwf run` (SPEC §4 cancellation, §9): from another process, and by Ctrl-C.

Each test starts a real `dwf run` subprocess on a workflow whose first node waits 30 s, waits
(polling the database) until that node's attempt is Running, then cancels or interrupts it.
Timings are printed, not asserted tightly: the figures belong to benchmarks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_workers import DWF, ROOT, attempts, rows
from tests.waiting import until

pytestmark = pytest.mark.anyio

LONG = """\
apiVersion: dataworkflows/v1
kind: Workflow
id: long
startNode: wait
nodes:
  - id: wait
    actionType: core.delay
    parameters: {duration: 30s}
    edges: [{targetNode: after}]
  - id: after
    actionType: core.echo
    parameters: {message: never}
"""
#: Short leases, so an execution left behind is resumed within seconds.
FAST = {"DWF_LEASE_SECONDS": "2", "DWF_HEARTBEAT_SECONDS": "0.5", "DWF_POLL_SECONDS": "0.2"}


@dataclass
class Run:
    """One `dwf run` subprocess; its output goes to files, read while it runs."""

    proc: subprocess.Popen[bytes]
    request_id: str
    out: Path
    err: Path

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    async def exited(self, timeout: float) -> int:
        """The exit code once the process has ended (AssertionError after `timeout`)."""

        async def ended() -> tuple[int] | None:
            code = self.proc.poll()
            return None if code is None else (code,)  # a tuple: exit code 0 is falsy

        return (await until(ended, timeout, "dwf run to exit", 0.01))[0]


@dataclass
class Runs:
    """Starts `dwf run` and `dwf worker` processes and makes sure none outlives the test."""

    database_url: str
    folder: Path
    started: list[subprocess.Popen[bytes]]

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")}
        return base | {
            "DWF_DATABASE_URL": self.database_url,
            "DWF_HOME": str(self.folder / "home"),
            **extra,
        }

    def run(self, *flags: str, **env: str) -> Run:
        flow = self.folder / "long.yaml"
        flow.write_text(LONG)
        request_id = f"test:{uuid.uuid4()}"
        n = len(self.started)
        out, err = self.folder / f"run{n}.out", self.folder / f"run{n}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [DWF, "run", str(flow), "--request-id", request_id, *flags],
                cwd=ROOT, env=self.env(**env), stdout=stdout, stderr=stderr,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.started.append(proc)
        return Run(proc, request_id, out, err)

    def worker(self) -> subprocess.Popen[bytes]:
        log = (self.folder / f"worker{len(self.started)}.log").open("wb")
        with log:
            proc = subprocess.Popen(
                [DWF, "worker"], cwd=ROOT, env=self.env(**FAST), stdout=log, stderr=log,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.started.append(proc)
        return proc

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DWF, *args], cwd=ROOT, env=self.env(), capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def runs(database_url: str, tmp_path: Path) -> Iterator[Runs]:
    pool = Runs(database_url, tmp_path, [])
    try:
        yield pool
    finally:
        pool.close()  # before the database fixture drops the database


# -- reading ------------------------------------------------------------------------------------


async def execution_of(db, run: Run) -> dict[str, Any] | None:
    found = await rows(
        db, "SELECT * FROM workflow_executions WHERE request_id = %s", run.request_id
    )
    return found[0] if found else None


async def waiting(db, run: Run, timeout: float = 30.0) -> uuid.UUID:
    """Wait until the run's execution is Running with its 30 s delay's attempt Running."""

    async def check() -> uuid.UUID | None:
        if run.proc.poll() is not None:
            raise AssertionError(f"dwf run exited {run.proc.returncode}: {run.stderr()}")
        row = await execution_of(db, run)
        if row is None or row["status"] != "Running":
            return None
        running = ("wait", 1, "Running") in await attempts(db, row["execution_id"])
        return row["execution_id"] if running else None

    return await until(check, timeout, "the delay node to be Running", 0.02)


async def status_is(db, run: Run, *statuses: str, timeout: float) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        row = await execution_of(db, run)
        return row if row is not None and row["status"] in statuses else None

    return await until(check, timeout, f"the execution to be {'/'.join(statuses)}", 0.01)


# -- 1. a cancel from any process ---------------------------------------------------------------


async def test_a_cancel_from_another_process_ends_dwf_run_within_a_second(db, runs):
    run = runs.run()
    execution_id = await waiting(db, run)
    cancel = runs.cli("executions", "cancel", str(execution_id))
    assert cancel.returncode == 0, cancel.stderr
    assert "cancel requested" in cancel.stdout
    final = await status_is(db, run, "Cancelled", "Succeeded", "Failed", timeout=10)
    # A Cancelled execution did not succeed: 1, like a failed one (130 is for its own Ctrl-C).
    code = await run.exited(timeout=10)
    # By the database's clock: the command's own exit takes longer than `dwf run` needs.
    latency = (final["finished_at"] - final["cancel_requested_at"]).total_seconds()
    print(f"\ncancel from another process: Cancelled {latency:.3f} s after it was asked")
    assert code == 1, run.stderr()
    assert final["status"] == "Cancelled"
    assert final["error"]["type"] == "Cancelled"
    assert await attempts(db, execution_id) == [("wait", 1, "Cancelled")]
    assert f"execution {execution_id}: Cancelled" in run.stdout()
    assert "Traceback" not in run.stderr()


# -- 2. Ctrl-C ----------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["text", "json"])
async def test_ctrl_c_cancels_the_execution_and_exits_130(db, runs, output):
    run = runs.run("--output", output)
    execution_id = await waiting(db, run)
    run.proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    code = await run.exited(timeout=10)
    print(f"\nCtrl-C ({output}): exit after {time.monotonic() - sent:.3f} s")
    stderr = run.stderr()
    assert code == 130, stderr
    assert (
        f"dwf run: cancelling execution {execution_id} (Ctrl-C again to leave it to a worker)"
        in stderr.splitlines()
    )
    assert "Traceback" not in stderr and "Aborted" not in stderr
    final = (await execution_of(db, run)) or {}
    assert final["status"] == "Cancelled"
    assert final["error"]["type"] == "Cancelled"
    assert await attempts(db, execution_id) == [("wait", 1, "Cancelled")]
    assert await rows(db, "SELECT * FROM execution_queue") == []
    if output == "json":
        document = json.loads(run.stdout())
        assert document["status"] == "Cancelled"
        assert document["nodes"]["wait"]["status"] == "Cancelled"
    else:
        assert f"execution {execution_id}: Cancelled" in run.stdout()


async def test_a_second_ctrl_c_leaves_at_once_and_a_worker_resumes_the_execution(db, runs):
    """The cancel is held up deterministically: the test locks the execution's row, so the
    cancel's UPDATE waits (as it would on a busy or unreachable database) until the second
    Ctrl-C; the process then leaves its execution Running, under a lease that expires."""
    run = runs.run(**FAST)
    execution_id = await waiting(db, run)
    async with db.transaction() as conn:
        # NO KEY UPDATE: blocks the cancel's UPDATE but not the run's own inserts (FK checks).
        await conn.execute(
            "SELECT 1 FROM workflow_executions WHERE execution_id = %s FOR NO KEY UPDATE",
            (execution_id,),
        )
        run.proc.send_signal(signal.SIGINT)
        await until(
            lambda: cancel_waits_for_the_lock(db), 10, "the cancel to wait for the row lock"
        )
        assert f"cancelling execution {execution_id}" in run.stderr()
        run.proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        code = await run.exited(timeout=5)
        print(f"\nsecond Ctrl-C: exit after {time.monotonic() - sent:.3f} s")
    stderr = run.stderr()
    assert code == 130, stderr
    assert (
        f"dwf run: left execution {execution_id} Running; a worker resumes it once its lease "
        "expires" in stderr.splitlines()
    )
    assert "Traceback" not in stderr and "Aborted" not in stderr
    left = (await execution_of(db, run)) or {}
    assert left["status"] == "Running" and left["cancel_requested_at"] is None
    assert await attempts(db, execution_id) == [("wait", 1, "Running")]
    # As it says: a worker claims it once the lease (2 s here) expires and attempts the node
    # that was in flight again.
    runs.worker()

    async def resumed() -> bool:
        return ("wait", 2, "Running") in await attempts(db, execution_id)

    await until(resumed, 30, "a worker to resume the execution")
    assert (await attempts(db, execution_id))[0] == ("wait", 1, "RetriableFailure")


async def cancel_waits_for_the_lock(db) -> bool:
    found = await rows(
        db,
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query LIKE %s",
        "%cancel_requested_at%",
    )
    return bool(found)
