"""Webhooks and the triggers API (SPEC §5, §9) in process over ASGI, on a real Postgres: every
signature kind, every refusal, duplicates, activation conditions, identical 404s, the trigger
listing with next and last fires, and adding or removing triggers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from runner.daemon import Daemon
from runner.settings import Settings
from runner.store.database import Database
from runner.triggers.webhooks import REFUSED
from tests import gitrepo

pytestmark = pytest.mark.anyio

SECRET = "s3cret-hook-key"
HOOKS = "/api/v1/hooks/default"


def flow(workflow_id: str, *triggers: dict[str, Any], status: str = "active") -> dict[str, Any]:
    return {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": workflow_id,
        "status": status,
        "startNode": "a",
        "triggers": list(triggers),
        "nodes": [{"id": "a", "actionType": "core.echo", "parameters": {"message": "hi"}}],
    }


GITHUB = {"id": "gh", "type": "webhook", "path": "github/push", "secretRef": "hook-key",
          "signature": "github", "requestIdHeader": "X-GitHub-Delivery"}  # fmt: skip
SLACK = {"id": "sl", "type": "webhook", "path": "slack/events", "secretRef": "hook-key",
         "signature": "slack"}  # fmt: skip
HMAC = {"id": "hm", "type": "webhook", "path": "plain", "secretRef": "hook-key",
        "signature": "hmac-sha256", "signatureHeader": "X-Signature"}  # fmt: skip
OPEN = {"id": "open", "type": "webhook", "path": "open/clients", "requestIdHeader": "X-Id",
        "activationCondition": "trigger.kind === 'client'"}  # fmt: skip


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def slack_headers(body: bytes, stamp: int, secret: str = SECRET) -> dict[str, str]:
    base = f"v0:{stamp}:".encode() + body
    return {
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": "v0=" + sign(base, secret),
        "Content-Type": "application/json",
    }


@pytest.fixture
async def app(settings: Settings, db: Database, monkeypatch) -> AsyncIterator[FastAPI]:
    monkeypatch.setenv("DWF_SECRET_HOOK_KEY", SECRET)  # the credential provider reads it
    async with Daemon(replace(settings, max_body_bytes=4096), database=db) as daemon:
        application = daemon.app()
        async with application.router.lifespan_context(application):
            await register(application, flow("hooks", GITHUB, SLACK, HMAC, OPEN))
            yield application


async def register(app: FastAPI, definition: dict[str, Any]) -> None:
    """Record a workflow version as the API does."""
    parts: Daemon = app.state.parts
    await parts.versions.record(definition, tenant=parts.settings.tenant, source_kind="api")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


async def executions(app: FastAPI) -> list[dict[str, Any]]:
    async with app.state.parts.db.connection() as conn:
        cur = await conn.execute("SELECT * FROM workflow_executions ORDER BY created_at")
        return await cur.fetchall()


async def github(client, payload: dict[str, Any], delivery: str, **headers: str):
    body = json.dumps(payload).encode()
    sent = {"X-Hub-Signature-256": "sha256=" + sign(body), "X-GitHub-Delivery": delivery,
            "Content-Type": "application/json"} | headers  # fmt: skip
    return await client.post(f"{HOOKS}/github/push", content=body, headers=sent)


async def test_a_signed_github_delivery_starts_an_execution_after_its_commit(app, client):
    response = await github(client, {"ref": "refs/heads/main"}, "d-1")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["statusUrl"] == f"/api/v1/executions/{body['executionId']}"
    [row] = await executions(app)
    assert str(row["execution_id"]) == body["executionId"]  # committed before the answer
    assert row["trigger_type"] == "webhook" and row["trigger_id"] == "gh"
    assert row["trigger_payload"] == {"ref": "refs/heads/main"}
    assert row["request_id"] == "d-1"
    # Expressions see the headers but never the signature.
    assert "x-hub-signature-256" not in row["event"]["headers"]
    assert row["event"]["headers"]["x-github-delivery"] == "d-1"
    status = await client.get(body["statusUrl"])
    assert status.status_code == 200


async def test_a_redelivery_answers_200_with_the_same_execution(app, client):
    first = await github(client, {"n": 1}, "same-id")
    again = await asyncio.gather(*(github(client, {"n": 1}, "same-id") for _ in range(5)))
    assert first.status_code == 202
    assert {r.status_code for r in again} == {200}
    assert {r.json()["executionId"] for r in again} == {first.json()["executionId"]}
    assert len(await executions(app)) == 1


async def test_concurrent_first_deliveries_of_one_id_start_one_execution(app, client):
    answers = await asyncio.gather(*(github(client, {"n": 2}, "racing") for _ in range(6)))
    assert sorted(r.status_code for r in answers) == [200] * 5 + [202]
    assert len({r.json()["executionId"] for r in answers}) == 1
    assert len(await executions(app)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},  # wrong
        {"X-Hub-Signature-256": ""},  # missing
        {"X-Hub-Signature-256": sign(b"{}")},  # no sha256= prefix
    ],
)
async def test_a_bad_or_missing_github_signature_is_401_and_starts_nothing(app, client, headers):
    sent = {"Content-Type": "application/json"} | headers
    response = await client.post(f"{HOOKS}/github/push", content=b"{}", headers=sent)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == REFUSED
    assert await executions(app) == []


async def test_a_signature_over_other_bytes_is_refused_even_for_the_same_json(app, client):
    signed = b'{"a": 1}'
    sent = b'{"a":1}'
    response = await client.post(
        f"{HOOKS}/github/push", content=sent,
        headers={"X-Hub-Signature-256": "sha256=" + sign(signed),
                 "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 401


async def test_slack_signature_and_a_replay_of_a_stale_request(app, client):
    body = b'{"type": "event_callback"}'
    fresh = await client.post(
        f"{HOOKS}/slack/events", content=body, headers=slack_headers(body, int(time.time()))
    )
    assert fresh.status_code == 202, fresh.text
    # The same request, correctly signed, but captured six minutes ago and replayed now: the
    # log says why it was refused, the sender learns only that it was.
    with capture_logs() as logs:
        stale = await client.post(
            f"{HOOKS}/slack/events", content=body,
            headers=slack_headers(body, int(time.time()) - 360),
        )  # fmt: skip
    assert stale.status_code == 401
    assert stale.json()["detail"] == REFUSED
    [refusal] = [e for e in logs if e["event"] == "webhook signature refused"]
    assert "replay window" in refusal["reason"] and refusal["triggerId"] == "sl"
    forged = await client.post(
        f"{HOOKS}/slack/events", content=body,
        headers=slack_headers(body, int(time.time()), secret="not-it"),
    )  # fmt: skip
    assert forged.status_code == 401
    assert len(await executions(app)) == 1


async def test_hmac_sha256_in_the_named_header(app, client):
    body = b'{"x": 1}'
    good = await client.post(
        f"{HOOKS}/plain", content=body,
        headers={"X-Signature": sign(body), "Content-Type": "application/json"},
    )  # fmt: skip
    bad = await client.post(
        f"{HOOKS}/plain", content=body,
        headers={"X-Signature": sign(b"other"), "Content-Type": "application/json"},
    )  # fmt: skip
    assert (good.status_code, bad.status_code) == (202, 401)


async def test_a_secret_that_is_not_configured_refuses_the_delivery(app, client, monkeypatch):
    monkeypatch.delenv("DWF_SECRET_HOOK_KEY")  # read at each delivery
    response = await github(client, {}, "d-x")
    assert response.status_code == 401
    assert await executions(app) == []


async def test_a_body_over_the_limit_is_413(app, client):
    body = json.dumps({"blob": "x" * 5000}).encode()
    response = await client.post(
        f"{HOOKS}/github/push", content=body,
        headers={"X-Hub-Signature-256": "sha256=" + sign(body),
                 "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 413
    assert await executions(app) == []


@pytest.mark.parametrize(
    ("content_type", "body", "status", "says"),
    [
        ("text/plain", b"hello", 415, "must be JSON"),
        ("multipart/form-data; boundary=x", b"--x--", 415, "or a form"),
        ("application/json", b"{not json", 400, "not valid JSON"),
        ("application/json", b"[1, 2]", 400, "JSON object"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_refused(  # noqa: PLR0917
    app, client, content_type, body, status, says
):
    response = await client.post(
        f"{HOOKS}/plain", content=body,
        headers={"X-Signature": sign(body), "Content-Type": content_type},
    )  # fmt: skip
    assert response.status_code == status
    assert says in response.json()["detail"]
    assert await executions(app) == []


async def test_an_activation_condition_that_is_false_starts_nothing(app, client):
    skipped = await client.post(f"{HOOKS}/open/clients", json={"kind": "invoice"})
    assert skipped.status_code == 200 and skipped.json() == {"activated": False}
    started = await client.post(f"{HOOKS}/open/clients", json={"kind": "client"})
    assert started.status_code == 202
    assert len(await executions(app)) == 1
    fires = await client.get("/api/v1/workflows/hooks/triggers/open/fires")
    assert [f["outcome"] for f in fires.json()["items"]] == ["fired", "skipped"]
    assert fires.json()["items"][1]["reason"] == "activationCondition is false"


async def test_an_activation_condition_that_throws_is_422(app, client):
    response = await client.post(f"{HOOKS}/open/clients", json={})
    assert response.status_code == 200  # undefined === 'client' is simply false
    await register(
        app,
        flow("hooks", GITHUB, SLACK, HMAC, OPEN | {"activationCondition": "trigger.a.b === 1"}),
    )
    response = await client.post(f"{HOOKS}/open/clients", json={})
    assert response.status_code == 422
    assert "activationCondition" in response.json()["detail"]


async def test_unknown_draft_and_archived_hooks_answer_the_same_404(app, client):
    await register(
        app, flow("drafted", {"id": "h", "type": "webhook", "path": "draft/hook"}, status="draft")
    )
    await register(
        app,
        flow("archived", {"id": "h", "type": "webhook", "path": "old/hook"}, status="archived"),
    )
    answers = [
        await client.post(f"{HOOKS}/{path}", json={})
        for path in ("no/such/hook", "draft/hook", "old/hook")
    ]
    other_tenant = await client.post("/api/v1/hooks/other/open/clients", json={"kind": "client"})
    for response in [*answers, other_tenant]:
        assert response.status_code == 404
        document = response.json()
        assert (document["type"], document["detail"]) == (
            "urn:dataworkflows:problem:not-found",
            "no webhook is served at this path for this tenant",
        )
    assert await executions(app) == []


# -- Slack's form bodies, and hostile input ----------------------------------------------------

# A slash command as Slack's "Verifying requests from Slack" page lays it out: form fields.
SLASH_COMMAND = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
    b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
    b"command=%2Fwebhook-collect&text=deploy+api+%F0%9F%9A%80&response_url=https%3A%2F%2F"
    b"hooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
    b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
FORM = "application/x-www-form-urlencoded"


async def slack(client, body: bytes, stamp: int | None = None, **headers: str):
    sent = slack_headers(body, int(time.time()) if stamp is None else stamp)
    sent = sent | {"Content-Type": FORM} | headers
    return await client.post(f"{HOOKS}/slack/events", content=body, headers=sent)


async def test_a_slack_slash_command_starts_an_execution_with_its_form_fields(app, client):
    response = await slack(client, SLASH_COMMAND)
    # 200, not 202: Slack shows the user who typed the command any other status as an error,
    # and the answer's `text` as a reply.
    assert response.status_code == 200, response.text
    [row] = await executions(app)
    assert response.json() == {
        "executionId": str(row["execution_id"]),
        "statusUrl": f"/api/v1/executions/{row['execution_id']}",
        "text": f"Execution {row['execution_id']} started.",
    }
    assert row["trigger_payload"] == {
        "token": "xyzz0WbapA4vBCDEFasx0q6G", "team_id": "T1DC2JH3J",
        "team_domain": "testteamnow", "channel_id": "G8PSS9T3V", "channel_name": "foobar",
        "user_id": "U2CERLKJA", "user_name": "roadrunner", "command": "/webhook-collect",
        "text": "deploy api \N{ROCKET}",
        "response_url": "https://hooks.slack.com/commands/T1DC2JH3J/397700885554/"
                        "96rGlfmibIGlgcZRskXaIFfN",
        "trigger_id": "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
    }  # fmt: skip
    # The signature is over the raw bytes: the same fields encoded otherwise are refused.
    reencoded = SLASH_COMMAND.replace(b"+", b"%20")
    forged = await client.post(
        f"{HOOKS}/slack/events", content=reencoded,
        headers=slack_headers(SLASH_COMMAND, int(time.time())) | {"Content-Type": FORM},
    )  # fmt: skip
    assert forged.status_code == 401


async def test_a_slack_interactive_message_has_its_payload_parsed(app, client):
    # Interactivity sends one form field, `payload`, holding the JSON of the interaction.
    interaction = {
        "type": "block_actions", "user": {"id": "U2CERLKJA", "username": "roadrunner"},
        "actions": [{"action_id": "approve", "value": "deploy-42"}],
        "response_url": "https://hooks.slack.com/actions/T1DC2JH3J/1/abc",
    }  # fmt: skip
    body = ("payload=" + urllib.parse.quote(json.dumps(interaction))).encode()
    response = await slack(client, body, **{"Content-Type": f"{FORM}; charset=utf-8"})
    assert response.status_code == 200, response.text
    [row] = await executions(app)
    assert row["trigger_payload"] == {"payload": interaction}
    bad = await slack(client, b"payload=%7Bnot+json")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "body.payload"
    assert len(await executions(app)) == 1


async def test_a_form_field_sent_twice_keeps_both_values(app, client):
    response = await slack(client, b"tag=a&tag=b&one=1")
    assert response.status_code == 200, response.text
    [row] = await executions(app)
    assert row["trigger_payload"] == {"tag": ["a", "b"], "one": "1"}


@pytest.mark.parametrize(
    ("content_type", "body", "field"),
    [
        ("application/json", rb'{"name": "x\u0000y"}', "body.name"),
        ("application/json", rb'{"items": [{"ok": 1}, "\ud800"]}', "body.items[1]"),
        ("application/json", rb'{"k\u0000": 1}', "body"),
        (FORM, b"text=a%00b", "body.text"),
        (FORM, b"payload=%7B%22a%22%3A%22%5Cu0000%22%7D", "body.payload.a"),
        (FORM, b"text=%FF", "body"),  # not UTF-8
    ],
)
async def test_text_the_database_cannot_store_is_400_naming_the_field(
    app, client, content_type, body, field
):
    response = await slack(client, body, **{"Content-Type": content_type})
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["errors"][0]["field"] == field
    assert await executions(app) == []


@pytest.mark.parametrize(
    "stamp",
    ["9" * 400, "+{now}", "{now}.5", " {now}", "1_{now}", "-{now}", "0x1"],
)
async def test_a_slack_timestamp_that_is_not_a_unix_time_is_401(app, client, stamp):
    now = int(time.time())
    sent = stamp.format(now=now)
    body = b'{"type": "event_callback"}'
    signed = hmac.new(SECRET.encode(), f"v0:{sent}:".encode() + body, hashlib.sha256)
    response = await client.post(
        f"{HOOKS}/slack/events", content=body,
        headers={"X-Slack-Request-Timestamp": sent, "X-Slack-Signature": "v0=" + signed.hexdigest(),
                 "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 401, response.text
    assert response.json()["detail"] == REFUSED
    assert await executions(app) == []


@pytest.mark.parametrize(
    ("url", "field"),
    [("/api/v1/hooks/def%00ault/open/clients", "path.tenant"),
     (f"{HOOKS}/open%00/clients", "path.path")],
)  # fmt: skip
async def test_a_nul_in_a_hook_path_or_tenant_is_422_naming_it(app, client, url, field):
    response = await client.post(url, json={"kind": "client"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


async def test_a_runaway_activation_condition_does_not_stall_other_requests(app, client):
    await register(
        app,
        flow("hooks", GITHUB, SLACK, HMAC,
             OPEN | {"activationCondition": "(() => { while (true) {} })()"}),
    )  # fmt: skip
    webhooks = app.state.parts.webhooks
    # A long time limit, so a stalled event loop would stand out from any noise of the machine.
    webhooks.settings = replace(webhooks.settings, condition_time_limit=0.5)
    stalled, probes = 0.0, 0

    async def watch() -> None:
        # A probe every 2 ms: the longest time between two answers is how long one waited.
        nonlocal stalled, probes
        last = time.perf_counter()
        while True:
            assert (await client.get("/health")).status_code == 200
            probes, now = probes + 1, time.perf_counter()
            stalled, last = max(stalled, now - last), now
            await asyncio.sleep(0.002)

    watching = asyncio.create_task(watch())
    for _ in range(3):
        answer = await client.post(f"{HOOKS}/open/clients", json={"kind": "client"})
        # Stopped at its time limit (422), while /health kept answering.
        assert answer.status_code == 422
        assert "took longer than 500 ms" in answer.json()["detail"]
    watching.cancel()
    assert stalled < 0.25, f"a /health probe waited {stalled:.3f} s"
    assert probes > 30
    assert await executions(app) == []


# -- the triggers API ----------------------------------------------------------------------------

NIGHTLY = {"id": "nightly", "type": "schedule", "cron": "0 2 * * *", "timezone": "Europe/Berlin"}


async def test_listing_shows_next_fire_times_urls_and_last_fires(app, client):
    await register(app, flow("hooks", GITHUB, NIGHTLY))
    await github(client, {"n": 1}, "d-listed")
    listing = (await client.get("/api/v1/workflows/hooks/triggers")).json()
    items = {t["id"]: t for t in listing["items"]}
    assert items["gh"]["url"] == "/api/v1/hooks/default/github/push"
    assert items["gh"]["lastFires"][0]["outcome"] == "fired"
    nightly = items["nightly"]
    assert nightly["registered"] and nightly["status"] == "ok"
    assert len(nightly["nextFireTimes"]) == 3
    assert all(t.endswith(("T00:00:00+00:00", "T01:00:00+00:00")) for t in nightly["nextFireTimes"])
    missing = await client.get("/api/v1/workflows/nope/triggers")
    assert missing.status_code == 404


async def test_adding_and_removing_a_trigger_makes_new_versions(app, client):
    added = await client.post("/api/v1/workflows/hooks/triggers", json=NIGHTLY)
    assert added.status_code == 201, added.text
    assert added.json()["registered"] and added.json()["nextFireTimes"]
    listing = (await client.get("/api/v1/workflows/hooks/triggers")).json()
    assert listing["version"] == 2
    again = await client.post("/api/v1/workflows/hooks/triggers", json=NIGHTLY)
    assert again.status_code == 409
    bad = await client.post(
        "/api/v1/workflows/hooks/triggers",
        json={"id": "bad", "type": "schedule", "cron": "61 * * * *", "timezone": "Mars/Base"},
    )
    assert bad.status_code == 422
    fields = {e["field"] for e in bad.json()["errors"]}
    assert {"body.cron", "body.timezone"} <= fields
    removed = await client.delete("/api/v1/workflows/hooks/triggers/nightly")
    assert removed.status_code == 204
    listing = (await client.get("/api/v1/workflows/hooks/triggers")).json()
    # The definition is version 1's again: the same checksum is the same version.
    assert listing["version"] == 1 and "nightly" not in {t["id"] for t in listing["items"]}
    gone = await client.delete("/api/v1/workflows/hooks/triggers/nightly")
    assert gone.status_code == 404


async def test_triggers_of_a_workflow_from_git_are_read_only(app, client, tmp_path):
    # Only a sync records a workflow from git: sync a repository that has it.
    repo = gitrepo.GitRepo(tmp_path / "repo")
    repo.write("workflows/from-git.yaml", gitrepo.flow("from-git"))
    repo.commit()
    parts: Daemon = app.state.parts
    synced = replace(parts.settings, sync_repo=str(repo.root))
    async with Daemon(synced, database=parts.db) as syncing:
        run = await syncing.syncer().sync("cli")
    assert run is not None and run.status == "applied", run
    added = await client.post("/api/v1/workflows/from-git/triggers", json=NIGHTLY)
    assert added.status_code == 409 and "managed by git" in added.json()["detail"]


async def test_a_webhook_path_another_workflow_serves_is_a_conflict(app, client):
    await register(app, flow("second"))
    taken = await client.post(
        "/api/v1/workflows/second/triggers",
        json={"id": "dup", "type": "webhook", "path": "github/push"},
    )
    assert taken.status_code == 409 and "already served" in taken.json()["detail"]
