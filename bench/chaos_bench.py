"""A soak under faults: `python bench/chaos_bench.py [--seconds 600] [--every 20]
[--database-url URL]`.

Two `dwf worker` processes (lease 3 s, heartbeat 1 s) connect to Postgres through a TCP proxy
(`tests/faults.py`); this process starts executions of a five-node fan-out/fan-in DAG at a
steady rate, straight to the database, sending a start again with its request id when it meets
a fault. Every `--every` seconds one fault, in turn:

- `kill`: kill -9 a worker holding leases, start a new one in its place;
- `cut`: reset every proxied connection and terminate every backend of the database;
- `pause`: hold the proxy's traffic for longer than the lease (a partition), then let it go;
- `refuse`: the database refuses every connection (`ALLOW_CONNECTIONS false`, its backends
  terminated) for `--outage` seconds (a server restarting, a failover).

Recovery after a fault is the time from its end (by the database clock: the kill, the cut, the
proxy let go) to the first execution that finishes after it. At the end the backlog must drain,
and it prints executions done, lost (started but not Succeeded: must be 0), duplicated nodes (two
Succeeded attempts: must be 0), attempts left Running, and the recovery times per fault kind
(median, p99, max; the target is p99 <= 2 s after connections come back).

The proxy and the server-side faults need a TCP server: pass --database-url (or set
DWF_DATABASE_URL) to a Postgres the bench may create a scratch database on (it drops it at the
end). Exits 1 when a target is missed, after printing everything.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

# bench/ is on sys.path when run as a script
from engine_bench import scratch_database
from queue_bench import idle_speed, machine, worker_errors

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.daemon import Daemon
from runner.engine.requests import StartRequest
from runner.settings import Settings
from tests.faults import Proxy, refusing, terminate_backends, upstream_of
from tests.waiting import until

LEASE_SECONDS = 3.0
WORKER_ENV = {
    "DWF_LEASE_SECONDS": str(LEASE_SECONDS),
    "DWF_HEARTBEAT_SECONDS": "1",
    "DWF_POLL_SECONDS": "0.2",
    "DWF_LOG_FORMAT": "json",
}
PAUSE_SECONDS = LEASE_SECONDS * 1.5  # every lease held when it began has expired at its end
TARGET_RECOVERY_P99_S = 2.0
DRAIN_TIMEOUT_SECONDS = 180.0
FAULTS = ("kill", "cut", "pause", "refuse")


def dag() -> dict[str, Any]:
    """Five nodes: fan-out to three 20 ms delays, fan-in to a join (as tests/e2e's chaos DAG)."""

    def node(node_id: str, action: str, params: dict[str, Any], *targets: str) -> dict[str, Any]:
        found: dict[str, Any] = {"id": node_id, "actionType": action, "parameters": params}
        if targets:
            found["edges"] = [{"targetNode": t} for t in targets]
        return found

    delay = {"duration": "20ms"}
    return {
        "apiVersion": "dataworkflows/v1", "kind": "Workflow", "id": "chaos", "status": "active",
        "startNode": "fan",
        "nodes": [
            node("fan", "core.echo", {"message": "{{ trigger.n }}"}, "d1", "d2", "d3"),
            node("d1", "core.delay", delay, "join"), node("d2", "core.delay", delay, "join"),
            node("d3", "core.delay", delay, "join"),
            node("join", "core.echo", {"message": "{{ nodes.fan.outputs.echo }}"}),
        ],
    }  # fmt: skip


@dataclass
class Workers:
    """`dwf worker` processes through the proxy, each logging JSON to its own file."""

    url: str
    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0

    def start(self) -> subprocess.Popen[bytes]:
        dwf = str(Path(sys.executable).with_name("dwf"))
        env = dict(os.environ) | WORKER_ENV | {"DWF_DATABASE_URL": self.url}
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"worker-{self.started}.log").open("wb") as log:
            process = subprocess.Popen([dwf, "worker"], env=env, stdout=log, stderr=log)
        self.started += 1
        self.processes.append(process)
        return process

    def kill_one(self, index: int) -> None:
        victim = self.processes.pop(index % len(self.processes))
        victim.kill()
        victim.wait()
        self.start()

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


async def db_now(url: str) -> datetime:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT clock_timestamp()")).fetchone()
    assert row is not None
    return row[0]


async def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await (await conn.execute(sql, params or None)).fetchall()


async def count(url: str, sql: str) -> int:
    return int((await query(url, sql))[0][0])


async def produce(daemon: Daemon, rate: float, stop: asyncio.Event, started: list[Any]) -> None:
    for n in itertools.count():
        if stop.is_set():
            return
        request = StartRequest(workflow_id="chaos", trigger={"n": n}, request_id=f"soak-{n}")
        row, _ = await daemon.db.retrying(
            functools.partial(daemon.starts.start, request), seconds=120
        )
        started.append(row.execution_id)
        await asyncio.sleep(1 / rate)


async def fault(
    kind: str, k: int, *, url: str, proxy: Proxy, workers: Workers, outage: float
) -> datetime:
    """Inject one fault; the database time it ended."""
    if kind == "kill":
        await asyncio.to_thread(workers.kill_one, k)
    elif kind == "cut":
        proxy.cut()
        await asyncio.to_thread(terminate_backends, url)
    elif kind == "pause":
        proxy.pause()
        await asyncio.sleep(PAUSE_SECONDS)
        proxy.resume()
    else:
        with refusing(url):
            await asyncio.sleep(outage)
    return await db_now(url)


