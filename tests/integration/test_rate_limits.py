"""Rate limits (SPEC §12) over ASGI on a real Postgres: starts per principal, webhook deliveries
per tenant and path; 429 problem+json with Retry-After and the RateLimit fields, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from runner.auth import tokens
from runner.daemon import Daemon
from runner.settings import Settings
from runner.store.database import Database
from tests.waiting import until

pytestmark = pytest.mark.anyio

EXECUTE = "/api/v1/workflows/w/execute"
HOOKS = "/api/v1/hooks"
PROBLEM_JSON = "application/problem+json"
SECRET = "rate-limit-hook-key"
STRICT: dict[str, Any] = {
    "auth_mode": "strict",
    "jwt_secret": "x" * 32,
    "jwt_issuer": "dwf-tests",
    "jwt_audience": "dwf-api",
}
SIGNED = {"id": "signed", "type": "webhook", "path": "signed", "secretRef": "hook-key",
          "signature": "hmac-sha256", "signatureHeader": "X-Signature"}  # fmt: skip
OPEN = {"id": "open", "type": "webhook", "path": "open"}
WORKFLOW = {
    "apiVersion": "dataworkflows/v1",
    "kind": "Workflow",
    "id": "w",
    "status": "active",
    "startNode": "a",
    "triggers": [SIGNED, OPEN],
    "nodes": [{"id": "a", "actionType": "core.echo", "parameters": {"message": "hi"}}],
}


@contextlib.asynccontextmanager
async def serving(settings: Settings, db: Database, **changes: Any) -> AsyncIterator[Client]:
    """The API on `settings` with `changes`, workflow `w` recorded; no worker runs."""
    async with Daemon(replace(settings, **changes), database=db) as daemon:
        app = daemon.app()
        async with app.router.lifespan_context(app):
            await daemon.versions.record(WORKFLOW, tenant=daemon.settings.tenant, source_kind="api")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
                yield Client(http, daemon.settings)


class Client:
    """An API client that can speak as a principal (a token in strict mode)."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self.http, self.settings = http, settings

    def start(self, principal: str | None = None, **body: Any) -> Any:
        headers = {}
        if self.settings.auth_mode == "strict":
            assert principal is not None
            token = tokens.mint(
                self.settings, subject=principal, roles=["operator"],
                tenant=self.settings.tenant, ttl=300,
            )  # fmt: skip
            headers["Authorization"] = f"Bearer {token}"
        elif principal is not None:
            body["principal"] = principal
        return self.http.post(EXECUTE, json=body, headers=headers)


def standing(response: httpx.Response) -> tuple[int, int]:
    """(r, t) of the answer's RateLimit field."""
    found = re.fullmatch(r'"(?:execute|webhook)";r=(\d+);t=(\d+)', response.headers["RateLimit"])
    assert found, response.headers["RateLimit"]
    return int(found[1]), int(found[2])


async def started(db: Database) -> int:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM workflow_executions")
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def test_a_burst_past_the_limit_gets_429_with_retry_after_and_the_ratelimit_fields(
    settings, db
):
    async with serving(settings, db, **STRICT, rate_limit_execute=(3, 60.0)) as client:
        admitted = [await client.start("alice", trigger={"n": n}) for n in range(3)]
        refused = await client.start("alice", trigger={"n": 3})
    assert [a.status_code for a in admitted] == [202, 202, 202]
    assert {a.headers["RateLimit-Policy"] for a in admitted} == {'"execute";q=3;w=60'}
    assert [standing(a)[0] for a in admitted] == [2, 1, 0]

    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM_JSON
    problem = refused.json()
    assert problem["type"] == "urn:dataworkflows:problem:rate-limited"
    assert problem["status"] == 429 and problem["instance"] == EXECUTE
    assert "execute rate limit of 3 requests per 60 s per principal" in problem["detail"]
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 20  # one start comes back every 20 s
    assert standing(refused) == (0, retry_after)
    assert refused.headers["RateLimit-Policy"] == '"execute";q=3;w=60'
    assert await started(db) == 3  # the refused start started nothing


async def test_one_principal_s_burst_leaves_another_its_own_quota(settings, db):
    async with serving(settings, db, **STRICT, rate_limit_execute=(3, 60.0)) as client:
        for _ in range(3):
            assert (await client.start("alice")).status_code == 202
        assert (await client.start("alice")).status_code == 429
        bob = await client.start("bob")
    assert bob.status_code == 202, bob.text
    assert standing(bob)[0] == 2


