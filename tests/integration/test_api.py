"""SPEC §9 HTTP API in process: the app with its lifespan, over ASGI, on a real Postgres."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from runner.daemon import Daemon
from runner.settings import Settings
from tests.waiting import until

pytestmark = pytest.mark.anyio

PROBLEM_JSON = "application/problem+json"
TERMINAL = {"Succeeded", "Failed", "Cancelled"}


def echo(node_id: str, message: str, *targets: str) -> dict[str, Any]:
    node = {"id": node_id, "actionType": "core.echo", "parameters": {"message": message}}
    return node | ({"edges": [{"targetNode": t} for t in targets]} if targets else {})


def workflow(workflow_id: str = "w", *nodes: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A workflow of `nodes` (default: a -> b, echoing the trigger's name, then it with `!`)."""
    nodes = nodes or (
        echo("a", "{{ trigger.name }}", "b"),
        echo("b", "{{ nodes.a.outputs.echo }}!"),
    )
    return {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": workflow_id,
        "status": top.pop("status", "active"),
        "startNode": nodes[0]["id"],
        "nodes": list(nodes),
        **top,
    }


SLOW = {"id": "slow", "actionType": "core.delay", "parameters": {"duration": "30s"}}


@pytest.fixture
async def app(daemon: Daemon) -> AsyncIterator[FastAPI]:
    application = daemon.app({"worker"})
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


async def register(app: FastAPI, definition: dict[str, Any]) -> None:
    parts: Daemon = app.state.parts
    await parts.versions.record(
        definition, tenant=parts.settings.tenant, source_kind="local", source_path="test.yaml"
    )


async def start(client: httpx.AsyncClient, workflow_id: str = "w", **body: Any) -> dict[str, Any]:
    response = await client.post(f"/api/v1/workflows/{workflow_id}/execute", json=body)
    assert response.status_code == 202, response.text
    return response.json()


async def wait_until(
    client: httpx.AsyncClient, execution_id: str, statuses: set[str], timeout: float = 10.0
) -> dict[str, Any]:
    """Poll the execution until its status is one of `statuses`."""
    seen: list[str] = []

    async def reached() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/executions/{execution_id}")
        assert response.status_code == 200, response.text
        document = response.json()
        seen.append(document["status"])
        return document if document["status"] in statuses else None

    try:
        return await until(
            reached, timeout, f"execution {execution_id} to be {sorted(statuses)}", interval=0.02
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}: still {seen[-1]} after {timeout} s") from None


def assert_problem(response: httpx.Response, status: int, *in_detail: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == status
    assert {"type", "title", "status", "detail", "instance"} <= set(problem)
    assert problem["instance"] == response.request.url.path
    for text in in_detail:
        assert text in problem["detail"], problem
    return problem


def fields(problem: dict[str, Any]) -> list[str]:
    return [error["field"] for error in problem.get("errors", [])]


# --- probes ---------------------------------------------------------------------------------


async def test_health_answers_ok(client):
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_the_database_answers_and_is_migrated(client):
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_ready_is_503_naming_the_pending_migrations_on_an_unmigrated_database(
    empty_database_url, tmp_path
):
    settings = Settings(database_url=empty_database_url, home=tmp_path / "home")
    async with Daemon(settings, migrate=False) as unmigrated:
        application = unmigrated.app()
        async with (
            application.router.lifespan_context(application),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=application), base_url="http://api.test"
            ) as http,
        ):
            problem = assert_problem(await http.get("/ready"), 503, "not applied", "0001_")
            assert problem["type"].endswith(":not-ready")
            assert (await http.get("/health")).status_code == 200


# --- execute --------------------------------------------------------------------------------


