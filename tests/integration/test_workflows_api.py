"""Workflow lifecycle and sync endpoints (SPEC §6, §9) over ASGI, on a real Postgres and real
local git repositories."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Collection
from typing import Any

import httpx
import pytest

from runner.daemon import Daemon
from runner.settings import Settings
from runner.spec import loader
from runner.store.database import Database
from tests.gitrepo import GitRepo, flow
from tests.waiting import until

pytestmark = pytest.mark.anyio

PROBLEM_JSON = "application/problem+json"
SECRET = "push-secret"


@pytest.fixture
def repo(tmp_path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(daemon, {"worker"}) as http:
        yield http


@pytest.fixture
def synced_settings(settings: Settings, repo: GitRepo, monkeypatch) -> Settings:
    monkeypatch.setenv("DWF_SECRET_SYNC_WEBHOOK", SECRET)
    repo.write("workflows/git-flow.yaml", flow("git-flow"))
    repo.commit()
    # A long interval: only the start and the push webhook sync in these tests.
    return dataclasses.replace(settings, sync_repo=str(repo.root), sync_interval=3600)


@contextlib.asynccontextmanager
async def serve(daemon: Daemon, roles: Collection[str] = ()) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `daemon`'s API, its lifespan running the other `roles` beside it."""
    application = daemon.app(roles)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


@contextlib.asynccontextmanager
async def served(
    settings: Settings, db: Database, roles: Collection[str] = ()
) -> AsyncIterator[httpx.AsyncClient]:
    """`serve` on a Daemon of `settings` (on `db`) of its own."""
    async with Daemon(settings, database=db) as daemon, serve(daemon, roles) as http:
        yield http


