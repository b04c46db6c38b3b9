"""core.http, slack.post-message and monday.* run by the engine against local servers that speak
each API's documented protocol (tests/fakes.py), on a real Postgres."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import httpx
import pytest

from runner.daemon import Daemon
from tests import fakes
from tests.integration.test_engine import register, run, workflow

pytestmark = pytest.mark.anyio

SLACK_TOKEN = "xoxb-test-" + uuid.uuid4().hex
MONDAY_TOKEN = "monday-test-" + uuid.uuid4().hex
FAST_RETRY = {"maxAttempts": 3, "backoff": "fixed", "initialDelay": "10ms"}


def node(node_id: str, action: str, parameters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "actionType": action, "parameters": parameters, **extra}


@pytest.fixture
def http_server():
    with fakes.http() as server:
        yield server


@pytest.fixture
def slack_api(monkeypatch):
    monkeypatch.setenv("DWF_SECRET_SLACK_TOKEN", SLACK_TOKEN)
    with fakes.slack(SLACK_TOKEN) as server:
        yield server


@pytest.fixture
def monday_api(monkeypatch):
    monkeypatch.setenv("DWF_SECRET_MONDAY_TOKEN", MONDAY_TOKEN)
    with fakes.monday(MONDAY_TOKEN) as server:
        yield server


@pytest.fixture
def local(settings, http_server, slack_api, monday_api):
    """Settings whose connectors reach the local servers (loopback allowed)."""
    return dataclasses.replace(
        settings,
        http_allow_private=True,
        slack_api_url=slack_api.url,
        monday_api_url=monday_api.url,
    )


# -- core.http --------------------------------------------------------------------------------


async def test_http_request_carries_headers_query_and_correlation_id(db, local, http_server):
    doc = await run(
        db,
        local,
        workflow(
            node(
                "a",
                "core.http",
                {
                    "method": "POST",
                    "url": f"{http_server.url}/echo",
                    "headers": {"X-Thing": "1"},
                    "query": {"q": "word", "n": 2},
                    "json": {"hello": "{{ trigger.name }}"},
                },
            )
        ),
        {"name": "ada"},
        correlation_id="corr-123",
    )
    assert doc["status"] == "Succeeded"
    outputs = doc["nodes"]["a"]["outputs"]
    assert outputs["status"] == 200
    echoed = outputs["json"]
    assert echoed["query"] == {"q": "word", "n": "2"}
    assert echoed["headers"]["x-thing"] == "1"
    assert echoed["headers"]["x-correlation-id"] == "corr-123"
    assert echoed["body"] == '{"hello":"ada"}'


async def test_http_5xx_is_retried_and_4xx_is_not(db, local, http_server):
    http_server.fail_next = 1
    doc = await run(
        db,
        local,
        workflow(
            node(
                "a",
                "core.http",
                {"url": f"{http_server.url}/flaky"},
                retry=FAST_RETRY,
                edges=[{"targetNode": "b"}],
            ),
            node("b", "core.http", {"url": f"{http_server.url}/status/404"}, retry=FAST_RETRY),
        ),
    )
    rows = [(r.node_id, r.attempt, r.status) for r in doc["attemptRows"]]
    assert rows == [
        ("a", 1, "RetriableFailure"),
        ("a", 2, "Succeeded"),
        ("b", 1, "Failed"),
    ]
    error = doc["nodes"]["b"]["error"]
    assert error["type"] == "HTTP 404"
    assert "/status/404 answered 404" in error["message"]


async def test_http_429_waits_for_retry_after(db, local, http_server):
    doc = await run(
        db,
        local,
        workflow(
            node(
                "a",
                "core.http",
                {"url": f"{http_server.url}/status/429"},
                retry={"maxAttempts": 2, "backoff": "fixed", "initialDelay": "10ms"},
            )
        ),
    )
    first, second = doc["attemptRows"]
    assert (first.status, second.status) == ("RetriableFailure", "Failed")
    # Retry-After: 1 outweighs the policy's 10 ms.
    assert (second.started_at - first.finished_at).total_seconds() >= 0.9


async def test_http_response_over_the_cap_fails_the_node(db, local, http_server):
    capped = dataclasses.replace(local, http_max_response_bytes=1000)
    doc = await run(
        db,
        capped,
        workflow(
            node("a", "core.http", {"url": f"{http_server.url}/big?size=5000"}, retry=FAST_RETRY)
        ),
    )
    assert doc["nodes"]["a"]["status"] == "Failed"
    assert doc["nodes"]["a"]["attempts"] == 1  # permanent: not retried
    assert doc["nodes"]["a"]["error"]["type"] == "ResponseTooLarge"
    assert "larger than 1000 bytes" in doc["nodes"]["a"]["error"]["message"]


@pytest.mark.parametrize(
    "url",
    [
        "{local}/echo",
        "http://localhost:9/echo",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
    ],
)
async def test_private_addresses_are_refused_unless_allowed(db, settings, http_server, url):
    doc = await run(
        db,
        settings,  # DWF_HTTP_ALLOW_PRIVATE unset
        workflow(node("a", "core.http", {"url": url.format(local=http_server.url)})),
    )
    error = doc["nodes"]["a"]["error"]
    assert error["type"] == "AddressRefused"
    assert "DWF_HTTP_ALLOW_PRIVATE" in error["message"]
    assert http_server.requests == []


async def test_a_name_that_does_not_resolve_is_transient_and_never_sent(db, settings):
    doc = await run(
        db,
        settings,
        workflow(node("a", "core.http", {"url": "http://nothing-here.invalid/"}, retry=FAST_RETRY)),
    )
    assert [r.status for r in doc["attemptRows"]] == ["RetriableFailure"] * 2 + ["Failed"]
    assert doc["nodes"]["a"]["error"]["type"] == "ConnectionError"
    assert "nothing-here.invalid" in doc["nodes"]["a"]["error"]["message"]


async def test_redirects_are_followed_only_when_asked_and_checked(db, settings, local, http_server):
    doc = await run(
        db,
        local,
        workflow(
            node(
                "a",
                "core.http",
                {"url": f"{http_server.url}/redirect", "followRedirects": True},
                edges=[{"targetNode": "b"}],
            ),
            node("b", "core.http", {"url": f"{http_server.url}/redirect"}),
        ),
    )
    assert doc["nodes"]["a"]["outputs"]["json"]["method"] == "GET"  # landed on /echo
    assert doc["nodes"]["b"]["error"]["type"] == "HTTP 302"


async def test_a_parameter_of_the_wrong_type_stops_before_any_request(db, local, http_server):
    doc = await run(
        db,
        local,
        workflow(node("a", "core.http", {"url": f"{http_server.url}/echo", "timeout": 5})),
    )
    error = doc["nodes"]["a"]["error"]
    assert error["type"] == "InvalidParameters"
    assert "parameters.timeout" in error["message"]
    assert http_server.requests == []


async def test_a_refused_connection_is_transient(db, local):
    doc = await run(
        db,
        local,
        workflow(node("a", "core.http", {"url": "http://127.0.0.1:9/"}, retry=FAST_RETRY)),
    )
    assert [r.status for r in doc["attemptRows"]] == ["RetriableFailure"] * 2 + ["Failed"]
    assert doc["nodes"]["a"]["error"]["type"] == "ConnectionError"


# -- Slack ------------------------------------------------------------------------------------


async def test_slack_post_message_returns_ts_and_a_resource_link(db, local, slack_api):
    doc = await run(
        db,
        local,
        workflow(
            node(
                "post",
                "slack.post-message",
                {"channel": "#ops", "text": "hi {{ trigger.who }}", "threadTs": "1.2"},
            ),
            start="post",
        ),
        {"who": "ops"},
        correlation_id="corr-slack",
    )
    assert doc["status"] == "Succeeded"
    assert doc["nodes"]["post"]["outputs"] == {"ts": "1700000000.000001", "channel": "C0OPS"}
    assert slack_api.posted[0]["text"] == "hi ops"
    assert slack_api.posted[0]["thread_ts"] == "1.2"
    post = slack_api.requests[0]
    assert post.path == "/api/chat.postMessage"
    assert post.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
    assert post.headers["x-correlation-id"] == "corr-slack"
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT system, resource_type, external_id, url, idempotency_key, outputs"
            " FROM workflow_resource_links"
        )
        links = await cur.fetchall()
    # Stored without an idempotencyKey too (nothing to reuse, so no outputs with it).
    assert links == [
        {
            "system": "slack",
            "resource_type": "message",
            "external_id": "C0OPS/1700000000.000001",
            "url": "https://example.slack.com/archives/C0OPS/p1700000000000001",
            "idempotency_key": None,
            "outputs": None,
        }
    ]


async def test_every_link_an_action_returns_is_stored_and_shown_with_its_attempt(
    db, daemon, local, slack_api
):
    # Three posts, none with an idempotencyKey.
    posts = [
        node(name, "slack.post-message", {"channel": "#ops", "text": f"post {name}"},
             **({"edges": [{"targetNode": after}]} if after else {}))
        for name, after in (("one", "two"), ("two", "three"), ("three", None))
    ]  # fmt: skip
    doc = await run(db, local, workflow(*posts, start="one"))
    assert doc["status"] == "Succeeded"
    assert len(slack_api.posted) == 3
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT l.node_id, a.attempt, l.system, l.resource_type, l.external_id, l.url"
            " FROM workflow_resource_links l JOIN action_executions a USING (action_execution_id)"
            " WHERE l.execution_id = %s ORDER BY l.link_id",
            (doc["executionId"],),
        )
        rows = await cur.fetchall()
    expected = [
        {
            "system": "slack",
            "resourceType": "message",
            "externalId": f"C0OPS/1700000000.00000{n}",
            "url": f"https://example.slack.com/archives/C0OPS/p170000000000000{n}",
        }
        for n in (1, 2, 3)
    ]
    assert [(r["node_id"], r["attempt"]) for r in rows] == [("one", 1), ("two", 1), ("three", 1)]
    assert [
        {"system": r["system"], "resourceType": r["resource_type"],
         "externalId": r["external_id"], "url": r["url"]}
        for r in rows
    ] == expected  # fmt: skip

    application = daemon.app()
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://api.test"
        ) as client,
    ):
        response = await client.get(f"/api/v1/executions/{doc['executionId']}")
        assert response.status_code == 200, response.text
        shown = {a["nodeId"]: a["resourceLinks"] for a in response.json()["attempts"]}
        assert shown == {"one": [expected[0]], "two": [expected[1]], "three": [expected[2]]}
        schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
    attempt_schema = schema.get("Attempt-Output", schema.get("Attempt"))
    assert "resourceLinks" in attempt_schema["properties"]
    link_schema = next(s for name, s in schema.items() if name.startswith("ResourceLink"))
    assert set(link_schema["properties"]) == {"system", "resourceType", "externalId", "url"}


async def test_a_failed_attempt_and_a_reused_one_show_no_links(db, daemon, local, slack_api):
    slack_api.server_error_next = 1  # attempt 1 fails (transient), attempt 2 posts
    definition = workflow(
        node("post", "slack.post-message", {"channel": "#ops", "text": "once"},
             retry=FAST_RETRY, idempotencyKey="once"),
        start="post",
    )  # fmt: skip
    first = await run(db, local, definition, request_id="first")
    second = await run(db, local, definition, request_id="second")
    assert len(slack_api.posted) == 1
    assert second["nodes"]["post"]["reused"] is True
    application = daemon.app()
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://api.test"
        ) as client,
    ):
        one = (await client.get(f"/api/v1/executions/{first['executionId']}")).json()
        two = (await client.get(f"/api/v1/executions/{second['executionId']}")).json()
    assert [(a["status"], len(a["resourceLinks"])) for a in one["attempts"]] == [
        ("RetriableFailure", 0),
        ("Succeeded", 1),
    ]
    assert [(a["reused"], a["resourceLinks"]) for a in two["attempts"]] == [(True, [])]


@pytest.mark.parametrize(
    ("setup", "code"),
    [({"token": "xoxb-wrong"}, "invalid_auth"), ({"channel": "#nowhere"}, "channel_not_found")],
)
async def test_slack_errors_are_permanent_and_named(db, local, slack_api, setup, code):
    slack_api.token = setup.get("token", slack_api.token)
    doc = await run(
        db,
        local,
        workflow(
            node(
                "post",
                "slack.post-message",
                {"channel": setup.get("channel", "#ops"), "text": "x"},
                retry=FAST_RETRY,
            ),
            start="post",
        ),
    )
    assert doc["nodes"]["post"]["attempts"] == 1
    assert doc["nodes"]["post"]["error"]["type"] == f"Slack {code}"
    assert code in doc["nodes"]["post"]["error"]["message"]


async def test_slack_rate_limit_is_retried_after_retry_after(db, local, slack_api):
    slack_api.rate_limit_next = 1
    doc = await run(
        db,
        local,
        workflow(
            node("post", "slack.post-message", {"channel": "#ops", "text": "x"}, retry=FAST_RETRY),
            start="post",
        ),
    )
    first, second = doc["attemptRows"]
    assert (first.status, second.status) == ("RetriableFailure", "Succeeded")
    assert "ratelimited" in first.error_json["message"]
    assert (second.started_at - first.finished_at).total_seconds() >= 0.9
    assert len(slack_api.posted) == 1


async def test_slack_server_error_is_transient(db, local, slack_api):
    slack_api.server_error_next = 1
    doc = await run(
        db,
        local,
        workflow(
            node("post", "slack.post-message", {"channel": "#ops", "text": "x"}, retry=FAST_RETRY),
            start="post",
        ),
    )
    assert [r.status for r in doc["attemptRows"]] == ["RetriableFailure", "Succeeded"]


async def test_slack_missing_token_names_the_secret_and_sends_nothing(
    db, local, slack_api, monkeypatch
):
    monkeypatch.delenv("DWF_SECRET_SLACK_TOKEN")
    doc = await run(
        db,
        local,
        workflow(
            node("post", "slack.post-message", {"channel": "#ops", "text": "x"}), start="post"
        ),
    )
    error = doc["nodes"]["post"]["error"]
    assert error["type"] == "MissingCredential"
    assert "'slack-token'" in error["message"] and "DWF_SECRET_SLACK_TOKEN" in error["message"]
    assert slack_api.requests == []


async def test_slack_unexpected_answer_says_what_was_expected(db, local, slack_api):
    slack_api.ok_without_ts = True
    doc = await run(
        db,
        local,
        workflow(
            node("post", "slack.post-message", {"channel": "#ops", "text": "x"}), start="post"
        ),
    )
    error = doc["nodes"]["post"]["error"]
    assert error["type"] == "UnexpectedResponse"
    assert "`ts` and `channel`" in error["message"]


# -- monday.com -------------------------------------------------------------------------------


async def test_monday_get_items_filters_paginates_and_flattens(db, local, monday_api):
    monday_api.add_items(5, status="0")  # Working on it
    monday_api.add_items(3, status="1", start=6)  # Done
    doc = await run(
        db,
        local,
        workflow(
            node(
                "fetch",
                "monday.get-items",
                {
                    "boardId": "{{ trigger.boardId }}",
                    "filter": {"Status": "Working on it"},
                    "limit": 4,
                    "pageSize": 2,
                },
            ),
            start="fetch",
        ),
        {"boardId": 1234567890},
        correlation_id="corr-monday",
    )
    assert doc["status"] == "Succeeded", doc
    outputs = doc["nodes"]["fetch"]["outputs"]
    assert outputs["count"] == 4 and outputs["truncated"] is True
    assert [i["id"] for i in outputs["items"]] == ["1001", "1002", "1003", "1004"]
    assert outputs["items"][1]["columns"] == {
        "Status": "Working on it",
        "Due": "2024-05-01",
        "Owner": "owner2",
    }
    # columns (to translate the filter), the first page, one next page.
    bodies = [r.json() for r in monday_api.requests]
    assert len(bodies) == 3
    assert bodies[1]["variables"]["query"] == {
        "rules": [{"column_id": "status", "compare_value": [0], "operator": "any_of"}],
        "operator": "and",
    }
    assert "next_items_page" in bodies[2]["query"]
    for seen in monday_api.requests:
        assert seen.headers["authorization"] == MONDAY_TOKEN
        assert seen.headers["api-version"]
        assert seen.headers["x-correlation-id"] == "corr-monday"


async def test_monday_empty_values_and_operators_translate(db, local, monday_api):
    monday_api.add_items(4)
    doc = await run(
        db,
        local,
        workflow(
            node(
                "fetch",
                "monday.get-items",
                {
                    "boardId": 1234567890,
                    "filter": {"Owner": None, "Due": {"anyOf": ["2024-05-01"]}},
                },
            ),
            start="fetch",
        ),
    )
    outputs = doc["nodes"]["fetch"]["outputs"]
    assert [i["name"] for i in outputs["items"]] == ["Item 1", "Item 3"]
    assert outputs["truncated"] is False
    rules = monday_api.requests[1].json()["variables"]["query"]["rules"]
    assert rules == [
        {"column_id": "text0", "compare_value": [], "operator": "is_empty"},
        {"column_id": "date4", "compare_value": ["EXACT", "2024-05-01"], "operator": "any_of"},
    ]


@pytest.mark.parametrize(
    "case",
    [
        ({"Status": "Shipped"}, "UnknownLabel", "Working on it, Done, Stuck"),
        ({"Colour": "red"}, "UnknownColumn", "Status (status)"),
        ({"Status": {"near": 1}}, "InvalidFilter", "anyOf"),
    ],
)
async def test_monday_bad_filters_fail_naming_what_is_valid(db, local, monday_api, case):
    filter_, kind, words = case
    doc = await run(
        db,
        local,
        workflow(
            node("fetch", "monday.get-items", {"boardId": 1234567890, "filter": filter_}),
            start="fetch",
        ),
    )
    error = doc["nodes"]["fetch"]["error"]
    assert error["type"] == kind
    assert words in error["message"] and "parameters.filter." in error["message"]
    assert len(monday_api.requests) == 1  # the columns, never the items


async def test_monday_complexity_and_rate_limits_are_transient(db, local, monday_api):
    monday_api.add_items(1)
    monday_api.complexity_next = 1
    monday_api.rate_limit_next = 1
    doc = await run(
        db,
        local,
        workflow(
            node(
                "fetch",
                "monday.get-items",
                {"boardId": 1234567890},
                retry={"maxAttempts": 3, "backoff": "fixed", "initialDelay": "10ms"},
            ),
            start="fetch",
        ),
    )
    rows = doc["attemptRows"]
    assert [r.status for r in rows] == ["RetriableFailure", "RetriableFailure", "Succeeded"]
    assert "HTTP 429" in rows[0].error_json["type"]
    assert rows[1].error_json["type"] == "monday COMPLEXITY_BUDGET_EXHAUSTED"


async def test_monday_wrong_token_and_bad_shapes_are_permanent(db, local, monday_api):
    monday_api.broken_shape = True
    doc = await run(
        db,
        local,
        workflow(
            node(
                "fetch",
                "monday.get-items",
                {"boardId": 1234567890},
                retry=FAST_RETRY,
                edges=[{"targetNode": "other", "when": "always"}],
            ),
            node("other", "monday.get-items", {"boardId": 42}),
            start="fetch",
        ),
    )
    error = doc["nodes"]["fetch"]["error"]
    assert doc["nodes"]["fetch"]["attempts"] == 1
    assert error["type"] == "UnexpectedResponse"
    assert "a page {cursor, items: [...]}" in error["message"]
    assert doc["nodes"]["other"]["error"]["type"] == "BoardNotFound"
    assert "board 42 does not exist" in doc["nodes"]["other"]["error"]["message"]
    monday_api.token = "another"
    doc = await run(
        db,
        local,
        workflow(node("fetch", "monday.get-items", {"boardId": 1}), start="fetch", id="w2"),
    )
    assert doc["nodes"]["fetch"]["error"]["type"] == "monday HTTP 401"


async def test_monday_create_item_with_idempotency_key_creates_once(db, local, monday_api):
    definition = workflow(
        node(
            "create",
            "monday.create-item",
            {
                "boardId": 1234567890,
                "itemName": "Onboard {{ trigger.client }}",
                "columnValues": {"status": {"label": "Working on it"}},
            },
            idempotencyKey="client-{{ trigger.client }}",
        ),
        start="create",
    )
    first = await run(db, local, definition, {"client": "acme"}, request_id="one")
    second = await run(db, local, definition, {"client": "acme"}, request_id="two")
    assert len(monday_api.created) == 1
    assert monday_api.created[0]["values"] == '{"status": {"label": "Working on it"}}'
    assert first["nodes"]["create"]["outputs"]["id"] == "9001"
    assert second["nodes"]["create"] == first["nodes"]["create"] | {"reused": True}
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT system, resource_type, external_id, url, idempotency_key"
            " FROM workflow_resource_links"
        )
        links = await cur.fetchall()
    assert links == [
        {
            "system": "monday",
            "resource_type": "item",
            "external_id": "9001",
            "url": "https://example.monday.com/boards/1234567890/pulses/9001",
            "idempotency_key": "client-acme",
        }
    ]


async def test_services_share_one_http_client_per_loop(db, local):
    async with Daemon(local, database=db) as daemon:
        shared = daemon.services
        assert await shared.http_client() is await shared.http_client()
        assert daemon.services is shared
        assert daemon.conductor.services is shared  # what every attempt is handed


# -- secrets in templates ---------------------------------------------------------------------


async def test_secrets_resolve_in_templates_and_are_masked_when_stored(db, local, monkeypatch):
    value = "tmpl-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("DWF_SECRET_API_KEY", value)
    doc = await run(
        db,
        local,
        workflow(
            node(
                "a",
                "core.echo",
                {"message": "{{ trigger.n | length }} {{ secrets['api-key'] }}"},
            ),
        ),
        trigger={"n": "abc"},
    )
    assert doc["nodes"]["a"]["outputs"] == {"echo": "3 ***"}
    assert doc["attemptRows"][0].parameters_json == {"message": "3 ***"}


async def test_a_missing_secret_fails_the_node_naming_it(db, local):
    doc = await run(
        db,
        local,
        workflow(node("a", "core.echo", {"message": "{{ secrets.nope }}"})),
    )
    error = doc["nodes"]["a"]["error"]
    assert error["type"] == "TemplateError"
    assert "node `a` at `parameters.message`" in error["message"]
    assert "secret 'nope' is not configured" in error["message"]
    assert "DWF_SECRET_NOPE" in error["message"]


async def test_a_subworkflow_is_handed_the_secret_masked(db, local, monkeypatch):
    monkeypatch.setenv("DWF_SECRET_CHILD_TOKEN", "child-secret-" + uuid.uuid4().hex)
    async with Daemon(local, database=db) as daemon:
        await register(
            daemon,
            workflow(
                node(
                    "c",
                    "core.echo",
                    {"message": "{{ trigger.token }} {{ secrets['child-token'] }}"},
                ),
                start="c",
                id="child",
                outputs={"said": "{{ nodes.c.outputs.echo }}"},
            ),
        )
    parent = workflow(
        {
            "id": "a",
            "nodeType": "subworkflow",
            "workflowId": "child",
            "parameters": {"token": "{{ secrets['child-token'] }}"},
        },
        id="parent",
    )
    doc = await run(db, local, parent)
    # Passed as a value it arrives masked; read by name in the child it works (and is masked).
    assert doc["nodes"]["a"]["outputs"]["outputs"] == {"said": "*** ***"}
    async with db.connection() as conn:
        cur = await conn.execute("SELECT trigger_payload FROM workflow_executions")
        payloads = [r["trigger_payload"] for r in await cur.fetchall()]
    assert {"token": "***"} in payloads