async def test_execute_accepts_runs_and_reports_nodes_and_attempts(app, client):
    await register(app, workflow(outputs={"final": "{{ nodes.b.outputs.echo }}"}))
    response = await client.post(
        "/api/v1/workflows/w/execute",
        json={"trigger": {"name": "ada"}, "principal": "alice"},
        headers={"X-Correlation-Id": "corr-1"},
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert set(accepted) == {"executionId", "status", "statusUrl"}
    assert accepted["status"] == "Pending"
    assert accepted["statusUrl"] == f"/api/v1/executions/{accepted['executionId']}"
    assert response.headers["location"] == accepted["statusUrl"]
    assert response.headers["x-correlation-id"] == "corr-1"

    document = await wait_until(client, accepted["executionId"], TERMINAL)
    assert document["status"] == "Succeeded"
    assert document["outputs"] == {"final": "ada!"}
    assert document["principal"] == "alice"
    assert document["correlationId"] == "corr-1"
    assert {k: v["status"] for k, v in document["nodes"].items()} == {
        "a": "Succeeded",
        "b": "Succeeded",
    }
    assert [(a["nodeId"], a["attempt"], a["status"]) for a in document["attempts"]] == [
        ("a", 1, "Succeeded"),
        ("b", 1, "Succeeded"),
    ]
    assert document["attempts"][0]["parameters"] == {"message": "ada"}
    assert document["attempts"][1]["outputs"] == {"echo": "ada!"}


async def test_execute_without_a_body_starts_with_an_empty_trigger(app, client):
    await register(app, workflow("plain", echo("a", "hi")))
    response = await client.post("/api/v1/workflows/plain/execute")
    assert response.status_code == 202, response.text
    document = await wait_until(client, response.json()["executionId"], TERMINAL)
    assert document["status"] == "Succeeded"


async def test_a_repeated_request_id_answers_200_with_the_same_execution(app, client):
    await register(app, workflow())
    first = await start(client, trigger={"name": "x"}, requestId="order-42")
    again = await client.post(
        "/api/v1/workflows/w/execute", json={"trigger": {"name": "y"}, "requestId": "order-42"}
    )
    assert again.status_code == 200, again.text
    assert again.json()["executionId"] == first["executionId"]
    document = await wait_until(client, first["executionId"], TERMINAL)
    assert document["requestId"] == "order-42"
    listed = (await client.get("/api/v1/executions", params={"workflowId": "w"})).json()
    assert [item["executionId"] for item in listed["items"]] == [first["executionId"]]


async def test_the_request_id_header_is_used_when_the_body_has_none(app, client):
    await register(app, workflow())
    headers = {"X-Request-Id": "from-header"}
    url = "/api/v1/workflows/w/execute"
    first = await client.post(url, json={"trigger": {"name": "x"}}, headers=headers)
    assert first.status_code == 202
    again = await client.post(url, json={"trigger": {"name": "x"}}, headers=headers)
    assert again.status_code == 200
    assert again.json()["executionId"] == first.json()["executionId"]
    # The body's requestId wins over the header.
    other = await client.post(
        url, json={"trigger": {"name": "x"}, "requestId": "from-body"}, headers=headers
    )
    assert other.status_code == 202
    document = await wait_until(client, other.json()["executionId"], TERMINAL)
    assert document["requestId"] == "from-body"
    await wait_until(client, first.json()["executionId"], TERMINAL)


async def test_an_unknown_workflow_is_404_problem_json(client):
    response = await client.post("/api/v1/workflows/nope/execute", json={})
    problem = assert_problem(response, 404, "'nope'", "does not exist")
    assert problem["type"].endswith(":not-found")
    assert problem["title"] == "Not Found"


async def test_a_draft_is_409_unless_allow_draft(app, client):
    await register(app, workflow("drafty", status="draft"))
    url = "/api/v1/workflows/drafty/execute"
    problem = assert_problem(await client.post(url, json={}), 409, "is Draft", "only Active")
    assert problem["type"].endswith(":conflict")
    # It names the API's way to start a Draft, not the command line's.
    assert "`allowDraft=true`" in problem["detail"] and "--draft" not in problem["detail"]
    response = await client.post(
        url, json={"trigger": {"name": "d"}}, params={"allowDraft": "true"}
    )
    assert response.status_code == 202, response.text
    document = await wait_until(client, response.json()["executionId"], TERMINAL)
    assert document["status"] == "Succeeded"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"trigger": [1, 2]}, "body.trigger"),
        ({"trigger": "text"}, "body.trigger"),
        ({"trigger": None}, "body.trigger"),
        ({"requestId": ""}, "body.requestId"),
        ({"requestId": 7}, "body.requestId"),
        ({"payload": {}}, "body.payload"),
        ([1, 2], "body"),
    ],
)
async def test_a_malformed_body_is_422_naming_the_field(app, client, body, field):
    await register(app, workflow())
    response = await client.post("/api/v1/workflows/w/execute", json=body)
    problem = assert_problem(response, 422, field)
    assert problem["type"].endswith(":validation")
    assert fields(problem) == [field]