async def recovery(url: str, after: datetime) -> float:
    """Seconds from `after` to the first execution finished after it."""

    async def first() -> datetime | None:
        rows = await query(
            url, "SELECT min(finished_at) FROM workflow_executions WHERE finished_at > %s", after
        )
        return rows[0][0]

    finished = await until(first, 60, "an execution to finish after the fault", 0.02)
    return (finished - after).total_seconds()


async def soak(args: argparse.Namespace, url: str, logs: Path) -> dict[str, Any]:
    settings = Settings.from_env(database_url=url, home=logs / "home")
    async with Daemon(settings) as daemon:
        await daemon.versions.record(dag(), tenant=settings.tenant, source_kind="local")
        with Proxy(upstream_of(url)) as proxy:
            workers = Workers(proxy.url(url), logs)
            for _ in range(args.workers):
                workers.start()
            started: list[Any] = []
            stop = asyncio.Event()
            producing = asyncio.create_task(produce(daemon, args.rate, stop, started))
            recoveries: dict[str, list[float]] = {kind: [] for kind in FAULTS}
            began = time.monotonic()
            try:
                for k in itertools.count():
                    await asyncio.sleep(args.every)
                    if time.monotonic() - began > args.seconds:
                        break
                    kind = FAULTS[k % len(FAULTS)]
                    ended = await fault(
                        kind, k, url=url, proxy=proxy, workers=workers, outage=args.outage
                    )
                    recoveries[kind].append(await recovery(url, ended))
                    print(f"  {kind:<5} at {time.monotonic() - began:5.0f} s: work resumed "
                          f"{recoveries[kind][-1]:.2f} s after it ended", flush=True)  # fmt: skip
            finally:
                stop.set()
                await producing

            async def drained() -> bool:
                rows = await query(
                    url,
                    "SELECT count(*) FROM workflow_executions"
                    " WHERE status NOT IN ('Succeeded', 'Failed', 'Cancelled')",
                )
                return rows[0][0] == 0

            await until(drained, DRAIN_TIMEOUT_SECONDS, "the backlog to drain", 0.5)
            soaked = time.monotonic() - began
            await asyncio.to_thread(workers.stop)
    succeeded = {
        row[0]
        for row in await query(
            url, "SELECT execution_id FROM workflow_executions WHERE status = 'Succeeded'"
        )
    }
    return {
        "seconds": soaked,
        "started": len(started),
        "done": len(succeeded),
        "lost": len(set(started) - succeeded),
        "duplicated": await count(
            url,
            "SELECT count(*) FROM (SELECT 1 FROM action_executions WHERE status = 'Succeeded'"
            " GROUP BY execution_id, node_id HAVING count(*) > 1) twice",
        ),
        "running": await count(
            url, "SELECT count(*) FROM action_executions WHERE status = 'Running'"
        ),
        "queued": await count(url, "SELECT count(*) FROM execution_queue"),
        "resumed": await count(
            url, "SELECT count(*) FROM action_executions WHERE error_json->>'type' = 'WorkerLost'"
        ),
        "recoveries": recoveries,
        "errors": worker_errors(logs),
        "workers_started": workers.started,
    }


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def report(figures: dict[str, Any]) -> bool:
    """Print the figures; whether every target was met."""
    print(f"soaked {figures['seconds']:.0f} s (backlog drained), {figures['workers_started']} "
          f"worker processes in all")  # fmt: skip
    print(f"executions: {figures['started']} started, {figures['done']} Succeeded, "
          f"lost {figures['lost']} (target 0)")  # fmt: skip
    print(f"nodes with two Succeeded attempts: {figures['duplicated']} (target 0); attempts left "
          f"Running: {figures['running']}; queue rows left: {figures['queued']}; attempts closed "
          f"WorkerLost and run again: {figures['resumed']}")  # fmt: skip
    ok = figures["lost"] == figures["duplicated"] == figures["running"] == figures["queued"] == 0
    connection_faults: list[float] = []
    for kind, values in figures["recoveries"].items():
        if not values:
            continue
        print(f"recovery after {kind:<5} ({len(values):3} faults): median "
              f"{statistics.median(values):.2f} s, p99 {p99(values):.2f} s, "
              f"max {max(values):.2f} s")  # fmt: skip
        if kind != "kill":
            connection_faults += values
    if connection_faults:
        worst = p99(connection_faults)
        met = worst <= TARGET_RECOVERY_P99_S
        print(f"after connections come back: p99 {worst:.2f} s (target <= "
              f"{TARGET_RECOVERY_P99_S:g} s) {'ok' if met else 'MISSED'}")  # fmt: skip
        ok = ok and met
    print(f"worker log lines at error level: {len(figures['errors'])}")
    for line in figures["errors"][:10]:
        print(f"  {line}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long faults go on")
    parser.add_argument("--every", type=float, default=20.0, help="seconds between faults")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds a refusal lasts")
    parser.add_argument("--rate", type=float, default=20.0, help="executions started per second")
    parser.add_argument("--database-url", default=os.environ.get("DWF_DATABASE_URL"))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("needs --database-url (or DWF_DATABASE_URL): a Postgres reachable over TCP")
    from runner import logs

    logs.configure("json", "error")
    print(machine())
    print(f"speed probe before: {idle_speed():.1f} ms")
    with tempfile.TemporaryDirectory() as folder, scratch_database(args.database_url) as url:
        assert url is not None
        figures = asyncio.run(soak(args, url, Path(folder)))
    print(f"speed probe after: {idle_speed():.1f} ms")
    ok = report(figures)
    if args.json:
        print(json.dumps(figures, default=str))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
