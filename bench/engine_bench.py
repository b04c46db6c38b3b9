"""Engine overhead on Postgres: `python bench/engine_bench.py [--runs 5] [--database-url URL]`.

With --database-url (or DWF_DATABASE_URL) it works in a scratch database it creates on that
server and drops afterwards; without, it uses a private embedded Postgres (pgserver) in
a temporary home, as a fresh `dwf` would. Prints the median of several runs for each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from runner.daemon import Daemon
from runner.engine import conditions, templates
from runner.engine.requests import StartRequest
from runner.settings import Settings


@contextlib.contextmanager
def scratch_database(url: str | None) -> Iterator[str | None]:
    """A fresh database on the server of `url`, dropped afterwards (None: the embedded default).

    A benchmark never writes into the database it was pointed at: that may be someone's.
    """
    if url is None:
        yield None
        return
    name = f"dwf_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(**(conninfo_to_dict(url) | {"dbname": name}))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def bench_settings(url: str | None) -> Iterator[Settings]:
    """Settings on a database of its own: a fresh one on the server of `url` (dropped afterwards),
    or without `url` the embedded default in a temporary home (stopped afterwards)."""
    with tempfile.TemporaryDirectory() as folder, scratch_database(url) as scratch:
        home = Path(folder)
        if scratch is not None:
            yield Settings.from_env(database_url=scratch, home=home)
            return
        from runner.store import embedded

        try:
            yield Settings.from_env(database_url=embedded.embedded_url(home), home=home)
        finally:
            embedded.stop(home)


def echo(node_id: str, *targets: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": node_id,
        "actionType": "core.echo",
        "parameters": {"message": "{{ trigger.n }}"},
    }
    if targets:
        node["edges"] = [{"targetNode": t} for t in targets]
    return node


def workflow(workflow_id: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": workflow_id,
        "status": "active",
        "startNode": nodes[0]["id"],
        "options": {"maxParallelActions": 64},
        "nodes": nodes,
    }


CHAIN = workflow("chain", [echo(f"n{i}", f"n{i + 1}") for i in range(99)] + [echo("n99")])
FAN = workflow(
    "fan",
    [echo("root", *[f"m{i}" for i in range(50)])]
    + [echo(f"m{i}", "join") for i in range(50)]
    + [echo("join")],
)
SMALL = workflow("small", [echo("a", "b"), echo("b", "c"), echo("c")])


async def timed_run(daemon: Daemon, workflow_id: str) -> float:
    start = time.perf_counter()
    row = await daemon.execute(StartRequest(workflow_id=workflow_id, trigger={"n": 1}))
    assert row.status == "Succeeded", row.error
    return time.perf_counter() - start


async def measure(settings: Settings, runs: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    async with Daemon(settings) as daemon:
        db = daemon.db
        for definition in (CHAIN, FAN, SMALL):
            await daemon.versions.record(definition, tenant=settings.tenant, source_kind="local")
        await timed_run(daemon, "chain")  # warm caches and the pool
        chain = [await timed_run(daemon, "chain") for _ in range(runs)]
        figures["chain_ms_per_node"] = statistics.median(chain) * 1000 / 100
        fan = [await timed_run(daemon, "fan") for _ in range(runs)]
        figures["fan_out_join_ms"] = statistics.median(fan) * 1000
        rates = []
        for _ in range(max(1, runs // 2)):
            start = time.perf_counter()
            for _ in range(500):
                await timed_run(daemon, "small")
            rates.append(500 / (time.perf_counter() - start))
        figures["small_executions_per_s"] = statistics.median(rates)
        async with db.connection() as conn:
            start = time.perf_counter()
            for _ in range(1000):
                await conn.execute("SELECT 1")
                await conn.commit()
            figures["commit_ms"] = time.perf_counter() - start  # 1000 commits: seconds = ms each
    return figures


def micro() -> dict[str, float]:
    scope = {
        "trigger": {"boardId": 42, "name": "acme"},
        "nodes": {"fetch": {"status": "Succeeded", "outputs": {"count": 3}}},
        "vars": {"region": "eu"},
        "execution": {"id": "x"},
        "event": {},
    }
    params = {
        "channel": "#ops",
        "text": "{{ nodes['fetch'].outputs.count }} items for {{ trigger.name }}",
        "boardId": "{{ trigger.boardId }}",
        "region": "{{ vars.region }}",
    }
    templates.render_value(params, scope, where="bench", path="parameters")
    n = 2000
    render = timeit.timeit(
        lambda: templates.render_value(params, scope, where="bench", path="parameters"), number=n
    )
    cond_scope = dict(scope, result={"status": "Succeeded", "outputs": {"count": 3}})
    condition = timeit.timeit(
        lambda: conditions.evaluate("result.outputs.count > 0", cond_scope, where="bench"),
        number=n,
    )
    return {"render_ms": render / n * 1000, "condition_ms": condition / n * 1000}


def startup(runs: int) -> float:
    dwf = str(Path(sys.executable).with_name("dwf"))
    times = []
    for _ in range(max(runs, 9)):
        start = time.perf_counter()
        subprocess.run([dwf, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("DWF_DATABASE_URL"))
    args = parser.parse_args()
    import compileall

    import runner

    compileall.compile_dir(str(Path(runner.__file__).parent), quiet=1)
    from runner import logs

    logs.configure("json", "warning")  # as `dwf run` does; a worker's info lines cost ~20 us each
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as home, scratch_database(args.database_url) as url:
        settings = Settings.from_env(database_url=url, home=Path(home))
        where = "a scratch database on the given server"
        print(f"database: {'embedded pgserver' if url is None else where}")
        figures = asyncio.run(measure(settings, args.runs))
        if args.database_url is None:
            from runner.store import embedded

            embedded.stop(Path(home))
    figures |= micro()
    figures["import_and_help_s"] = startup(args.runs)
    print(f"100-node chain:           {figures['chain_ms_per_node']:.3f} ms per node (<= 1)")
    print(f"fan-out 1 -> 50 -> 1:     {figures['fan_out_join_ms']:.1f} ms (<= 100)")
    print(
        f"3-node, back to back:     {figures['small_executions_per_s']:.0f} executions/s (>= 200)"
    )
    print(f"one commit (SELECT 1):    {figures['commit_ms']:.3f} ms")
    print(f"one condition:            {figures['condition_ms']:.3f} ms (<= 0.3)")
    print(f"one parameter render:     {figures['render_ms']:.3f} ms (<= 0.1)")
    print(f"dwf --help, whole process: {figures['import_and_help_s'] * 1000:.0f} ms (<= 300)")


if __name__ == "__main__":
    main()