async def test_invalid_json_or_a_non_json_content_type_is_422_naming_the_body(app, client):
    await register(app, workflow())
    response = await client.post(
        "/api/v1/workflows/w/execute",
        content=b'{"trigger": ',
        headers={"Content-Type": "application/json"},
    )
    problem = assert_problem(response, 422, "not valid JSON")
    assert fields(problem) == ["body"]
    response = await client.post(
        "/api/v1/workflows/w/execute",
        content=b'{"trigger": {}}',
        headers={"Content-Type": "text/plain"},
    )
    problem = assert_problem(response, 422, "Content-Type: application/json")
    assert fields(problem) == ["body"]


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("method", "url", "sent", "field"),
    [
        ("POST", "/api/v1/workflows/w/execute", {"content": rb'{"trigger": {"name": "a\u0000b"}}'},
         "body.trigger.name"),
        ("POST", "/api/v1/workflows/w/execute",
         {"content": rb'{"trigger": {"list": [{"deep": ["ok", "\ud800"]}]}}'},
         "body.trigger.list[0].deep[1]"),
        ("POST", "/api/v1/workflows/w/execute", {"content": rb'{"trigger": {"k\u0000": 1}}'},
         "body.trigger"),
        ("POST", "/api/v1/workflows/w/execute", {"content": rb'{"requestId": "r\u0000"}'},
         "body.requestId"),
        ("POST", "/api/v1/workflows/w/execute", {"content": rb'{"principal": "\udfff"}'},
         "body.principal"),
        ("POST", "/api/v1/workflows/w/execute", {"headers": {"X-Request-Id": "r\x00"}},
         "header.x-request-id"),
        ("POST", "/api/v1/workflows/a%00b/execute", {}, "path.workflowId"),
        ("GET", "/api/v1/workflows/a%00b", {}, "path.workflowId"),
        ("GET", "/api/v1/executions?workflowId=a%00b", {}, "query.workflowId"),
        ("GET", "/api/v1/workflows?cursor=%00", {}, "query.cursor"),
        ("GET", "/api/v1/workflows/w/triggers/t/fires?before=1%00", {}, "query.before"),
        ("POST", "/api/v1/workflows", {"content": rb'{"yaml": "id: a\u0000"}'}, "body.yaml"),
        ("POST", "/api/v1/workflows/w/triggers",
         {"content": rb'{"id": "t\ud800", "type": "manual"}'}, "body.id"),
    ],
)  # fmt: skip
async def test_nul_or_a_lone_surrogate_anywhere_is_422_naming_the_field(  # noqa: PLR0917
    app, client, method, url, sent, field
):
    await register(app, workflow())
    headers = JSON | sent.get("headers", {})
    response = await client.request(method, url, content=sent.get("content"), headers=headers)
    problem = assert_problem(response, 422)
    assert fields(problem) == [field]
    assert "cannot store" in problem["detail"]
    listed = (await client.get("/api/v1/executions")).json()
    assert listed["items"] == []  # nothing started, nothing half-written


