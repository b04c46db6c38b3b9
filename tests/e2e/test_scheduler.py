"""SPEC §5 with real processes on one Postgres: `dwf serve --roles scheduler` replicas fire every
scheduled time exactly once through a SIGKILL and a restart; catch-up after every replica was
down, per policy; overlap skip and cancelPrevious with a real `dwf worker`; and signed webhooks
against a real `dwf serve` on a port.

The test process registers workflows and reads the database; everything else runs in the
subprocesses. Every wait polls a condition under a timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from runner.daemon import Daemon
from tests.e2e.test_serve import free_port
from tests.e2e.test_workers import DWF, ROOT, rows
from tests.waiting import until, until_sync

pytestmark = pytest.mark.anyio

#: The replica test's length (the issue asks for 3 minutes; shorter runs help while developing).
REPLICA_SECONDS = float(os.environ.get("DWF_TEST_SCHEDULER_SECONDS", "180"))
EVERY_2S = "*/2 * * * * *"


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def logged(self, event: str) -> bool:
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                if json.loads(line).get("event") == event:
                    return True
            except ValueError:
                continue
        return False


@dataclass
class Procs:
    """`dwf` subprocesses against the test database; none outlives the test."""

    database_url: str
    folder: Path
    started: list[Proc] = field(default_factory=list)

    def start(self, name: str, *args: str, **env: str) -> Proc:
        base = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")}
        base |= {
            "DWF_DATABASE_URL": self.database_url,
            "DWF_HOME": str(self.folder / "home"),
            "DWF_LOG_FORMAT": "json",
            "DWF_SCHEDULER_POLL_SECONDS": "1",
            "DWF_POLL_SECONDS": "0.2",
            "DWF_SHUTDOWN_GRACE_SECONDS": "0.5",
            **env,
        }
        log = self.folder / f"{name}-{len(self.started)}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [DWF, *args], cwd=ROOT, env=base, stdout=sink, stderr=sink,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        started = Proc(name, proc, log)
        self.started.append(started)
        return started

    async def scheduler(self, name: str) -> Proc:
        replica = self.start(name, "serve", "--roles", "scheduler")
        await self.ready(replica, "scheduler started")
        return replica

    async def ready(self, proc: Proc, event: str, timeout: float = 30.0) -> None:
        async def up() -> bool:
            if proc.proc.poll() is not None:
                raise AssertionError(f"{proc.name} exited: {proc.log.read_text()[-3000:]}")
            return proc.logged(event)

        await until(up, timeout, f"{proc.name} to log {event!r}")

    def errors(self) -> list[str]:
        found = []
        for proc in self.started:
            for line in proc.log.read_text(errors="replace").splitlines():
                if '"level": "error"' in line or "Traceback" in line:
                    found.append(f"{proc.name}: {line}")
        return found

    def close(self) -> None:
        for proc in self.started:
            if proc.proc.poll() is None:
                proc.proc.kill()
            proc.proc.wait(timeout=10)


@pytest.fixture
def procs(database_url: str, tmp_path: Path):
    group = Procs(database_url, tmp_path)
    try:
        yield group
    finally:
        group.close()


async def register(daemon: Daemon, definition: dict[str, Any]) -> None:
    """Record a workflow version as the API does."""
    await daemon.versions.record(definition, tenant=daemon.settings.tenant, source_kind="api")


def flow(workflow_id: str, *triggers: dict[str, Any], node: dict[str, Any] | None = None):
    return {
        "apiVersion": "dataworkflows/v1", "kind": "Workflow", "id": workflow_id,
        "status": "active", "startNode": "a", "triggers": list(triggers),
        "nodes": [node or {"id": "a", "actionType": "core.echo", "parameters": {"message": "hi"}}],
    }  # fmt: skip


def schedule(trigger_id: str = "tick", **extra: Any) -> dict[str, Any]:
    return {"id": trigger_id, "type": "schedule", "cron": EVERY_2S} | extra


async def fires(db, workflow_id: str | None = None) -> list[dict[str, Any]]:
    return await rows(
        db,
        "SELECT * FROM trigger_fires WHERE (%s::text IS NULL OR workflow_id = %s)"
        " ORDER BY workflow_id, trigger_id, scheduled_at",
        workflow_id, workflow_id,
    )  # fmt: skip


def even_seconds(first: datetime, last: datetime) -> list[datetime]:
    """Every scheduled time of `*/2 * * * * *` in [first, last]."""
    start = first.replace(microsecond=0)
    start += timedelta(seconds=start.second % 2 and 1)
    count = int((last - start).total_seconds() // 2) + 1
    return [start + timedelta(seconds=2 * k) for k in range(max(count, 0))]


@pytest.mark.timeout(REPLICA_SECONDS + 120)
async def test_three_replicas_fire_twenty_schedules_exactly_once_through_a_kill(db, daemon, procs):
    for k in range(20):
        await register(daemon, flow(f"s{k:02}", schedule(overlap="allow")))
    replicas = [await procs.scheduler(f"r{k}") for k in range(3)]
    began = datetime.now(UTC) + timedelta(seconds=2)
    await anyio.sleep(REPLICA_SECONDS / 2)  # the first half of the run, three replicas
    victim = replicas[1]

    async def victim_decided() -> bool:
        return any(decided_by(f, victim) for f in await fires(db))

    await until(victim_decided, 30, "r1 to decide a scheduled time before it is killed")
    victim.proc.kill()  # SIGKILL: whatever it was firing is rolled back
    victim.proc.wait(timeout=10)
    killed_at = datetime.now(UTC)

    async def others_go_on() -> bool:
        return any(f["scheduled_at"] > killed_at for f in await fires(db))

    await until(others_go_on, 30, "the other replicas to fire a time after the kill")
    restarted = await procs.scheduler("r1-again")
    await anyio.sleep(REPLICA_SECONDS / 2 - 3)
    ended = datetime.now(UTC) - timedelta(seconds=2)

    expected = even_seconds(began, ended)

    async def all_fired() -> bool:
        found = await fires(db)
        return len({(f["workflow_id"], f["scheduled_at"]) for f in found
                    if f["scheduled_at"] in set(expected)}) == 20 * len(expected)  # fmt: skip

    await until(all_fired, 20, "every expected time to be decided")
    for replica in (replicas[0], replicas[2], restarted):
        replica.proc.send_signal(signal.SIGTERM)
        assert replica.proc.wait(timeout=15) == 0

    found = await fires(db)
    executions = await rows(
        db, "SELECT workflow_id, request_id, trigger_type FROM workflow_executions"
    )
    by_request = {(e["workflow_id"], e["request_id"]) for e in executions}
    assert len(by_request) == len(executions)
    for k in range(20):
        workflow_id = f"s{k:02}"
        mine = {f["scheduled_at"]: f for f in found if f["workflow_id"] == workflow_id}
        for at in expected:
            fired = mine.get(at)
            assert fired is not None, f"{workflow_id}: nothing fired for {at}"
            assert fired["outcome"] == "fired", fired
            request_id = f"schedule:tick:{at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            assert (workflow_id, request_id) in by_request
    # Nothing was missed or fired between the scheduled times, by any replica.
    assert not [f for f in found if f["outcome"] != "fired"]
    assert all(f["scheduled_at"].second % 2 == 0 for f in found)
    # Every replica took part, the killed one before its death and its successor after.
    deciders = {f["replica"].split(":")[-2] for f in found}  # host:pid:rand8
    assert {str(p.proc.pid) for p in [*replicas, restarted]} <= deciders
    lag = sorted((f["decided_at"] - f["scheduled_at"]).total_seconds() for f in found)
    assert lag[-1] < 60, "a fire came later than the default grace"
    assert killed_at > began
    assert procs.errors() == []


def decided_by(fire: dict[str, Any], proc: Proc) -> bool:
    """Whether `proc` decided a fire (its replica is `host:pid:rand8`)."""
    return fire["replica"].split(":")[-2] == str(proc.proc.pid)


async def wait_fired(db, workflow_id: str, trigger_ids: list[str], after: datetime) -> None:
    async def fired() -> bool:
        found = await fires(db, workflow_id)
        done = {f["trigger_id"] for f in found if f["scheduled_at"] > after}
        return done >= set(trigger_ids)

    await until(fired, 30, f"{trigger_ids} to fire after {after}")


@pytest.mark.timeout(120)
async def test_catch_up_after_every_replica_was_down_follows_each_policy(db, daemon, procs):
    policies = {
        "all": {"catchup": "all"},
        "latest": {"catchup": "latest"},
        "none": {"catchup": "none"},
        "short-window": {"catchup": "all", "catchupWindow": "5s"},
    }
    triggers = [schedule(name, overlap="allow", misfireGraceTime="1s", **extra)
                for name, extra in policies.items()]  # fmt: skip
    await register(daemon, flow("caught", *triggers))
    first = [await procs.scheduler("a"), await procs.scheduler("b")]
    await wait_fired(db, "caught", list(policies), datetime.now(UTC))
    for replica in first:
        replica.proc.kill()
        replica.proc.wait(timeout=10)
    down_at = datetime.now(UTC)
    await anyio.sleep(13)  # six or seven scheduled times pass with no scheduler
    up_at = datetime.now(UTC)
    await procs.scheduler("c")
    await wait_fired(db, "caught", list(policies), up_at + timedelta(seconds=1))
    found = await fires(db, "caught")

    def outage(trigger_id: str) -> list[dict[str, Any]]:
        """The decisions about times scheduled while nothing ran (after the last fire before
        the kill, up to the restart)."""
        mine = [f for f in found if f["trigger_id"] == trigger_id]
        last_before = max(f["scheduled_at"] for f in mine if f["decided_at"] < down_at)
        return [f for f in mine if last_before < f["scheduled_at"] <= up_at - timedelta(seconds=1)]

    def covered(decisions: list[dict[str, Any]]) -> list[datetime]:
        times = []
        for f in decisions:
            start = f["first_scheduled_at"] or f["scheduled_at"]
            times += [start + timedelta(seconds=2 * k) for k in range(f["fires"])]
        return sorted(times)

    for name in policies:
        decided = outage(name)
        times = covered(decided)
        # Every time of the outage decided exactly once: 2 s apart, no gap, no repeat.
        assert len(times) >= 5, (name, decided)
        assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(times))
    outcomes = {name: [(f["outcome"], f["fires"]) for f in outage(name)] for name in policies}
    assert {o for o, _ in outcomes["all"]} == {"fired"}
    assert [o for o, _ in outcomes["latest"]] == ["missed", "fired"]
    assert [o for o, _ in outcomes["none"]] == ["missed"]
    short = outage("short-window")
    assert short[0]["outcome"] == "missed" and "older than catchupWindow (5s)" in short[0]["reason"]
    assert {f["outcome"] for f in short[1:]} == {"fired"} and 1 <= len(short[1:]) <= 3
    # Each fired catch-up time has its own execution, named by its scheduled time.
    executions = {e["request_id"] for e in await rows(
        db, "SELECT request_id FROM workflow_executions WHERE workflow_id = 'caught'")}  # fmt: skip
    for name in policies:
        for f in outage(name):
            if f["outcome"] == "fired":
                stamp = f["scheduled_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
                assert f"schedule:{name}:{stamp}" in executions
    assert procs.errors() == []


@pytest.mark.timeout(120)
async def test_overlap_skip_and_cancel_previous_with_a_real_worker(db, daemon, procs):
    delay = {"id": "a", "actionType": "core.delay", "parameters": {"duration": "5s"}}
    long = {"id": "a", "actionType": "core.delay", "parameters": {"duration": "60s"}}
    await register(daemon, flow("skips", schedule(), node=delay))
    await register(daemon, flow("cancels", schedule(overlap="cancelPrevious"), node=long))
    worker = procs.start("worker", "worker")
    await procs.ready(worker, "worker started")
    await procs.scheduler("s")

    async def enough() -> bool:
        done = await rows(
            db,
            "SELECT workflow_id FROM workflow_executions WHERE status IN"
            " ('Succeeded', 'Cancelled') GROUP BY workflow_id HAVING count(*) >= 2",
        )
        return {r["workflow_id"] for r in done} == {"skips", "cancels"}

    await until(enough, 60, "two finished runs of each workflow")
    runs = await rows(
        db,
        "SELECT workflow_id, status, started_at, finished_at, request_id FROM workflow_executions"
        " WHERE started_at IS NOT NULL ORDER BY started_at",
    )
    skips = [r for r in runs if r["workflow_id"] == "skips"]
    # skip: never two runs at once, and the times that came meanwhile are logged as skipped.
    for a, b in itertools.pairwise(skips):
        assert a["finished_at"] is not None and a["finished_at"] <= b["started_at"]
    skipped = [f for f in await fires(db, "skips") if f["outcome"] == "skipped"]
    assert len(skipped) >= 2
    assert all("overlap: skip" in f["reason"] for f in skipped)
    # cancelPrevious: every run but the newest was cancelled by the fire after it.
    cancels = [r for r in runs if r["workflow_id"] == "cancels"]
    assert {r["status"] for r in cancels[:-1]} == {"Cancelled"}
    assert all(r["status"] != "Succeeded" for r in cancels)
    assert procs.errors() == []


def test_signed_webhooks_against_a_real_server(database_url, tmp_path, procs):
    from tests.e2e.test_serve import register

    hook = {"id": "gh", "type": "webhook", "path": "gh/push", "secretRef": "hook-key",
            "signature": "github", "requestIdHeader": "X-GitHub-Delivery"}  # fmt: skip
    register(database_url, tmp_path, flow("hooked", hook))
    port = free_port()
    server = procs.start(
        "api", "serve", "--roles", "api,worker", "--port", str(port),
        DWF_SECRET_HOOK_KEY="k3y",
    )  # fmt: skip
    anyio.run(procs.ready, server, "api started")
    body = json.dumps({"ref": "main"}).encode()
    signature = "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": signature, "X-GitHub-Delivery": "42",
               "Content-Type": "application/json"}  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/v1/hooks/default/gh/push"
    with httpx.Client(timeout=10) as client:

        def delivered() -> httpx.Response | None:
            try:
                return client.post(url, content=body, headers=headers)
            except httpx.TransportError:  # "api started" is logged before the port is bound
                return None

        first = until_sync(delivered, 10, "the server to take the first delivery", 0.1)
        again = client.post(url, content=body, headers=headers)
        forged = client.post(url, content=body, headers=headers | {"X-Hub-Signature-256": "x"})
        unknown = client.post(url.replace("gh/push", "nope"), content=body, headers=headers)
        assert (first.status_code, again.status_code) == (202, 200), first.text
        assert again.json()["executionId"] == first.json()["executionId"]
        assert (forged.status_code, unknown.status_code) == (401, 404)
        status = client.get(f"http://127.0.0.1:{port}{first.json()['statusUrl']}").json()
        assert status["workflowId"] == "hooked"
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=15) == 0


async def test_dwf_triggers_list_and_history(db, daemon, database_url, tmp_path):
    from runner.store import triggers as store
    from runner.triggers import catchup, fire

    await register(
        daemon,
        flow("listed", schedule("tick", overlap="allow"),
             {"id": "hook", "type": "webhook", "path": "listed/hook"}),
    )  # fmt: skip
    async with db.connection() as conn:
        [row] = await store.of_type(conn, "schedule")
    at = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    await fire.fire(db, daemon.starts, row, at, replica="test")
    late = at + timedelta(seconds=2)
    await fire.miss(db, row, catchup.Missed(late, late, 1, "a reason"), replica="test")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")} | {
        "DWF_DATABASE_URL": database_url, "DWF_HOME": str(tmp_path / "home"),
    }  # fmt: skip

    def dwf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DWF, "triggers", *args], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip

    listed = dwf("list", "listed", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    items = {t["id"]: t for t in json.loads(listed.stdout)["items"]}
    assert len(items["tick"]["nextFireTimes"]) == 3
    assert items["hook"]["url"] == "/api/v1/hooks/default/listed/hook"
    history = dwf("history", "listed", "--trigger", "tick", "--output", "json")
    assert history.returncode == 0, history.stderr
    entries = json.loads(history.stdout)["items"]
    assert [(e["outcome"], e["reason"]) for e in entries] == [
        ("missed", "a reason"),
        ("fired", None),
    ]
    assert entries[1]["scheduledAt"] == "2026-03-29T01:00:00+00:00"
    table = dwf("history", "listed")
    assert table.returncode == 0 and "missed" in table.stdout and "a reason" in table.stdout
    unknown = dwf("history", "nope")
    assert unknown.returncode == 1 and "'nope' does not exist" in unknown.stderr
