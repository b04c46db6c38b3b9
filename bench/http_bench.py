"""`core.http` overhead over raw httpx: `python bench/http_bench.py [--requests 2000] [--rounds 5]`.

A small ASGI app runs under uvicorn in a child process on 127.0.0.1 (so the server does not
share this process's GIL). Each round sends the same GET (a small JSON answer) `--requests`
times through the shared httpx.AsyncClient directly, then as many times through `core.http`'s
`execute` (address check, correlation header, size-capped read, verdict, outputs), alternating
in blocks so drift on a busy machine hits both alike. Prints the median per-request time of
each, their difference (the budget is <= 1 ms), and what masking costs per transition.

Then the token check of strict mode (issue 14, budget <= 0.2 ms per request): the API app in
process over ASGI, the same request (a bad execution id: routing, the caller's check,
validation, a problem answer, no database) in loose mode and in strict mode with an HS256
token, an RS256 token from a JWKS file and an ES256 token from a JWKS URL (cached), alternating
in blocks; and what the verifier costs the first time it sees a token (its signature checked).
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


AUTH_BLOCK = 50
ISSUER, AUDIENCE = "https://idp.bench", "dwf-bench"


def _claims() -> dict[str, object]:
    now = int(time.time())
    return {"sub": "bench", "iat": now, "exp": now + 3600, "iss": ISSUER, "aud": AUDIENCE,
            "tenant": "default", "roles": ["viewer"]}  # fmt: skip


def _jwks_server(document: bytes) -> tuple[str, object]:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/jwks.json", server


async def auth_costs(requests: int, rounds: int, folder: Path) -> dict[str, tuple[float, float]]:
    """Per mode: (median ms per API request, median µs per verify of its token)."""
    from types import SimpleNamespace

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from runner.api.app import create_app
    from runner.auth.tokens import TokenVerifier

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    jwks_file = folder / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [rsa_jwk | {"kid": "r1", "alg": "RS256"}]}))
    url, jwks_server = _jwks_server(
        json.dumps({"keys": [ec_jwk | {"kid": "e1", "alg": "ES256"}]}).encode()
    )
    strict = {"auth_mode": "strict", "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    secret = "s" * 48
    modes = {
        "loose": (Settings(), None),
        "strict HS256": (
            Settings(**strict, jwt_secret=secret),
            jwt.encode(_claims(), secret, algorithm="HS256"),
        ),
        "strict RS256 (JWKS file)": (
            Settings(**strict, jwt_jwks_file=jwks_file),
            jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "r1"}),
        ),
        "strict ES256 (JWKS URL)": (
            Settings(**strict, jwt_jwks_url=url),
            jwt.encode(_claims(), ec_key, algorithm="ES256", headers={"kid": "e1"}),
        ),
    }
    clients = {}
    verify_us = {}
    for name, (settings, token) in modes.items():
        # The request fails validation before any part is used: no database needed.
        parts = dict.fromkeys(("db", "services", "starts", "conductor", "versions", "webhooks"))
        application = create_app(SimpleNamespace(settings=settings, **parts))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        clients[name] = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://api", headers=headers
        )
        if token:
            # First sight of each token (the signature checked): tokens differing by `jti`.
            verifier = TokenVerifier.from_settings(settings)
            await verifier.verify(token)  # fetch the JWKS once: cached from here on
            header = jwt.get_unverified_header(token)
            key = {"HS256": secret, "RS256": rsa_key, "ES256": ec_key}[header["alg"]]
            fresh = [
                jwt.encode(_claims() | {"jti": str(i)}, key, algorithm=header["alg"],
                           headers={"kid": header["kid"]} if "kid" in header else None)
                for i in range(1000)
            ]  # fmt: skip
            start = time.perf_counter()
            for each in fresh:
                await verifier.verify(each)
            verify_us[name] = (time.perf_counter() - start) / len(fresh) * 1e6
    path = "/api/v1/executions/not-an-id"
    per_round: dict[str, list[float]] = {name: [] for name in modes}
    for client in clients.values():  # warm up (and fetch the JWKS of the URL mode)
        for _ in range(50):
            assert (await client.get(path)).status_code == 422
    for _ in range(rounds):
        totals = dict.fromkeys(modes, 0.0)
        for _ in range(requests // AUTH_BLOCK):
            for name, client in clients.items():
                start = time.perf_counter()
                for _ in range(AUTH_BLOCK):
                    await client.get(path)
                totals[name] += time.perf_counter() - start
        for name in modes:
            per_round[name].append(totals[name] / requests * 1000)
    for client in clients.values():
        await client.aclose()
    jwks_server.shutdown()  # type: ignore[attr-defined]
    return {
        name: (statistics.median(times), verify_us.get(name, 0.0))
        for name, times in per_round.items()
    }


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
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        costs = asyncio.run(auth_costs(args.requests, args.rounds, Path(folder)))
    loose_ms = costs["loose"][0]
    print(f"API request, token check (issue 14; {args.rounds} rounds x {args.requests}, budget "
          "<= 0.2 ms):")  # fmt: skip
    for name, (ms, verify) in costs.items():
        extra = "" if name == "loose" else f"  {ms - loose_ms:+.3f} ms; first sight {verify:.0f} us"
        print(f"  {name:<26} {ms:.3f} ms/request{extra}")


if __name__ == "__main__":
    main()