async def test_numbers_beyond_what_the_database_holds_are_422_naming_them(app, client):
    await register(app, workflow())
    execution_id = (await start(client, trigger={"name": "n"}))["executionId"]
    huge = str(2**63)
    fires = await client.get("/api/v1/workflows/w/triggers/t/fires", params={"before": huge})
    assert fields(assert_problem(fires, 422)) == ["query.before"]
    events = f"/api/v1/executions/{execution_id}/events"
    assert fields(assert_problem(await client.get(events, params={"after": huge}), 422)) == [
        "query.after"
    ]
    resumed = await client.get(events, headers={"Last-Event-ID": huge})
    assert fields(assert_problem(resumed, 422)) == ["header.Last-Event-ID"]
    largest = await client.get(events, params={"after": str(2**63 - 1)})
    assert largest.status_code == 200 and largest.json() == []
    await wait_until(client, execution_id, TERMINAL)


async def test_a_body_that_is_not_utf8_is_422_naming_the_body(app, client):
    await register(app, workflow())
    for url in ("/api/v1/workflows/w/execute", "/api/v1/workflows/w/triggers"):
        response = await client.post(url, content=b'{"trigger": "\xff"}', headers=JSON)
        problem = assert_problem(response, 422, "not UTF-8")
        assert fields(problem) == ["body"]


async def test_a_too_deep_trigger_is_400_naming_the_trigger(app, client):
    await register(app, workflow())
    deep: dict[str, Any] = {}
    for _ in range(100):
        deep = {"x": deep}
    response = await client.post("/api/v1/workflows/w/execute", json={"trigger": deep})
    problem = assert_problem(response, 400, "nests deeper than")
    assert fields(problem) == ["body.trigger"]
    assert problem["type"].endswith(":invalid-request")


