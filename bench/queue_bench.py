"""Queue throughput and latency with real worker processes:
`python bench/queue_bench.py [--seconds 60] [--workers 2] [--database-url URL]`.

With --database-url (or DWF_DATABASE_URL) it works in a scratch database it creates on that
server and drops afterwards; without, it uses a private embedded Postgres (pgserver) in a
temporary home, as a fresh `dwf` would, and stops it at the end. It measures, in this order:

1. latency: with idle `dwf worker` processes waiting on LISTEN, single executions of a 1-node
   workflow enqueued one at a time (`Starts.start`, spaced); enqueue-to-start is the
   execution's `started_at` minus the `created_at` of its `ExecutionCreated` event, both by the
   database clock. That event is written in the enqueue transaction just before the queue row, the
   NOTIFY and COMMIT, so the figure is a slight overestimate of commit-to-start;
2. throughput: executions of a 3-node workflow enqueued through `Starts.start` by concurrent
   producers, keeping at most --backlog queued, for --warmup and then the measured --seconds;
   the rate is executions reaching a terminal status per second of that window (`finished_at`,
   database clock), overall and per 5 s window; then the backlog must drain, every execution
   Succeeded. Commits per execution come from pg_stat_database (every session counts); the CPU
   the workers, the producers (this process), the Postgres server and anything else used
   meanwhile, from /proc;
3. the commit rate of the database, the physical limit: single-row INSERT + COMMIT from 2
   concurrent connections for 10 s (and through `pgbench` when it is installed).

A fixed piece of Python is timed before and after: on a VM, a busy host slows everything without
showing in the guest's CPU accounts, and this tells such runs apart.

Exits 1 when a target is missed (after printing everything). DWF_BENCH_PROFILE_DIR=<dir> runs the
workers under cProfile, a `.prof` file per worker in <dir> (slower; for finding where time goes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

# bench/ is on sys.path when run as a script
from engine_bench import echo, scratch_database, workflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.daemon import Daemon
from runner.engine.requests import StartRequest
from runner.settings import Settings
from runner.store import queue
from tests.waiting import until

TARGET_RATE = 300.0  # executions/s, 2 workers, 3-node workflow, sustained
TARGET_P50_MS = 10.0
TARGET_P99_MS = 50.0
WINDOW_SECONDS = 5
COMMIT_SECONDS = 10.0
COMMIT_CLIENTS = 2
READY_TIMEOUT_SECONDS = 60.0
DRAIN_TIMEOUT_SECONDS = 180.0
STALL_SECONDS = 15.0
SPEED_SPREAD = 1.15  # probes slower than the idle ones by more: the host slowed us down
NOISY_CORES = 0.15  # CPU used by processes that are not ours nor Postgres: another load ran
TERMINAL = ("Succeeded", "Failed", "Cancelled")


THREE = workflow("queue-bench-3", [echo("a", "b"), echo("b", "c"), echo("c")])
ONE = workflow("queue-bench-1", [echo("a")])


# -- worker processes ---------------------------------------------------------------------------


@dataclass
class Workers:
    """N `dwf worker` processes, logging JSON to one file each."""

    url: str
    count: int
    logs: Path
    executions: int
    pool_size: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        dwf = str(Path(sys.executable).with_name("dwf"))
        env = dict(os.environ)
        env.update(
            DWF_DATABASE_URL=self.url,
            DWF_LOG_FORMAT="json",
            DWF_WORKER_EXECUTIONS=str(self.executions),
            DWF_POOL_MAX_SIZE=str(self.pool_size),
        )
        profile_dir = os.environ.get("DWF_BENCH_PROFILE_DIR")
        self.logs.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            command = [dwf, "worker"]
            if profile_dir:
                out = Path(profile_dir) / f"worker-{i}-{os.getpid()}-{time.time_ns()}.prof"
                command = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "runner"]
                command.append("worker")
            log = (self.logs / f"worker-{i}.log").open("wb")
            self.processes.append(
                subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
            log.close()

    async def ready(self) -> None:
        """Wait until every worker has logged `worker started` and LISTENs (its listener
        connects just after that line, and LISTENs on the child channel last)."""
        last_listen = f'LISTEN "{queue.CHILD_CHANNEL}"'

        async def listening() -> bool:
            started = 0
            for i, process in enumerate(self.processes):
                text = (self.logs / f"worker-{i}.log").read_text(errors="replace")
                if process.poll() is not None:
                    raise RuntimeError(f"worker {i} exited {process.returncode}:\n{text[-2000:]}")
                started += '"worker started"' in text
            if started < len(self.processes):
                return False
            async with await connect(self.url) as conn:
                listeners = await scalar(
                    conn,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'idle' AND query = %s",
                    last_listen,
                )
            return listeners >= len(self.processes)

        await until(listening, READY_TIMEOUT_SECONDS, "every worker to start and LISTEN")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def errors(self) -> list[str]:
        """Log lines at error level (exceptions in a worker), across every worker."""
        return worker_errors(self.logs)


def worker_errors(logs: Path) -> list[str]:
    """The lines at error level (or a traceback) in the `worker-*.log` files of `logs`."""
    lines = []
    for path in sorted(logs.glob("worker-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"level": "error"' in line or "Traceback" in line:
                lines.append(f"{path.name}: {line[:300]}")
    return lines


@contextlib.asynccontextmanager
async def running_workers(workers: Workers) -> AsyncIterator[Workers]:
    workers.start()
    try:
        await workers.ready()
        yield workers
    finally:
        await asyncio.to_thread(workers.stop)


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def scalar(conn: psycopg.AsyncConnection[Any], query: str, *params: Any) -> Any:
    cur = await conn.execute(query, params or None)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def commit_counters(url: str) -> tuple[int, int]:
    """(xact_commit of this database, WAL syncs of the server) from a fresh connection.

    Backends publish their counters at the latest when they exit; every connection that did
    work has been closed before this is read."""
    async with await connect(url) as conn:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        commits = await scalar(
            conn,
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        syncs = await scalar(conn, "SELECT wal_sync FROM pg_stat_wal")
    return int(commits), int(syncs)


# -- latency ------------------------------------------------------------------------------------


async def latency(
    settings: Settings, workers: Workers, count: int, spacing: float
) -> dict[str, float]:
    async with running_workers(workers), Daemon(settings) as daemon:
        ids: list[uuid.UUID] = []
        for i in range(count + 5):  # the first few warm the workers' caches; not counted
            request = StartRequest(workflow_id=ONE["id"], trigger={"n": i})
            row, _ = await daemon.starts.start(request)
            if i >= 5:
                ids.append(row.execution_id)
            await asyncio.sleep(spacing)
        async with await connect(db_url(settings)) as conn:
            await wait_terminal(conn, ids)
            cur = await conn.execute(
                """
                SELECT EXTRACT(EPOCH FROM e.started_at - c.created_at) * 1000 AS ms,
                       e.status
                FROM workflow_executions e
                JOIN execution_events c ON c.execution_id = e.execution_id
                    AND c.kind = 'ExecutionCreated'
                WHERE e.execution_id = ANY(%s)
                """,
                (ids,),
            )
            rows = await cur.fetchall()
    ms = sorted(float(r[0]) for r in rows)
    failed = sum(r[1] != "Succeeded" for r in rows)
    return {
        "count": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": ms[-1],
        "not_succeeded": failed,
    }


async def wait_terminal(conn: psycopg.AsyncConnection[Any], ids: list[uuid.UUID]) -> None:
    async def ended() -> bool:
        left = await scalar(
            conn,
            "SELECT count(*) FROM workflow_executions WHERE execution_id = ANY(%s)"
            " AND status <> ALL(%s)",
            ids,
            list(TERMINAL),
        )
        return left == 0

    await until(ended, DRAIN_TIMEOUT_SECONDS, f"{len(ids)} executions to end")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


# -- throughput ---------------------------------------------------------------------------------


async def throughput(
    settings: Settings,
    workers: Workers,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Producers keep the queue fed (at most `args.backlog` deep) for a warm-up and then the
    measured `args.seconds`; executions finished per second in the measured window."""
    url = db_url(settings)
    commits_before, syncs_before = await commit_counters(url)
    async with (
        running_workers(workers),
        Daemon(settings) as daemon,
        await connect(url) as monitor,
    ):
        depth = enqueued = since_poll = 0
        probes: list[float] = []
        begun = await scalar(monitor, "SELECT clock_timestamp()")
        pm = await find_postmaster(monitor)
        stop_at = time.monotonic() + args.warmup + args.seconds  # set again at t0

        async def produce() -> None:
            nonlocal enqueued, since_poll
            while time.monotonic() < stop_at:
                if depth + since_poll >= args.backlog:
                    await asyncio.sleep(0.002)
                    continue
                since_poll += 1
                await daemon.starts.start(StartRequest(THREE["id"], {"n": enqueued}))
                enqueued += 1

        async def watch() -> None:
            nonlocal depth, since_poll
            while time.monotonic() < stop_at:
                seen = since_poll
                depth = await scalar(monitor, "SELECT count(*) FROM execution_queue")
                since_poll -= seen
                await asyncio.sleep(0.05)

        async def mark() -> tuple[Any, CpuSample, Any, CpuSample]:
            nonlocal stop_at
            await asyncio.sleep(args.warmup)
            t0, cpu0 = await scalar(monitor, "SELECT clock_timestamp()"), cpu_sample(workers, pm)
            stop_at = time.monotonic() + args.seconds
            while (left := stop_at - time.monotonic()) > 0:
                await asyncio.sleep(min(left, WINDOW_SECONDS))
                probes.append(speed_probe())  # blocks the producers ~12 ms every 5 s
            cpu1 = cpu_sample(workers, pm)
            return t0, cpu0, t0 + timedelta(seconds=args.seconds), cpu1

        marks, *_ = await asyncio.gather(
            mark(), watch(), *(produce() for _ in range(args.producers))
        )
        t0, cpu0, t1, cpu1 = marks
        left_at_end = await scalar(monitor, "SELECT count(*) FROM execution_queue")
        drain_seconds, stalls = await drain(monitor)
        cur = await monitor.execute(
            """
            SELECT floor(EXTRACT(EPOCH FROM finished_at - %(t0)s) / %(w)s)::int AS window,
                   count(*)
            FROM workflow_executions
            WHERE workflow_id = %(wf)s AND finished_at >= %(t0)s AND finished_at < %(t1)s
            GROUP BY 1 ORDER BY 1
            """,
            {"t0": t0, "t1": t1, "w": WINDOW_SECONDS, "wf": THREE["id"]},
        )
        windows = dict(await cur.fetchall())
        cur = await monitor.execute(
            "SELECT status, count(*) FROM workflow_executions WHERE workflow_id = %s"
            " AND created_at >= %s GROUP BY 1",
            (THREE["id"], begun),
        )
        statuses = dict(await cur.fetchall())
    commits_after, syncs_after = await commit_counters(url)
    span = (t1 - t0).total_seconds()
    finished_in_window = sum(windows.values())
    rates = [windows.get(w, 0) / WINDOW_SECONDS for w in range(round(span / WINDOW_SECONDS))]
    total = sum(statuses.values())
    return {
        "seconds": span,
        "enqueued": enqueued,
        "finished_in_window": finished_in_window,
        "rate": finished_in_window / span,
        "min_window": min(rates or [0.0]),
        "max_window": max(rates or [0.0]),
        "windows": rates,
        "left_at_end": left_at_end,
        "total": total,
        "succeeded": statuses.get("Succeeded", 0),
        "commits_per_execution": (commits_after - commits_before) / max(total, 1),
        "wal_syncs_per_execution": (syncs_after - syncs_before) / max(total, 1),
        "cpu": cpu_split(cpu0, cpu1),
        "drain_seconds": drain_seconds,
        "stalls": stalls,
        "probes": probes,
    }


