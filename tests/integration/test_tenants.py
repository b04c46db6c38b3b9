"""Tenant isolation (SPEC §12) over every route the app serves, in process over ASGI, on a real
Postgres: a globex admin calling with acme's ids gets 404 (never 403, never acme's data), and
nothing of acme's changes. The routes are read from the app, so a new one cannot be forgotten.

Two tenants each have a workflow `shared` (the same id: the sharpest case), acme also one of its
own (`only-acme`), with executions, schedules, webhooks, a webhook delivery in the fire log and a
sync run, all made through the API and the store as the runner makes them. No worker runs: acme's
executions stay Pending, so a cancel that leaked would show.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from runner.api import access
from runner.settings import Settings
from runner.store import sync
from runner.store.database import Database
from runner.triggers.webhooks import NOT_FOUND
from tests.jwt_keys import Served, api_routes, bearer, filled, serving, strict, token

pytestmark = pytest.mark.anyio

ACME, GLOBEX = "acme", "globex"
PROBLEM_JSON = "application/problem+json"
#: Text only acme's data holds: any of it in an answer to globex is a leak.
ACME_MARKS = ("Acme Corp", "acme-canary", "acme.git", "acme-nightly", "acme-hook", "acme-only")
#: The routes whose path names nothing: they answer for the caller's own tenant.
UNSCOPED = {
    ("GET", "/api/v1/workflows"),
    ("POST", "/api/v1/workflows"),
    ("GET", "/api/v1/executions"),
    ("GET", "/api/v1/sync"),
}
#: Routes naming no id whose answer belongs to the runner's own tenant (it spans every tenant):
#: another tenant's caller gets 404, as for one of acme's ids.
RUNNERS_OWN = {("GET", "/metrics")}


def flow(
    workflow_id: str, display_name: str, message: str, *triggers: dict[str, Any]
) -> dict[str, Any]:
    """A workflow of one echo node with `triggers`."""
    return {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": workflow_id,
        "displayName": display_name,
        "status": "active",
        "startNode": "a",
        "triggers": list(triggers),
        "nodes": [{"id": "a", "actionType": "core.echo", "parameters": {"message": message}}],
    }


def schedule(trigger_id: str) -> dict[str, Any]:
    # Once a year: its coming fire times stay the same for the length of a test.
    return {"id": trigger_id, "type": "schedule", "cron": "0 3 1 1 *"}


def webhook(trigger_id: str, path: str) -> dict[str, Any]:
    return {"id": trigger_id, "type": "webhook", "path": path}


@dataclasses.dataclass
class World:
    """The two tenants' data, and the API serving them."""

    http: httpx.AsyncClient
    app: FastAPI
    acme: dict[str, str]  # an acme admin's Authorization header
    globex: dict[str, str]  # a globex admin's
    acme_executions: list[str]  # of shared, of only-acme, then of each's webhook delivery
    globex_executions: list[str]
    acme_sync_id: int
    globex_sync_id: int

    @property
    def acme_ids(self) -> dict[str, str]:
        """What fills a route's path from acme's data: ids only acme has."""
        return {
            "workflowId": "only-acme",
            "executionId": self.acme_executions[1],
            "triggerId": "acme-only-nightly",
            "tenant": ACME,
            "path": "acme/private",
            "version": "1",
        }


async def create(http: httpx.AsyncClient, headers: dict[str, str], definition: Any) -> None:
    body = {"definition": definition, "autoActivate": True}
    response = await http.post("/api/v1/workflows", json=body, headers=headers)
    assert response.status_code == 201, response.text


async def execute(http: httpx.AsyncClient, headers: dict[str, str], workflow_id: str) -> str:
    response = await http.post(f"/api/v1/workflows/{workflow_id}/execute", json={}, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["executionId"])


async def record_sync_run(db: Database, tenant: str) -> int:
    """A finished sync run of `tenant`'s repository, as a sync records it."""
    async with db.transaction() as conn:
        sync_id = await sync.start_run(
            conn,
            tenant=tenant,
            repo=f"https://git.example.test/{tenant}.git",
            branch="main",
            path=None,
            reason="cli",
            replica="test",
        )
        await sync.finish_run(
            conn,
            sync_id,
            status="applied",
            commit="0" * 40,
            summary={"created": 1},
            files=[{"path": f"{tenant}/flow.yaml", "outcome": "created"}],
            target_tenant=tenant,
        )
    return sync_id


@pytest.fixture
async def world(settings: Settings, db: Database) -> AsyncIterator[World]:
    async with serving(strict(settings), db) as served:
        yield await populate(served, db)


