"""Values Postgres cannot store (a NUL, a surrogate code point) produced while a run goes on.

jsonb holds Unicode text only. A template rendering `'\\x00'`, or an action answering
`{"a": "x\\u0000y"}`, must fail that node with an error naming the node and the path, and the
run must go on routing as for any failure (`when: always`, `onFailure`), ending with no attempt
left Running; an error message quoting such text is recorded escaped.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runner.engine.requests import StartRequest
from runner.errors import InvalidRequest
from runner.store import executions
from tests import fakes
from tests.integration.test_engine import echo, register, run, statuses, workflow

pytestmark = pytest.mark.anyio

#: What the local server answers at /<name>: (status, content type, raw body).
ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "nul": (200, "application/json", b'{"a": "x\\u0000y"}'),
    "surrogate": (200, "application/json", b'{"list": [1, {"b": "\\ud800"}]}'),
    "nul-key": (200, "application/json", b'{"a\\u0000": 1}'),
    "nul-text": (200, "text/plain", b"binary\x00data"),
    "nul-error": (404, "text/plain", b"not \x00 here"),
}


@pytest.fixture
def server() -> Iterator[str]:
    """A local HTTP server answering the raw bodies of ANSWERS."""

    async def answer(request: Request) -> Response:
        status, media_type, body = ANSWERS[request.path_params["name"]]
        return Response(body, status_code=status, media_type=media_type)

    with fakes.serve(Starlette(routes=[Route("/{name}", answer)])) as url:
        yield url


def http(node_id: str, url: str, *edges: Any, **extra: Any) -> dict[str, Any]:
    node = {"id": node_id, "actionType": "core.http", "parameters": {"url": url}, **extra}
    if edges:
        node["edges"] = [e if isinstance(e, dict) else {"targetNode": e} for e in edges]
    return node


def always(target: str) -> dict[str, str]:
    return {"targetNode": target, "when": "always"}


def assert_nothing_left_running(doc: dict[str, Any]) -> None:
    assert doc["status"] in ("Succeeded", "Failed")
    assert [r.status for r in doc["attemptRows"] if r.status == "Running"] == []


@pytest.mark.parametrize(
    "case",
    [
        ("nul", "outputs.json.a", "NUL character (U+0000)"),
        ("surrogate", "outputs.json.list[1].b", "surrogate code point U+D800"),
        ("nul-key", "outputs.json", "key `a\\u0000`"),
        ("nul-text", "outputs.text", "NUL character (U+0000)"),
    ],
)
async def test_outputs_that_cannot_be_stored_fail_the_node_and_routing_goes_on(
    db, settings, server, case
):
    answer, path, problem = case
    local = dataclasses.replace(settings, http_allow_private=True)
    doc = await run(
        db,
        local,
        workflow(http("a", f"{server}/{answer}", always("after")), echo("after")),
    )
    assert_nothing_left_running(doc)
    assert statuses(doc) == {"a": "Failed", "after": "Succeeded"}
    assert doc["status"] == "Succeeded"  # the failure was handled by the `always` edge
    error = doc["nodes"]["a"]["error"]
    assert error["type"] == "InvalidOutput" and error["nodeId"] == "a"
    assert f"node `a` at `{path}`" in error["message"] and problem in error["message"]
    assert "cannot be stored" in error["message"]
    assert doc["nodes"]["a"]["outputs"] == {}


async def test_an_error_message_quoting_a_nul_is_recorded_escaped(db, settings, server):
    local = dataclasses.replace(settings, http_allow_private=True)
    doc = await run(
        db, local, workflow(http("a", f"{server}/nul-error", always("after")), echo("after"))
    )
    assert_nothing_left_running(doc)
    assert statuses(doc) == {"a": "Failed", "after": "Succeeded"}
    assert doc["nodes"]["a"]["error"]["message"].endswith("answered 404: not \\u0000 here")


async def test_an_unhandled_unstorable_output_runs_the_workflow_on_failure_path(
    db, settings, server
):
    local = dataclasses.replace(settings, http_allow_private=True)
    doc = await run(
        db,
        local,
        workflow(
            http("a", f"{server}/nul", "next"),
            echo("next"),
            echo("alert", message="{{ execution.error.message }}"),
            onFailure="alert",
        ),
    )
    assert_nothing_left_running(doc)
    assert doc["status"] == "Failed"
    assert statuses(doc) == {"a": "Failed", "next": "Skipped", "alert": "Succeeded"}
    assert doc["error"]["type"] == "InvalidOutput"
    assert "outputs.json.a" in doc["nodes"]["alert"]["outputs"]["echo"]


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ('{{ "x\\x00y" }}', "NUL character (U+0000)"),
        ('before {{ "\\x00" }} after', "NUL character (U+0000)"),
        ('{{ "\\ud800" }}', "surrogate code point U+D800"),
        ('{{ {"k\\x00": 1} }}', "key `k\\u0000`"),
    ],
)
async def test_a_template_rendering_unstorable_text_fails_its_node(db, settings, template, problem):
    doc = await run(
        db,
        settings,
        workflow(echo("a", always("after"), message={"deep": [template]}), echo("after")),
    )
    assert_nothing_left_running(doc)
    assert statuses(doc) == {"a": "Failed", "after": "Succeeded"}
    error = doc["nodes"]["a"]["error"]
    assert error["type"] == "TemplateError"
    assert "node `a` at `parameters.message.deep[0]`" in error["message"]
    assert problem in error["message"] and "cannot be stored" in error["message"]


async def test_an_idempotency_key_rendering_a_nul_fails_its_node(db, settings):
    doc = await run(
        db,
        settings,
        workflow(echo("a", always("after"), idempotencyKey='{{ "k\\x00" }}'), echo("after")),
    )
    assert_nothing_left_running(doc)
    assert statuses(doc) == {"a": "Failed", "after": "Succeeded"}
    assert "`idempotencyKey`" in doc["nodes"]["a"]["error"]["message"]


async def test_vars_or_outputs_rendering_a_nul_fail_the_execution_cleanly(db, settings):
    in_vars = await run(
        db, settings, workflow(echo("a", message="{{ vars.v }}"), vars={"v": '{{ "\\x00" }}'})
    )
    assert in_vars["status"] == "Failed" and in_vars["error"]["type"] == "TemplateError"
    assert "workflow vars at `vars.v`" in in_vars["error"]["message"]
    in_outputs = await run(
        db, settings, workflow(echo("a"), id="w2", outputs={"o": '{{ "\\x00" }}'})
    )
    assert_nothing_left_running(in_outputs)
    assert in_outputs["status"] == "Failed" and in_outputs["error"]["type"] == "TemplateError"
    assert "workflow outputs at `outputs.o`" in in_outputs["error"]["message"]


async def test_an_action_raising_a_message_with_nul_and_surrogate_is_recorded(
    db, settings, monkeypatch
):
    from runner.actions import core

    async def explode(self, context, params):
        raise RuntimeError("bad \x00 and \udcff")

    monkeypatch.setattr(core.Echo, "execute", explode)
    after = {"id": "after", "actionType": "core.delay", "parameters": {"duration": "1ms"}}
    doc = await run(db, settings, workflow(echo("a", always("after")), after))
    assert_nothing_left_running(doc)
    assert statuses(doc) == {"a": "Failed", "after": "Succeeded"}
    assert doc["nodes"]["a"]["error"]["message"] == "bad \\u0000 and \\udcff"
    async with db.connection() as conn:
        events = await executions.events(conn, uuid.UUID(doc["executionId"]))
    failed = [e for e in events if e.kind == "NodeFailed" and e.node_id == "a"]
    assert failed and failed[0].data["error"]["message"] == "bad \\u0000 and \\udcff"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"a": {"b": ["x\x00"]}}, "`trigger.a.b[0]` holds a NUL character"),
        ({"a": "\udcff"}, "`trigger.a` holds the surrogate code point U+DCFF"),
        ({"k\x00": 1}, "has a key `k\\u0000`"),
    ],
)
async def test_a_start_whose_trigger_cannot_be_stored_is_refused_naming_the_path(
    daemon, payload, needle
):
    await register(daemon, workflow(echo("a")))
    with pytest.raises(InvalidRequest, match=re.escape(needle)):
        await daemon.starts.start(StartRequest(workflow_id="w", trigger=payload))
    row, _ = await daemon.starts.start(StartRequest(workflow_id="w", trigger={"e": "🚀"}))
    assert row.trigger_payload == {"e": "🚀"}


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("request_id", "r\udcff", "the requestId holds the surrogate code point U+DCFF"),
        ("principal", "me\x00", "the principal holds a NUL character"),
    ],
)
async def test_a_start_whose_request_texts_cannot_be_stored_is_refused_naming_them(
    daemon, field, value, needle
):
    # `dwf run --request-id $'r\xff'` reaches the start with a lone surrogate from argv.
    await register(daemon, workflow(echo("a")))
    with pytest.raises(InvalidRequest, match=re.escape(needle)):
        await daemon.starts.start(StartRequest(workflow_id="w", **{field: value}))
    row, created = await daemon.starts.start(StartRequest(workflow_id="w", request_id="r-ok"))
    assert created and row.request_id == "r-ok"