def assert_problem(response: httpx.Response, status: int, *in_detail: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    for text in in_detail:
        assert text in problem["detail"], problem
    return problem


def document(workflow_id: str, **options: Any) -> dict[str, Any]:
    return loader.load(flow(workflow_id, **options))


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


async def wait_for_run(
    http: httpx.AsyncClient, predicate: Any, timeout: float = 15.0
) -> dict[str, Any]:
    """Poll GET /sync until a run satisfies `predicate`."""
    runs: list[dict[str, Any]] = []

    async def found() -> dict[str, Any] | None:
        nonlocal runs
        runs = (await http.get("/api/v1/sync")).json()["items"]
        return next((r for r in runs if predicate(r)), None)

    try:
        return await until(found, timeout, "a sync run")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: no such sync run: {runs}") from None


# --- lifecycle ------------------------------------------------------------------------------


async def test_create_makes_a_draft_then_publish_activates_and_archive_removes_triggers(client):
    body = {"definition": document("w", cron="0 9 * * *")}
    created = await client.post("/api/v1/workflows", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "Draft" and created.json()["managedBy"] == "api"
    assert created.json()["triggers"] == []
    refused = await client.post("/api/v1/workflows/w/execute", json={})
    assert_problem(refused, 409, "Draft")
    published = await client.post("/api/v1/workflows/w/publish")
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "Active"
    assert {t["id"] for t in published.json()["triggers"]} == {"by-hand", "timer"}
    started = await client.post("/api/v1/workflows/w/execute", json={})
    assert started.status_code == 202
    archived = await client.post("/api/v1/workflows/w/archive")
    assert archived.json()["status"] == "Archived" and archived.json()["triggers"] == []
    assert_problem(await client.post("/api/v1/workflows/w/execute", json={}), 409, "Archived")
    # Archived -> Active is allowed.
    assert (await client.post("/api/v1/workflows/w/publish")).json()["status"] == "Active"


async def test_auto_activate_yaml_and_versions(client):
    text = flow("y")
    first = await client.post("/api/v1/workflows", json={"yaml": text, "autoActivate": True})
    assert first.status_code == 201 and first.json()["status"] == "Active"
    same = await client.post("/api/v1/workflows", json={"yaml": "# comment\n" + text})
    assert same.status_code == 200  # the same content is the same version
    changed = await client.post("/api/v1/workflows", json={"yaml": flow("y", message="v2")})
    assert changed.status_code == 201 and changed.json()["currentVersion"] == 2
    assert changed.json()["status"] == "Draft"
    versions = (await client.get("/api/v1/workflows/y/versions")).json()["items"]
    assert [(v["version"], v["current"], v["source"]) for v in versions] == [
        (2, True, "api"), (1, False, "api"),
    ]  # fmt: skip
    listing = (await client.get("/api/v1/workflows", params={"status": "Draft"})).json()
    assert [w["workflowId"] for w in listing["items"]] == ["y"]


async def test_an_invalid_definition_is_422_naming_every_field(client):
    bad = document("bad")
    bad["startNode"] = "nowhere"
    bad["nodes"][1]["actionType"] = "no.such-action"
    problem = assert_problem(await client.post("/api/v1/workflows", json={"definition": bad}), 422)
    fields = {e["field"] for e in problem["errors"]}
    assert {"body.definition.startNode", "body.definition.nodes[1].actionType"} <= fields
    assert (await client.get("/api/v1/workflows/bad")).status_code == 404
    broken = await client.post("/api/v1/workflows", json={"yaml": "id: [x\n"})
    problem = assert_problem(broken, 422, "line 2")
    assert problem["errors"][0]["field"] == "body.yaml"
    both = await client.post("/api/v1/workflows", json={"yaml": "x", "definition": {}})
    assert_problem(both, 422)


async def test_publish_time_validation_checks_subworkflow_targets(client):
    await client.post("/api/v1/workflows", json={"definition": document("child")})
    parent = {"definition": document("parent", child="child"), "autoActivate": True}
    problem = assert_problem(await client.post("/api/v1/workflows", json=parent), 422, "Draft")
    assert problem["errors"][0]["field"] == "definition.nodes[0].workflowId"
    assert (await client.get("/api/v1/workflows/parent")).status_code == 404
    assert (await client.post("/api/v1/workflows/child/publish")).status_code == 200
    accepted = await client.post("/api/v1/workflows", json=parent)
    assert accepted.status_code == 201 and accepted.json()["status"] == "Active"


async def test_unknown_workflow_is_404(client):
    for path in ("/api/v1/workflows/nope", "/api/v1/workflows/nope/versions"):
        assert_problem(await client.get(path), 404, "nope")
    assert_problem(await client.post("/api/v1/workflows/nope/publish"), 404)


# --- git-managed workflows and the sync endpoints ---------------------------------------------


async def test_git_workflows_are_read_only_and_show_their_source(db, synced_settings, repo):
    async with served(synced_settings, db, {"sync"}) as http:
        run = await wait_for_run(http, lambda r: r["status"] == "applied")
        assert run["reason"] == "start" and run["commit"] == repo.git("rev-parse", "HEAD")
        got = (await http.get("/api/v1/workflows/git-flow")).json()
        assert got["managedBy"] == "git" and got["status"] == "Active"
        assert got["current"]["source"] == f"{repo.root}@{run['commit']}:workflows/git-flow.yaml"
        for action in ("publish", "archive"):
            assert_problem(
                await http.post(f"/api/v1/workflows/git-flow/{action}"), 409, "managed by git"
            )
        change = {"definition": document("git-flow", message="sneaky")}
        assert_problem(await http.post("/api/v1/workflows", json=change), 409, "managed by git")


async def test_a_signed_push_syncs_at_once(db, synced_settings, repo):
    async with served(synced_settings, db, {"sync"}) as http:
        await wait_for_run(http, lambda r: r["status"] == "applied")
        repo.write("workflows/git-flow.yaml", flow("git-flow", message="pushed"))
        commit = repo.commit()
        body = json.dumps({"ref": "refs/heads/main", "after": commit}).encode()
        answer = await http.post("/api/v1/sync", content=body, headers=signed(body))
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "queued"
        run = await wait_for_run(http, lambda r: r["commit"] == commit)
        assert run["reason"] == "webhook" and run["status"] == "applied"
        assert run["files"][0]["outcome"] == "updated"


async def test_push_webhook_refuses_bad_signatures_and_ignores_other_branches(
    db, synced_settings, repo
):
    async with served(synced_settings, db) as http:
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        missing = await http.post("/api/v1/sync", content=body)
        wrong = await http.post("/api/v1/sync", content=body, headers=signed(body, "other"))
        tampered = await http.post("/api/v1/sync", content=body + b" ", headers=signed(body))
        # Each says only that it was refused: why is for the log, not for whoever sent it.
        for refused in (missing, wrong, tampered):
            problem = assert_problem(refused, 401)
            assert problem["detail"] == "the request's signature was refused"
        ping = await http.post(
            "/api/v1/sync", content=b"{}", headers=signed(b"{}") | {"X-GitHub-Event": "ping"}
        )
        assert ping.status_code == 200 and ping.json() == {"status": "pong"}
        other = json.dumps({"ref": "refs/heads/feature"}).encode()
        ignored = await http.post("/api/v1/sync", content=other, headers=signed(other))
        assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"
        assert (await http.get("/api/v1/sync")).json()["items"] == []


async def test_push_webhook_without_a_configured_secret_is_503(daemon, monkeypatch):
    monkeypatch.delenv("DWF_SECRET_SYNC_WEBHOOK", raising=False)
    async with serve(daemon) as http:
        answer = await http.post("/api/v1/sync", content=b"{}", headers=signed(b"{}"))
        assert_problem(answer, 503, "DWF_SECRET_SYNC_WEBHOOK")


# --- local runs -------------------------------------------------------------------------------


async def test_a_local_files_version_changes_nothing_the_api_and_the_triggers_run(daemon, client):
    created = await client.post(
        "/api/v1/workflows",
        json={"definition": document("w", cron="0 9 * * 1-5"), "autoActivate": True},
    )
    assert created.status_code == 201, created.text
    live = created.json()
    # What `dwf run FILE` records: an edited copy without `status:` (a Draft, were it current).
    copy = document("w", message="edited")
    del copy["status"]
    version, new = await daemon.versions.record_local(
        copy, tenant=daemon.settings.tenant, source_path="/home/author/w.yaml"
    )
    assert (version.version, version.source, new) == (2, "local:/home/author/w.yaml", True)
    assert (await client.get("/api/v1/workflows/w")).json() == live
    versions = (await client.get("/api/v1/workflows/w/versions")).json()["items"]
    assert [(v["version"], v["current"]) for v in versions] == [(2, False), (1, True)]
    started = await client.post("/api/v1/workflows/w/execute", json={})
    assert started.status_code == 202, started.text

    async def finished() -> dict[str, Any] | None:
        document_ = (await client.get(started.json()["statusUrl"])).json()
        return document_ if document_["status"] == "Succeeded" else None

    ran = await until(finished, 10, "the API's execution to succeed")
    assert ran["workflowVersion"] == 1
    assert ran["nodes"]["last"]["outputs"] == {"echo": "hello"}
    # Publishing again publishes the API's version, not the file's.
    assert (await client.post("/api/v1/workflows/w/publish")).json()["currentVersion"] == 1