async def populate(served: Served, db: Database) -> World:
    http = served.http
    acme = bearer(token("ann@acme.example", roles=["admin"], tenant=ACME))
    globex = bearer(token("gus@globex.example", roles=["admin"], tenant=GLOBEX))
    await create(
        http,
        acme,
        flow(
            "shared",
            "Acme Corp shared",
            "acme-canary",
            schedule("acme-nightly"),
            webhook("acme-hook", "clients/new"),
        ),
    )
    await create(
        http,
        acme,
        flow(
            "only-acme",
            "Acme Corp only",
            "acme-canary",
            schedule("acme-only-nightly"),
            webhook("acme-only-hook", "acme/private"),
        ),
    )
    # The same id, and the same webhook path: each tenant's own.
    await create(
        http,
        globex,
        flow(
            "shared",
            "Globex shared",
            "globex says hi",
            schedule("globex-nightly"),
            webhook("globex-hook", "clients/new"),
        ),
    )
    acme_executions = [await execute(http, acme, "shared"), await execute(http, acme, "only-acme")]
    for path in ("acme/private", "clients/new"):  # each: a fire log entry and an execution
        delivered = await http.post(f"/api/v1/hooks/acme/{path}", json={"kind": "client"})
        assert delivered.status_code == 202, delivered.text
        acme_executions.append(delivered.json()["executionId"])
    return World(
        http=http,
        app=served.app,
        acme=acme,
        globex=globex,
        acme_executions=acme_executions,
        globex_executions=[await execute(http, globex, "shared")],
        acme_sync_id=await record_sync_run(db, ACME),
        globex_sync_id=await record_sync_run(db, GLOBEX),
    )


async def acme_state(world: World) -> dict[str, Any]:
    """Everything acme's admin can read of acme's data."""
    paths = ["/api/v1/workflows", "/api/v1/executions?limit=500", "/api/v1/sync"]
    for workflow_id, trigger_ids in (
        ("shared", ("acme-nightly", "acme-hook")),
        ("only-acme", ("acme-only-nightly", "acme-only-hook")),
    ):
        base = f"/api/v1/workflows/{workflow_id}"
        paths += [base, f"{base}/versions", f"{base}/triggers"]
        paths += [f"{base}/triggers/{trigger_id}/fires" for trigger_id in trigger_ids]
    for execution_id in world.acme_executions:
        paths += [f"/api/v1/executions/{execution_id}", f"/api/v1/executions/{execution_id}/events"]
    state = {}
    for path in paths:
        response = await world.http.get(path, headers=world.acme)
        assert response.status_code == 200, (path, response.text)
        state[path] = response.json()
    return state


def leaks(response: httpx.Response, sent: str) -> list[str]:
    """acme's marks (and execution ids) in `response` that the request itself did not send."""
    return [mark for mark in ACME_MARKS if mark in response.text and mark not in sent]


def guarded_routes(world: World) -> set[tuple[str, str]]:
    """Every operation of the app that checks a bearer token, read from the app's routing."""
    routes = api_routes(world.app)
    assert routes == set(access.ROLES)  # no route without a role (test_auth has the matrix)
    return {route for route in routes if access.ROLES[route] is not access.PUBLIC}


#: The least valid body of the routes that take one (the bodies change nothing of acme's).
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/workflows/{workflowId}/execute"): {},
    ("POST", "/api/v1/workflows/{workflowId}/triggers"): schedule("added-by-globex"),
}


async def call(
    world: World, route: tuple[str, str], values: dict[str, str], headers: dict[str, str]
) -> httpx.Response:
    method, path = route
    return await world.http.request(
        method, filled(path, values), json=BODIES.get(route), headers=headers
    )


