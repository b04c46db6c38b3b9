"""The cost of a `/metrics` scrape with a big history: `python bench/metrics_bench.py
[--executions 100000] [--pending 10000] [--running 1000] [--scrapes 50]
[--workflows 0,50,200,1000] [--database-url URL]`.

It fills a scratch database (as bench/engine_bench.py makes one) with `--executions` executions
in one INSERT ... SELECT generate_series (`--pending` of them queued, `--running` held by a
worker's lease, the rest ended) and the most sync runs a tenant keeps, then times
`GET /metrics` through the app (guard, route, the
database read, the exposition) over ASGI, with the cache off (every scrape reads the database
and renders) and on (as served), as the counters of more and more workflows fill the registry
(`--workflows`, up to the label cap). Prints the plan of the gauges' statement, then the median,
spread and p90 of each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx
import psycopg

# bench/ is on sys.path when run as a script
from engine_bench import bench_settings, echo, workflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.daemon import Daemon
from runner.observability import metrics as metrics_module
from runner.settings import Settings
from runner.store import gauges
from runner.store import sync as sync_store

#: The issue's bound for one scrape with 100,000 executions in the database.
BOUND_MS = 50.0

FILL = """
INSERT INTO workflow_executions
    (execution_id, tenant, workflow_id, workflow_version, status, request_id, correlation_id,
     trigger_type, created_at, started_at, finished_at)
SELECT gen_random_uuid(), 'default', 'bench', 1,
       CASE WHEN n <= %(pending)s THEN 'Pending' WHEN n <= %(live)s THEN 'Running'
            ELSE (ARRAY['Succeeded', 'Failed', 'Cancelled'])[1 + n %% 3] END,
       'r' || n, 'c' || n, 'api',
       now() - make_interval(secs => n), now() - make_interval(secs => n),
       CASE WHEN n <= %(live)s THEN NULL ELSE now() - make_interval(secs => n) END
FROM generate_series(1, %(executions)s) AS n
"""
# Pending ones wait for a worker; Running ones are held by a live worker's lease.
QUEUE = """
INSERT INTO execution_queue
    (execution_id, tenant, status, available_at, enqueued_at, lease_owner, lease_expires_at)
SELECT execution_id, tenant, CASE WHEN status = 'Pending' THEN 'ready' ELSE 'claimed' END,
       created_at, created_at,
       CASE WHEN status = 'Running' THEN 'bench-worker' END,
       CASE WHEN status = 'Running' THEN now() + interval '1 hour' END
FROM workflow_executions WHERE status IN ('Pending', 'Running')
"""
SYNC_RUNS = """
INSERT INTO sync_runs (tenant, repo, status, started_at, finished_at)
SELECT 'default', 'bench', (ARRAY['applied', 'unchanged', 'failed'])[1 + n %% 3],
       now() - make_interval(secs => n), now() - make_interval(secs => n)
FROM generate_series(1, %(runs)s) AS n
"""


async def fill(url: str, executions: int, pending: int, running: int) -> float:
    """The history, in seconds it took to write."""
    began = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        live = pending + running
        await conn.execute(FILL, {"executions": executions, "pending": pending, "live": live})
        await conn.execute(QUEUE)
        await conn.execute(SYNC_RUNS, {"runs": sync_store.KEEP_RUNS})
        await conn.execute("ANALYZE")
    return time.perf_counter() - began


async def timed(http: httpx.AsyncClient, scrapes: int) -> list[float]:
    """Each scrape's time (ms), after one warm-up."""
    await http.get("/metrics")
    times = []
    for _ in range(scrapes):
        began = time.perf_counter()
        response = await http.get("/metrics")
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.text
    return times


def with_workflows(metrics: metrics_module.Metrics, workflows: int) -> int:
    """The counters of `workflows` workflows (each with every series a run makes) in place;
    the samples a scrape then renders."""
    for n in range(workflows):
        labels = ("default", metrics.workflows(f"w{n}"))
        metrics.executions_started.labels(*labels).inc()
        for status in ("Succeeded", "Failed", "Cancelled"):
            metrics.executions_finished.labels(*labels, status).inc()
        metrics.execution_seconds.labels(*labels).observe(0.2)
    return sum(len(family.samples) for family in metrics.registry.collect())


async def measure(args: argparse.Namespace, settings: Settings) -> dict[str, object]:
    async with Daemon(settings) as daemon:
        await daemon.versions.record(
            workflow("bench", [echo("a")]), tenant=settings.tenant, source_kind="api"
        )
        filled = await fill(
            settings.database_url or "", args.executions, args.pending, args.running
        )
        async with daemon.db.connection() as conn:
            plan = await gauges.explain(conn, settings.tenant)
            [count] = await (await conn.execute("SELECT count(*) AS n FROM workflow_executions"))\
                .fetchall()  # fmt: skip
        app = daemon.app()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                runs: list[tuple[str, list[float]]] = []
                for workflows in args.workflows:
                    metrics = daemon.metrics
                    samples = with_workflows(metrics, workflows)
                    metrics.cache_seconds = 0.0
                    size = len((await http.get("/metrics")).content)
                    what = f"{workflows:>5} workflow labels ({samples:,} samples, {size:,} B)"
                    for cache in (0.0, metrics_module.CACHE_SECONDS):
                        metrics.cache_seconds = cache
                        runs.append((f"{what}, cache {'on ' if cache else 'off'}",
                                     await timed(http, args.scrapes)))  # fmt: skip
    return {"filled": filled, "executions": count["n"], "plan": plan, "runs": runs}


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return (
        f"median {statistics.median(times):6.2f} ms  min {ordered[0]:6.2f}  p90 {p90:6.2f}  "
        f"max {ordered[-1]:6.2f}  (n={len(times)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--pending", type=int, default=10_000, help="of them queued, ready")
    parser.add_argument("--running", type=int, default=1_000, help="of them held by a worker")
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument(
        "--workflows",
        type=lambda t: [int(n) for n in t.split(",")],
        default=[0, 50, 200, 1000],
        help="workflow label counts to measure at, in rising order (default 0,50,200,1000)",
    )
    parser.add_argument("--database-url", default=os.environ.get("DWF_DATABASE_URL"))
    args = parser.parse_args()
    from runner import logs

    logs.configure("json", "warning")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    with bench_settings(args.database_url) as settings:
        found = asyncio.run(measure(args, settings))
    print(f"{found['executions']:,} executions ({args.pending:,} queued, "
          f"{args.running:,} running), "
          f"{sync_store.KEEP_RUNS} sync runs, written in {found['filled']:.1f} s")  # fmt: skip
    print("plan of the gauges' statement:")
    print("  " + str(found["plan"]).replace("\n", "\n  "))
    print(f"GET /metrics, {args.scrapes} scrapes each (bound {BOUND_MS:g} ms):")
    for what, times in found["runs"]:  # type: ignore[attr-defined]
        verdict = "ok" if statistics.median(times) <= BOUND_MS else "OVER"
        print(f"  {what}: {summary(times)}  {verdict}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