async def drain(monitor: psycopg.AsyncConnection[Any]) -> tuple[float, list[str]]:
    """Wait until the queue is empty (everything enqueued ended). Returns the seconds it took,
    and, when it stopped shrinking for STALL_SECONDS (claims that nobody works on), what the
    queue still held then; it gives up waiting at that point."""
    start = time.monotonic()
    last, last_change = -1, start
    while left := await scalar(monitor, "SELECT count(*) FROM execution_queue"):
        now = time.monotonic()
        if left != last:
            last, last_change = left, now
        elif now - last_change > STALL_SECONDS:
            cur = await monitor.execute(
                """
                SELECT q.status, q.lease_owner, q.deliveries, e.status, count(*),
                       round(EXTRACT(EPOCH FROM now() - min(q.claimed_at))::numeric, 1),
                       round(EXTRACT(EPOCH FROM min(q.lease_expires_at) - now())::numeric, 1)
                FROM execution_queue q JOIN workflow_executions e USING (execution_id)
                GROUP BY 1, 2, 3, 4
                """
            )
            return now - start, [
                f"{n} queue rows {queued} by {owner} (deliveries {deliveries}), execution "
                f"{status}, claimed {age} s ago, lease still valid for {valid} s"
                for queued, owner, deliveries, status, n, age, valid in await cur.fetchall()
            ]
        await asyncio.sleep(0.1)
    return time.monotonic() - start, []


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds so far (Linux /proc): the machine (busy, all), the workers, this process,
    and the Postgres server (when it runs on this machine; exited backends included)."""

    busy: float
    total: float
    workers: float
    me: float
    postgres: float


def cpu_sample(workers: Workers, postmaster: int | None) -> CpuSample:
    tick = os.sysconf("SC_CLK_TCK")
    busy = total = worker_seconds = postgres = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ticks = [int(f) for f in fields[:8]]
        total = sum(ticks) / tick
        busy = total - (ticks[3] + ticks[4]) / tick  # minus idle and iowait
        worker_seconds = sum(_cpu(p.pid)[0] for p in workers.processes) / tick
        if postmaster is not None:
            own, reaped = _cpu(postmaster)
            postgres = own + reaped
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        if _ppid(int(entry.name)) == postmaster:
                            postgres += _cpu(int(entry.name))[0]
            postgres /= tick
    return CpuSample(busy, total, worker_seconds, time.process_time(), postgres)


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu(pid: int) -> tuple[int, int]:
    """(utime + stime, cutime + cstime: its exited children's) of a process, in ticks."""
    stat = _stat(pid)
    return int(stat[11]) + int(stat[12]), int(stat[13]) + int(stat[14])


def _ppid(pid: int) -> int:
    return int(_stat(pid)[1])


async def find_postmaster(conn: psycopg.AsyncConnection[Any]) -> int | None:
    """The pid of the Postgres server when it runs on this machine (our backend's parent)."""
    backend = await scalar(conn, "SELECT pg_backend_pid()")
    with contextlib.suppress(OSError, ValueError, IndexError):
        parent = _ppid(backend)
        if Path(f"/proc/{parent}/comm").read_text().strip() in ("postgres", "postmaster"):
            return parent
    return None


def cpu_split(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """CPU cores used on average: workers, producers (this process), Postgres, anything else."""
    wall = (after.total - before.total) / (os.cpu_count() or 1)
    if wall <= 0:
        return {}
    split = {
        "busy": after.busy - before.busy,
        "workers": after.workers - before.workers,
        "producers": after.me - before.me,
        "postgres": after.postgres - before.postgres,
    }
    split = {k: v / wall for k, v in split.items()}
    split["other"] = split["busy"] - split["workers"] - split["producers"] - split["postgres"]
    return split


# -- the commit rate ----------------------------------------------------------------------------


async def commit_rate(url: str) -> float:
    """Single-row INSERT + COMMIT transactions per second from concurrent connections."""
    async with await connect(url) as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS dwf_bench_commits"
            " (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz DEFAULT now())"
        )
    counts = [0] * COMMIT_CLIENTS

    async def client(k: int, stop_at: float) -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            while time.monotonic() < stop_at:
                await conn.execute("INSERT INTO dwf_bench_commits DEFAULT VALUES")
                await conn.commit()
                counts[k] += 1

    start = time.monotonic()
    await asyncio.gather(*(client(k, start + COMMIT_SECONDS) for k in range(COMMIT_CLIENTS)))
    elapsed = time.monotonic() - start
    async with await connect(url) as conn:
        await conn.execute("DROP TABLE dwf_bench_commits")
    return sum(counts) / elapsed


def pgbench_rate(url: str) -> float | None:
    """The same transaction through the `pgbench` binary, when one is installed."""
    binary = shutil.which("pgbench")
    if binary is None:
        with contextlib.suppress(ImportError):
            import pgserver

            bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
            binary = str(bundled) if bundled.exists() else None
    if binary is None:
        return None
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS dwf_bench_commits"
            " (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz DEFAULT now())"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write("INSERT INTO dwf_bench_commits DEFAULT VALUES;\n")
        script.flush()
        options = f"-n -c {COMMIT_CLIENTS} -j {COMMIT_CLIENTS} -T {int(COMMIT_SECONDS)}".split()
        result = subprocess.run(
            [binary, *options, "-f", script.name, url],
            capture_output=True,
            text=True,
            check=False,
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE dwf_bench_commits")
    for line in result.stdout.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    return None


# -- the run ------------------------------------------------------------------------------------


def speed_probe() -> float:
    """CPU milliseconds of this thread for a fixed piece of Python. On a VM, a busy or throttling
    host slows everything without showing in the guest's accounts, but shows here: compare the
    probes taken during a measurement with those of the idle machine."""
    start = time.thread_time()
    total = 0
    for i in range(60_000):
        total += hash((i, "x")) & 7
    json.dumps([{"a": i, "b": str(i)} for i in range(4_000)])
    return (time.thread_time() - start) * 1000


def idle_speed() -> float:
    return min(speed_probe() for _ in range(5))


def db_url(settings: Settings) -> str:
    assert settings.database_url is not None
    return settings.database_url


async def measure(args: argparse.Namespace, settings: Settings, logs: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    async with Daemon(settings) as daemon:  # migrates
        for definition in (THREE, ONE):
            await daemon.versions.record(definition, tenant=settings.tenant, source_kind="local")
    url = db_url(settings)
    async with await connect(url) as conn:
        figures["postgres"] = await scalar(conn, "SHOW server_version")
        figures["sync"] = await scalar(conn, "SHOW synchronous_commit")
        figures["fsync"] = await scalar(conn, "SHOW fsync")

    def workers(phase: str) -> Workers:
        return Workers(url, args.workers, logs / phase, args.worker_executions, args.pool_size)

    figures["speed_before"] = idle_speed()
    lat_workers = workers("latency")
    figures["latency"] = await latency(settings, lat_workers, args.latency_count, args.spacing)
    tp_workers = workers("throughput")
    figures["throughput"] = await throughput(settings, tp_workers, args)
    figures["speed_after"] = idle_speed()
    figures["worker_errors"] = lat_workers.errors() + tp_workers.errors()
    figures["commits_per_s"] = await commit_rate(url)
    figures["pgbench_per_s"] = await asyncio.to_thread(pgbench_rate, url)
    return figures


def report(args: argparse.Namespace, figures: dict[str, Any]) -> bool:
    """Print every figure; whether every target was met."""
    lat, tp = figures["latency"], figures["throughput"]
    missed: list[str] = []

    def check(name: str, passed: bool) -> str:
        if not passed:
            missed.append(name)
        return "ok" if passed else "MISSED"

    before, after = figures["speed_before"], figures["speed_after"]
    during = statistics.median(tp["probes"]) if tp["probes"] else float("nan")
    print(
        f"speed probe (CPU ms of a fixed Python loop): idle {before:.1f} before, {after:.1f} "
        f"after; {during:.1f} (median) during the throughput window"
    )
    if during > SPEED_SPREAD * min(before, after):
        print("  WARNING: the machine ran slower during the window (a busy or throttling host)")
    pg = figures["postgres"]
    print(f"postgres: {pg}, fsync {figures['fsync']}, synchronous_commit {figures['sync']}")
    print(
        f"latency: {lat['count']} single executions {args.spacing * 1000:g} ms apart, idle workers"
    )
    p50 = check("latency p50", lat["p50"] <= TARGET_P50_MS)
    p99 = check("latency p99", lat["p99"] <= TARGET_P99_MS)
    print(f"  enqueue-to-start p50: {lat['p50']:.1f} ms (<= {TARGET_P50_MS:g}) {p50}")
    print(f"  enqueue-to-start p99: {lat['p99']:.1f} ms (<= {TARGET_P99_MS:g}) {p99}")
    print(f"  p90 {lat['p90']:.1f} ms, max {lat['max']:.1f} ms")

    rate = tp["rate"]
    print(
        f"throughput: 3-node workflow, {args.workers} workers, {tp['seconds']:g} s measured "
        f"after {args.warmup:g} s of warm-up, at most {args.backlog} queued"
    )
    verdict = check("throughput", rate >= TARGET_RATE)
    print(f"  executions/s, enqueue to finish: {rate:.1f} (>= {TARGET_RATE:g}) {verdict}")
    windows = " ".join(f"{r:.0f}" for r in tp["windows"])
    print(
        f"  per {WINDOW_SECONDS} s window: min {tp['min_window']:.0f}, max {tp['max_window']:.0f}"
    )
    print(f"    {windows}")
    complete = check("all succeeded", tp["succeeded"] == tp["total"] == tp["enqueued"])
    print(
        f"  enqueued {tp['enqueued']}, finished in the window {tp['finished_in_window']}, queued "
        f"at its end {tp['left_at_end']}; {tp['succeeded']} of {tp['total']} Succeeded {complete}"
    )
    if tp["stalls"]:
        stalled = check("queue drained", False)
        print(
            f"  the queue stopped draining {tp['drain_seconds']:.0f} s after the window {stalled}:"
        )
        for line in tp["stalls"]:
            print(f"    {line}")
    elif tp["drain_seconds"]:
        drained = tp["left_at_end"] / tp["drain_seconds"]
        print(
            f"  after the window, with the producers stopped, the backlog drained at "
            f"{drained:.0f}/s ({tp['drain_seconds']:.1f} s)"
        )
    print(
        f"  commits per execution: {tp['commits_per_execution']:.2f} (pg_stat_database.xact_commit,"
        f" every session); WAL flushes per execution: {tp['wal_syncs_per_execution']:.2f}"
    )
    cpu = tp["cpu"]
    if cpu:
        print(
            f"  CPU cores busy: {cpu['busy']:.2f} of {os.cpu_count()}: workers "
            f"{cpu['workers']:.2f}, producers {cpu['producers']:.2f}, Postgres "
            f"{cpu['postgres']:.2f}, other processes {cpu['other']:.2f}"
        )
        if cpu["other"] > NOISY_CORES:
            print(
                f"  WARNING: other processes used {cpu['other']:.2f} cores meanwhile: the "
                "machine was not quiet; rerun for figures of this code alone"
            )
        if rate:
            ms = {k: v * 1000 / rate for k, v in cpu.items()}
            print(
                f"  CPU per execution: workers {ms['workers']:.2f} ms, producers "
                f"{ms['producers']:.2f} ms, Postgres {ms['postgres']:.2f} ms"
            )

    commits = figures["commits_per_s"]
    print(f"commit rate: INSERT + COMMIT from {COMMIT_CLIENTS} connections: {commits:.0f}/s")
    if figures["pgbench_per_s"] is not None:
        print(f"  the same through pgbench -c {COMMIT_CLIENTS}: {figures['pgbench_per_s']:.0f}/s")
    if rate:
        print(
            f"executions/s / commits/s: {rate / commits:.3f} (1 : {commits / rate:.1f}); "
            f"{rate:.0f} executions/s take {rate * tp['commits_per_execution']:.0f} commits/s"
        )
    errors = figures["worker_errors"]
    clean = check("no worker errors", not errors and lat["not_succeeded"] == 0)
    print(f"errors in the workers' logs: {len(errors)} {clean}")
    for line in errors[:5]:
        print(f"  {line}")
    if missed:
        print(f"MISSED: {', '.join(missed)}")
    return not missed


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip() + ", "
                break
    return (
        f"machine: {model}{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds fed before it")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default=os.environ.get("DWF_DATABASE_URL"))
    parser.add_argument("--backlog", type=int, default=2000, help="most executions queued")
    parser.add_argument("--producers", type=int, default=8, help="concurrent Starts.start")
    parser.add_argument("--worker-executions", type=int, default=64)
    parser.add_argument("--pool-size", type=int, default=10, help="each worker's pool")
    parser.add_argument("--latency-count", type=int, default=300)
    parser.add_argument("--logs", type=Path, help="keep the workers' logs in this folder")
    parser.add_argument("--spacing", type=float, default=0.05, help="seconds between starts")
    args = parser.parse_args()
    import compileall

    import runner

    compileall.compile_dir(str(Path(runner.__file__).parent), quiet=1)
    from runner import logs

    logs.configure("json", "warning")
    print(machine())
    with tempfile.TemporaryDirectory() as home, scratch_database(args.database_url) as scratch:
        where = "a scratch database on the given server"
        print(f"database: {'embedded pgserver' if scratch is None else where}")
        url = scratch
        if url is None:
            from runner.store import embedded

            url = embedded.embedded_url(Path(home))
        settings = Settings.from_env(
            database_url=url, home=Path(home), pool_max_size=args.producers + 2
        )
        try:
            figures = asyncio.run(measure(args, settings, args.logs or Path(home) / "logs"))
        finally:
            if args.database_url is None:
                from runner.store import embedded

                embedded.stop(Path(home))
    ok = report(args, figures)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
