"""What tracing costs the engine: `python bench/tracing_bench.py [--rounds 21] [--database-url U]`.

Runs the engine bench's 100-node chain (`engine_bench.CHAIN`, `dwf run`'s path) on a daemon
per tracing, one run of each per round, alternating, so drift in the machine's load falls on
all alike:

- `off`: no tracing at all (no execution wrapper, no attempt wrapper): the baseline;
- `off-again`: the same on a second daemon: the noise floor (two identical daemons differ by
  this much: their own pools, connections and caches);
- `noexporter`: what a runner with no OTEL_* variables does (the API's no-op tracer: spans are
  not made, a caller's context is only carried through);
- `sdk`: an SDK TracerProvider without any span processor (spans made and dropped): the other
  way "no exporter" could have been built, measured to choose between them.

Prints each one's median ms per node with the spread (min-max) and the overhead against `off`:
of the medians, and the median of the per-round ratios (robust to drift within a run). Then
the cost of the wrappers alone, per execution and per attempt, in microseconds (what the chain
figures cannot resolve on a busy machine), and what that is of a node of the `off` chain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime

from engine_bench import CHAIN, bench_settings

from runner.actions.base import ActionContext, ActionResult
from runner.actions.services import ActionServices
from runner.daemon import Daemon
from runner.engine.conductor import ExecutionCall
from runner.engine.requests import StartRequest
from runner.observability.tracing import Tracing
from runner.settings import Settings
from runner.store.executions import ExecutionRow

MODES = ("off", "off-again", "noexporter", "sdk")


class Off(Tracing):
    """No tracing: the conduct and the action calls are not wrapped."""

    def executions(self, call: ExecutionCall) -> ExecutionCall:
        return call


def tracing_for(mode: str) -> Tracing:
    return {"off": Off, "off-again": Off, "noexporter": Tracing, "sdk": lambda: Tracing([])}[mode]()


async def chain_seconds(daemon: Daemon) -> float:
    start = time.perf_counter()
    row = await daemon.execute(StartRequest(workflow_id="chain", trigger={"n": 1}))
    assert row.status == "Succeeded", row.error
    return time.perf_counter() - start


async def measure(settings: Settings, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    async with contextlib.AsyncExitStack() as stack:
        daemons = {
            mode: await stack.enter_async_context(Daemon(settings, tracing=tracing_for(mode)))
            for mode in MODES
        }
        first = daemons[MODES[0]]
        await first.versions.record(CHAIN, tenant=settings.tenant, source_kind="local")
        for daemon in daemons.values():  # warm each one's caches and pool
            for _ in range(2):
                await chain_seconds(daemon)
        for index in range(rounds):
            # Rotate the order too: no mode always runs right after another.
            turn = index % len(MODES)
            order = MODES[turn:] + MODES[:turn]
            for mode in order:
                times[mode].append(await chain_seconds(daemons[mode]))
    return times


async def wrapper_costs(settings: Settings, n: int = 20_000) -> dict[str, float]:
    """Microseconds each wrapper adds: per conduct of an execution, per action attempt."""
    now = datetime.now(UTC)
    row = ExecutionRow(
        execution_id=uuid.uuid4(), tenant="default", workflow_id="chain", workflow_version=1,
        status="Pending", request_id="r", correlation_id="c", principal=None,
        trigger_type="manual", trigger_id=None, trigger_payload={}, event={}, vars=None,
        outputs=None, error=None, parent_execution_id=None, parent_node_id=None, depth=0,
        created_at=now, started_at=None, finished_at=None, cancel_requested_at=None,
    )  # fmt: skip
    context = ActionContext(
        "x", "chain", "n0", services=ActionServices(settings), action_type="core.echo"
    )
    done = ActionResult.ok({"echo": 1})

    async def conduct(_: ExecutionRow) -> str:
        return "Succeeded"

    async def call(_: ActionContext, __: object) -> ActionResult:
        return done

    costs: dict[str, float] = {}
    for mode in MODES:
        tracing = tracing_for(mode)
        conducted = tracing.executions(conduct)
        attempted = call
        for wrap in reversed(tracing.wrappers):
            attempted = wrap(attempted)
        runs = {
            "execution": functools.partial(conducted, row),
            "attempt": functools.partial(attempted, context, {}),
        }
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(n):
                await run()
            costs[f"{mode} {name}"] = (time.perf_counter() - start) / n * 1e6
    return costs


def report(times: dict[str, list[float]]) -> None:
    base = statistics.median(times["off"])
    for mode in MODES:
        ms = [t * 1000 / 100 for t in times[mode]]
        median = statistics.median(ms)
        line = f"{mode:<10} {median:.3f} ms per node ({min(ms):.3f}-{max(ms):.3f})"
        if mode != "off":
            ratios = [t / b for t, b in zip(times[mode], times["off"], strict=True)]
            paired = (statistics.median(ratios) - 1) * 100
            line += (
                f"  overhead: {(statistics.median(times[mode]) / base - 1) * 100:+.1f} % "
                f"(medians), {paired:+.1f} % (paired)"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--database-url", default=os.environ.get("DWF_DATABASE_URL"))
    args = parser.parse_args()
    from runner import logs

    logs.configure("json", "warning")  # as `dwf run` does
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    with bench_settings(args.database_url) as settings:
        times = asyncio.run(measure(settings, args.rounds))
    print(f"100-node chain, {args.rounds} rounds, modes alternating:")
    report(times)
    costs = asyncio.run(wrapper_costs(settings))
    node_us = statistics.median(times["off"]) * 1e6 / 100
    print("the wrappers alone (us; over `off`, as a share of one node of the chain):")
    for mode in MODES[2:]:
        per_node = (
            costs[f"{mode} attempt"] - costs["off attempt"]
            + (costs[f"{mode} execution"] - costs["off execution"]) / 100
        )  # fmt: skip
        print(
            f"{mode:<10} execution {costs[f'{mode} execution']:.1f}, attempt "
            f"{costs[f'{mode} attempt']:.1f} (off: {costs['off execution']:.1f}, "
            f"{costs['off attempt']:.1f}): {per_node:+.1f} us per node = "
            f"{per_node / node_us * 100:+.2f} %"
        )
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