async def test_in_loose_mode_the_principal_a_start_names_is_the_one_limited(settings, db):
    async with serving(settings, db, rate_limit_execute=(2, 60.0)) as client:
        anonymous = [await client.start() for _ in range(3)]
        carol = await client.start("carol")
    assert [a.status_code for a in anonymous] == [202, 202, 429]
    assert carol.status_code == 202 and standing(carol)[0] == 1


async def test_webhooks_are_limited_per_tenant_and_path_before_body_or_signature(
    settings, db, monkeypatch
):
    monkeypatch.setenv("DWF_SECRET_HOOK_KEY", SECRET)
    forged = {"X-Signature": "0" * 64, "Content-Type": "application/json"}
    async with serving(settings, db, rate_limit_webhook=(2, 60.0)) as client:
        http = client.http
        bad = [await http.post(f"{HOOKS}/default/signed", content=b"{}", headers=forged)
               for _ in range(2)]  # fmt: skip
        # Neither JSON nor signed: refused for the limit before either is looked at.
        junk = await http.post(f"{HOOKS}/default/signed", content=b"\xff not json")
        body = b'{"kind": "client"}'
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        signed = {"X-Signature": signature, "Content-Type": "application/json"}
        genuine = await http.post(f"{HOOKS}/default/signed", content=body, headers=signed)
        other_path = await http.post(f"{HOOKS}/default/open", json={"kind": "client"})
        other_tenant = await http.post(f"{HOOKS}/other/signed", content=b"{}", headers=forged)
    assert [b.status_code for b in bad] == [401, 401]
    assert [standing(b)[0] for b in bad] == [1, 0]  # refusals carry the fields too
    assert junk.status_code == 429 and junk.headers["content-type"] == PROBLEM_JSON
    assert int(junk.headers["Retry-After"]) >= 1
    assert "webhook rate limit of 2 requests per 60 s per tenant and path" in junk.json()["detail"]
    assert genuine.status_code == 429  # a well-signed delivery waits its turn as well
    assert other_path.status_code == 202, other_path.text
    assert standing(other_path)[0] == 1
    assert other_tenant.status_code == 404  # its own quota: not refused for the limit
    assert standing(other_tenant)[0] == 1
    assert other_path.headers["RateLimit-Policy"] == '"webhook";q=2;w=60'
    assert await started(db) == 1


async def test_a_refused_caller_is_admitted_again_once_a_request_s_worth_came_back(settings, db):
    async with serving(settings, db, rate_limit_execute=(3, 1.0)) as client:
        burst = await asyncio.gather(*(client.start("dave") for _ in range(5)))
        assert sorted(b.status_code for b in burst) == [202, 202, 202, 429, 429]
        refused = next(b for b in burst if b.status_code == 429)
        assert refused.headers["Retry-After"] == "1"

        async def admitted() -> httpx.Response | None:
            answer = await client.start("dave")
            return answer if answer.status_code == 202 else None

        again = await until(admitted, 5, "a start of dave's to be admitted again")
    assert standing(again)[0] == 0
    assert await started(db) == 4


async def test_every_answer_of_a_limited_route_carries_the_fields_and_other_routes_none(
    settings, db
):
    async with serving(settings, db, rate_limit_execute=(5, 60.0)) as client:
        unknown = await client.http.post("/api/v1/workflows/nope/execute", json={})
        listing = await client.http.get("/api/v1/executions")
    assert unknown.status_code == 404
    assert standing(unknown)[0] == 4  # counted: it reached the route
    assert listing.status_code == 200
    assert "RateLimit" not in listing.headers and "RateLimit-Policy" not in listing.headers


async def test_a_limit_set_to_0_is_off(settings, db):
    off = Settings.from_env({"DWF_RATE_LIMIT_EXECUTE": "0"}).rate_limit_execute
    async with serving(settings, db, rate_limit_execute=off) as client:
        answers = [await client.start("erin") for _ in range(8)]
    assert {a.status_code for a in answers} == {202}
    assert not any("RateLimit" in a.headers for a in answers)


async def test_the_openapi_document_names_the_429_of_both_limited_routes(settings, db):
    async with serving(settings, db) as client:
        document = (await client.http.get("/openapi.json")).json()
    for path in ("/api/v1/workflows/{workflowId}/execute", "/api/v1/hooks/{tenant}/{path}"):
        refused = document["paths"][path]["post"]["responses"]["429"]
        assert set(refused["headers"]) == {"Retry-After", "RateLimit", "RateLimit-Policy"}
        assert PROBLEM_JSON in refused["content"]
    assert "429" not in document["paths"]["/api/v1/executions"]["get"]["responses"]
