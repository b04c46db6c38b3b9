"""`core.http` overhead over raw httpx: `python bench/http_bench.py [--requests 2000] [--rounds 5]`.

A small ASGI app runs under uvicorn in a child process on 127.0.0.1 (so the server does not
share this process's GIL). Each round sends the same GET (a small JSON answer) `--requests`
times through the shared httpx.AsyncClient directly, then as many times through `core.http`'s
`execute` (address check, correlation header, size-capped read, verdict, outputs), alternating
in blocks so drift on a busy machine hits both alike. Prints the median per-request time of
each, their difference (the budget is <= 1 ms), and what masking costs per transition.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import socket
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.actions.base import ActionContext
from runner.actions.http import Http
from runner.actions.services import ActionServices
from runner.credentials.masking import Masker
from runner.settings import Settings
from tests.waiting import until_sync

BLOCK = 100  # requests per alternation block


async def app(scope, receive, send) -> None:
    """Answers every request with a small JSON document."""
    if scope["type"] != "http":
        return
    body = json.dumps({"ok": True, "items": list(range(20))}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def measure(url: str, requests: int, rounds: int) -> tuple[list[float], list[float]]:
    settings = dataclasses.replace(Settings.from_env(), http_allow_private=True)
    shared = ActionServices(settings)
    client = await shared.http_client()
    action = Http()
    context = ActionContext("bench", "bench", "get", correlation_id="bench", services=shared)
    params = {"url": url}
    raw_times: list[float] = []
    action_times: list[float] = []
    for _ in range(20):  # warm up the connection and both paths
        await client.get(url)
        await action.execute(context, params)
    for _ in range(rounds):
        raw = action_total = 0.0
        for _ in range(requests // BLOCK):
            start = time.perf_counter()
            for _ in range(BLOCK):
                response = await client.get(url, headers={"X-Correlation-Id": "bench"})
                response.json()
            raw += time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(BLOCK):
                result = await action.execute(context, params)
                assert result.status == "Succeeded", result
            action_total += time.perf_counter() - start
        raw_times.append(raw / requests * 1000)
        action_times.append(action_total / requests * 1000)
    await shared.aclose()
    return raw_times, action_times


async def lookup_cost(rounds: int = 500) -> float:
    """ms per name lookup, as the address check does for a host name (not an IP literal)."""
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    for _ in range(rounds):
        await loop.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)
    return (time.perf_counter() - start) / rounds * 1000


def masking_costs() -> tuple[float, float]:
    """µs per `mask` of a typical transition's operations: no secret revealed, and one."""
    ops = [
        {"op": "finish_attempt", "node": "a", "attempt": 1, "status": "Succeeded",
         "outputs": {"status": 200, "json": {"ok": True, "items": list(range(20))}}},
        {"op": "event", "kind": "NodeSucceeded", "node": "a", "data": {"attempt": 1}},
        {"op": "start_attempt", "node": "b", "attempt": 1, "type": "core.http",
         "params": {"url": "https://example.com/x", "headers": {"Authorization": "Bearer t"}}},
        {"op": "event", "kind": "NodeStarted", "node": "b", "data": {}},
    ]  # fmt: skip
    idle, armed = Masker(), Masker()
    armed.remember("xoxb-0123456789-abcdefghij")
    n = 20_000
    return (
        timeit.timeit(lambda: idle.mask(ops), number=n) / n * 1e6,
        timeit.timeit(lambda: armed.mask(ops), number=n) / n * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per round and path")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    url = f"http://127.0.0.1:{port}/items"
    try:

        def answers() -> bool:
            try:
                httpx.get(url, timeout=1)
            except httpx.TransportError:
                return False
            return True

        until_sync(answers, 20, "the bench server to answer")
        raw, action = asyncio.run(measure(url, args.requests, args.rounds))
    finally:
        server.terminate()
        server.wait()
    raw_ms, action_ms = statistics.median(raw), statistics.median(action)
    idle_us, armed_us = masking_costs()
    lookup_ms = asyncio.run(lookup_cost())
    print(f"python {platform.python_version()}, {args.rounds} rounds x {args.requests} requests")
    print(f"raw httpx (shared client)   {raw_ms:.3f} ms/request (median of rounds)")
    print(f"core.http execute           {action_ms:.3f} ms/request")
    print(f"core.http overhead          {action_ms - raw_ms:+.3f} ms/request (budget <= 1 ms)")
    print(f"address check, host name    {lookup_ms:.3f} ms/request (getaddrinfo of localhost)")
    print(f"masking a transition        {idle_us:.2f} us (no secret), {armed_us:.1f} us (one)")


if __name__ == "__main__":
    main()