async def test_a_body_over_one_mib_is_413_with_or_without_a_content_length(app, client):
    await register(app, workflow())
    body = json.dumps({"trigger": {"blob": "x" * (2 * 1024 * 1024)}}).encode()
    url = "/api/v1/workflows/w/execute"
    headers = {"Content-Type": "application/json"}
    problem = assert_problem(await client.post(url, content=body, headers=headers), 413, "limit")
    assert "1,048,576 bytes" in problem["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the size is counted
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    assert_problem(await client.post(url, content=chunks(), headers=headers), 413, "over the limit")
    listed = (await client.get("/api/v1/executions")).json()
    assert listed["items"] == []


# --- read and list --------------------------------------------------------------------------


async def test_an_unknown_execution_is_404_and_a_malformed_id_422(client):
    unknown = uuid.uuid4()
    assert_problem(await client.get(f"/api/v1/executions/{unknown}"), 404, str(unknown))
    problem = assert_problem(await client.get("/api/v1/executions/not-a-uuid"), 422)
    assert fields(problem) == ["path.executionId"]
    for path in ("/cancel", "/events"):
        method = client.post if path == "/cancel" else client.get
        assert_problem(await method(f"/api/v1/executions/{unknown}{path}"), 404)
        assert_problem(await method(f"/api/v1/executions/not-a-uuid{path}"), 422)


async def test_list_filters_and_pages_with_a_cursor(app, client):
    await register(app, workflow())
    await register(app, workflow("other"))
    started = [(await start(client, trigger={"name": str(i)}))["executionId"] for i in range(7)]
    other = (await start(client, "other", trigger={"name": "o"}))["executionId"]
    for execution_id in [*started, other]:
        await wait_until(client, execution_id, TERMINAL)

    seen, cursor, pages = [], None, 0
    while True:
        params = {"workflowId": "w", "limit": 3} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/api/v1/executions", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        seen += [item["executionId"] for item in page["items"]]
        assert all(item["workflowId"] == "w" for item in page["items"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(started))  # newest first, each once

    everything = (await client.get("/api/v1/executions")).json()
    assert len(everything["items"]) == 8 and everything["nextCursor"] is None
    item = everything["items"][0]
    assert item["executionId"] == other
    assert {"workflowVersion", "status", "requestId", "createdAt", "finishedAt"} <= set(item)
    succeeded = await client.get("/api/v1/executions", params={"status": "Succeeded"})
    assert len(succeeded.json()["items"]) == 8
    failed = await client.get("/api/v1/executions", params={"status": "Failed"})
    assert failed.json() == {"items": [], "nextCursor": None}


async def test_list_refuses_a_bad_cursor_status_or_limit(client):
    problem = assert_problem(
        await client.get("/api/v1/executions", params={"cursor": "garbage"}), 400, "cursor"
    )
    assert fields(problem) == ["query.cursor"]
    problem = assert_problem(await client.get("/api/v1/executions", params={"status": "Done"}), 422)
    assert fields(problem) == ["query.status"]
    for limit in (0, 501, "many"):
        problem = assert_problem(
            await client.get("/api/v1/executions", params={"limit": limit}), 422
        )
        assert fields(problem) == ["query.limit"]


# --- cancel ---------------------------------------------------------------------------------


async def test_cancel_ends_a_running_execution_cancelled_within_a_second(app, client):
    await register(app, workflow("slow", SLOW))
    accepted = await start(client, "slow")
    execution_id = accepted["executionId"]
    await wait_until(client, execution_id, {"Running"})
    asked = time.monotonic()
    response = await client.post(f"/api/v1/executions/{execution_id}/cancel")
    assert response.status_code == 202, response.text
    assert response.json() == {"executionId": execution_id, "status": "Cancelling"}
    document = await wait_until(client, execution_id, TERMINAL, timeout=1.0)
    assert time.monotonic() - asked < 1.0
    assert document["status"] == "Cancelled"
    assert document["nodes"]["slow"]["status"] == "Cancelled"

    again = await client.post(f"/api/v1/executions/{execution_id}/cancel")
    problem = assert_problem(again, 409, "already ended Cancelled")
    assert problem["type"].endswith(":conflict")


async def test_cancel_of_a_finished_execution_is_409_and_of_an_unknown_one_404(app, client):
    await register(app, workflow())
    execution_id = (await start(client, trigger={"name": "n"}))["executionId"]
    await wait_until(client, execution_id, TERMINAL)
    response = await client.post(f"/api/v1/executions/{execution_id}/cancel")
    assert_problem(response, 409, "already ended Succeeded")
    assert_problem(await client.post(f"/api/v1/executions/{uuid.uuid4()}/cancel"), 404)


# --- events ---------------------------------------------------------------------------------


def sse_frames(text: str) -> list[dict[str, str]]:
    frames = []
    for block in text.split("\n\n"):
        fields_ = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if fields_:
            frames.append(fields_)
    return frames


async def test_events_list_in_order_and_after(app, client):
    await register(app, workflow())
    execution_id = (await start(client, trigger={"name": "e"}))["executionId"]
    await wait_until(client, execution_id, TERMINAL)
    response = await client.get(f"/api/v1/executions/{execution_id}/events")
    assert response.status_code == 200
    events = response.json()
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "ExecutionCreated" and kinds[-1] == "ExecutionSucceeded"
    assert ("NodeStarted", "a", 1) in [(e["kind"], e["nodeId"], e["attempt"]) for e in events]
    assert set(events[0]) == {"eventId", "kind", "nodeId", "attempt", "data", "createdAt"}
    ids = [e["eventId"] for e in events]
    assert ids == sorted(ids)
    later = await client.get(
        f"/api/v1/executions/{execution_id}/events", params={"after": ids[1], "limit": 2}
    )
    assert [e["eventId"] for e in later.json()] == ids[2:4]


async def test_follow_streams_server_sent_events_until_the_terminal_event(app, client):
    delay = {"id": "a", "actionType": "core.delay", "parameters": {"duration": "300ms"}}
    await register(app, workflow("slowish", delay))
    execution_id = (await start(client, "slowish"))["executionId"]
    url = f"/api/v1/executions/{execution_id}/events"
    # Starts while the execution runs; the ASGI transport returns once the stream has ended.
    response = await asyncio.wait_for(client.get(url, params={"follow": "true"}), timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = sse_frames(response.text)
    assert frames[-1]["event"] == "ExecutionSucceeded"
    for frame in frames:
        data = json.loads(frame["data"])
        assert frame["id"] == str(data["eventId"]) and frame["event"] == data["kind"]
    listed = (await client.get(url)).json()
    assert [f["id"] for f in frames] == [str(e["eventId"]) for e in listed]

    # Resuming after the second event sends only the rest, and ends at once: it has ended.
    resumed = await client.get(
        url, params={"follow": "true"}, headers={"Last-Event-ID": frames[1]["id"]}
    )
    assert [f["id"] for f in sse_frames(resumed.text)] == [f["id"] for f in frames[2:]]


async def test_a_bad_last_event_id_or_after_is_422_naming_it(app, client):
    await register(app, workflow())
    execution_id = (await start(client, trigger={"name": "e"}))["executionId"]
    url = f"/api/v1/executions/{execution_id}/events"
    response = await client.get(url, params={"follow": "true"}, headers={"Last-Event-ID": "x"})
    assert fields(assert_problem(response, 422)) == ["header.Last-Event-ID"]
    response = await client.get(url, params={"after": -1})
    assert fields(assert_problem(response, 422)) == ["query.after"]
    await wait_until(client, execution_id, TERMINAL)


async def test_follow_of_a_cancelled_execution_ends_at_execution_cancelled(app, client):
    await register(app, workflow("slow", SLOW))
    execution_id = (await start(client, "slow"))["executionId"]
    url = f"/api/v1/executions/{execution_id}/events"
    follow = asyncio.ensure_future(client.get(url, params={"follow": "true"}))
    await wait_until(client, execution_id, {"Running"})
    assert not follow.done()
    await client.post(f"/api/v1/executions/{execution_id}/cancel")
    response = await asyncio.wait_for(follow, timeout=5)
    assert sse_frames(response.text)[-1]["event"] == "ExecutionCancelled"


# --- errors and schema ----------------------------------------------------------------------


async def test_unknown_routes_and_methods_are_problem_json(client):
    assert_problem(await client.get("/api/v1/nothing-here"), 404, "no route")
    problem = assert_problem(await client.delete("/api/v1/executions"), 405)
    assert problem["type"] == "about:blank"


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/api/v1/workflows", {"GET", "POST"}),
        ("/api/v1/workflows/w/triggers", {"GET", "POST"}),
        ("/api/v1/workflows/w/triggers/t", {"DELETE"}),
        ("/api/v1/sync", {"GET", "POST"}),
        ("/api/v1/executions/00000000-0000-0000-0000-000000000000", {"GET"}),
    ],
)
async def test_a_method_not_allowed_names_every_method_of_the_path(client, path, methods):
    for method in ("OPTIONS", "PUT", "PATCH"):
        response = await client.request(method, path)
        assert_problem(response, 405, f"{method} is not allowed")
        allowed = {m.strip() for m in response.headers["allow"].split(",")}
        assert allowed - {"HEAD"} == methods, (method, path)


async def test_an_unexpected_error_is_a_500_without_its_traceback(app, client):
    async def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/boom", boom)
    response = await client.get("/boom")
    problem = assert_problem(response, 500, "unexpected error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert problem["type"].endswith(":internal")


async def test_openapi_lists_every_route_with_models(client):
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "DataWorkflows runner"
    paths = schema["paths"]
    assert set(paths) >= {
        "/health",
        "/ready",
        "/api/v1/workflows/{workflowId}/execute",
        "/api/v1/executions",
        "/api/v1/executions/{executionId}",
        "/api/v1/executions/{executionId}/cancel",
        "/api/v1/executions/{executionId}/events",
    }
    execute = paths["/api/v1/workflows/{workflowId}/execute"]["post"]
    assert {"200", "202", "404", "409", "413", "422", "503"} <= set(execute["responses"])
    # Every error is documented as it is sent: a problem document.
    for path, operations in paths.items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status[0] in "45":
                    assert answer["content"] == {
                        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }, (method, path, status)
            for parameter in operation.get("parameters", []):  # absent or a value, never null
                assert "null" not in json.dumps(parameter["schema"]), (method, path, parameter)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    body = schema["components"]["schemas"]["ExecuteBody"]["properties"]
    assert set(body) == {"trigger", "requestId", "principal"}
    assert all(field.get("description") for field in body.values())
    assert (await client.get("/docs")).status_code == 200