async def test_every_route_with_acme_ids_is_404_for_globex(world: World) -> None:
    routes = guarded_routes(world)
    assert routes - UNSCOPED, "no route names an id"
    assert routes >= UNSCOPED, "a route this test lists is gone: update UNSCOPED"
    unlisted = {r for r in routes if not re.search(r"\{\w+", r[1])} - UNSCOPED - RUNNERS_OWN
    assert not unlisted, f"routes naming no id, not covered here: {unlisted}"
    before = await acme_state(world)
    answered = {}
    for route in sorted(routes - UNSCOPED):
        # Each of acme's executions where the route names one (Pending, and delivered by
        # webhook): the answer may not depend on which.
        execution_ids = world.acme_executions if "{executionId}" in route[1] else [None]
        for execution_id in execution_ids:
            values = world.acme_ids | ({"executionId": execution_id} if execution_id else {})
            response = await call(world, route, values, world.globex)
            answered[route] = response.status_code
            assert response.status_code == 404, (route, response.status_code, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
            sent = str(response.request.url)
            assert not leaks(response, sent), (route, response.text)
    assert set(answered) == routes - UNSCOPED
    assert await acme_state(world) == before


async def test_the_same_workflow_id_in_globex_is_globex_s_own(world: World) -> None:
    routes = guarded_routes(world)
    on_a_workflow = sorted(r for r in routes if "{workflowId}" in r[1])
    assert on_a_workflow
    before = await acme_state(world)
    # acme's trigger and execution ids beside globex's own workflow id.
    values = world.acme_ids | {"workflowId": "shared", "triggerId": "acme-hook"}
    # Reads first, then the changes; archive last (it ends the workflow's triggers).
    order = {"GET": 0, "POST": 1, "DELETE": 1}
    on_a_workflow.sort(key=lambda r: (order[r[0]], r[1].endswith("/archive")))
    for route in on_a_workflow:
        response = await call(world, route, values, world.globex)
        assert response.status_code not in (401, 403), (route, response.text)
        assert not leaks(response, str(response.request.url)), (route, response.text)
        if route == ("GET", "/api/v1/workflows/{workflowId}"):
            assert response.json()["displayName"] == "Globex shared"
            triggers = {t["id"] for t in response.json()["triggers"]}
            assert triggers == {"globex-nightly", "globex-hook"}
        elif route == ("GET", "/api/v1/workflows/{workflowId}/triggers/{triggerId}/fires"):
            assert response.json()["items"] == []  # acme's hook was delivered: not globex's
        elif route == ("DELETE", "/api/v1/workflows/{workflowId}/triggers/{triggerId}"):
            assert response.status_code == 404  # globex's shared has no trigger acme-hook
        elif route == ("POST", "/api/v1/workflows/{workflowId}/execute"):
            assert response.status_code == 202, response.text
            started = response.json()["executionId"]
            mine = await world.http.get(f"/api/v1/executions/{started}", headers=world.globex)
            assert mine.status_code == 200
            theirs = await world.http.get(f"/api/v1/executions/{started}", headers=world.acme)
            assert theirs.status_code == 404
        elif route[0] == "POST":
            assert response.status_code in (200, 201), (route, response.text)
    archived = await world.http.get("/api/v1/workflows/shared", headers=world.globex)
    assert archived.json()["status"] == "Archived"
    after = await acme_state(world)
    assert after == before
    assert after["/api/v1/workflows/shared"]["status"] == "Active"


async def test_lists_hold_only_the_callers_tenant(world: World) -> None:
    async def items(path: str) -> list[dict[str, Any]]:
        response = await world.http.get(path, headers=world.globex)
        assert response.status_code == 200, response.text
        assert not leaks(response, path), response.text
        found: list[dict[str, Any]] = response.json()["items"]
        return found

    assert [w["workflowId"] for w in await items("/api/v1/workflows")] == ["shared"]
    executions = {e["executionId"] for e in await items("/api/v1/executions?limit=500")}
    assert executions == set(world.globex_executions)
    for workflow_id in ("shared", "only-acme"):
        filtered = await items(f"/api/v1/executions?workflowId={workflow_id}")
        assert {e["executionId"] for e in filtered} <= set(world.globex_executions)
    runs = await items("/api/v1/sync")
    assert [r["syncId"] for r in runs] == [world.globex_sync_id]
    # And acme sees its own, none of globex's.
    response = await world.http.get("/api/v1/executions?limit=500", headers=world.acme)
    assert {e["executionId"] for e in response.json()["items"]} == set(world.acme_executions)


async def test_creating_an_acme_id_in_globex_makes_globex_s_own(world: World) -> None:
    before = await acme_state(world)
    definition = flow("only-acme", "Globex copy", "globex says hi")
    response = await world.http.post(
        "/api/v1/workflows", json={"definition": definition}, headers=world.globex
    )
    assert response.status_code == 201, response.text  # created: not acme's, which exists
    assert response.json()["displayName"] == "Globex copy"
    assert response.json()["current"]["version"] == 1
    assert await acme_state(world) == before


async def test_acme_s_webhook_under_globex_is_404(world: World) -> None:
    before = await acme_state(world)
    response = await world.http.post("/api/v1/hooks/globex/acme/private", json={"kind": "x"})
    assert response.status_code == 404, response.text
    never = await world.http.post("/api/v1/hooks/globex/never/served", json={"kind": "x"})
    assert never.status_code == 404
    # The same answer as for a path nobody serves: nothing says acme serves it.
    assert response.json() | {"instance": None} == never.json() | {"instance": None}
    assert response.json()["detail"] == NOT_FOUND
    # A path both serve starts the workflow of the tenant the URL names.
    response = await world.http.post("/api/v1/hooks/globex/clients/new", json={"kind": "x"})
    assert response.status_code == 202, response.text
    started = response.json()["executionId"]
    mine = await world.http.get(f"/api/v1/executions/{started}", headers=world.globex)
    assert mine.json()["workflowId"] == "shared"
    assert (
        await world.http.get(f"/api/v1/executions/{started}", headers=world.acme)
    ).status_code == 404
    assert await acme_state(world) == before
