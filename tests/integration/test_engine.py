"""SPEC §4 end to end: the conductor runs workflows on a real Postgres and records every attempt."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from runner.daemon import Daemon
from runner.engine.requests import StartRequest
from runner.engine.summary import attempt_documents, execution_document
from runner.errors import Conflict, InvalidRequest, NotFound
from runner.store import executions
from tests.waiting import until

pytestmark = pytest.mark.anyio


def echo(node_id: str, *edges: Any, message: Any = None, **extra: Any) -> dict[str, Any]:
    """An echo node; edges are target ids or edge dicts."""
    node = {
        "id": node_id,
        "actionType": "core.echo",
        "parameters": {"message": node_id if message is None else message},
        **extra,
    }
    if edges:
        node["edges"] = [e if isinstance(e, dict) else {"targetNode": e} for e in edges]
    return node


def workflow(*nodes: dict[str, Any], start: str = "a", **top: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": top.pop("id", "w"),
        "status": "active",
        "startNode": start,
        "nodes": list(nodes),
        **top,
    }


async def register(daemon: Daemon, definition: dict[str, Any], **version: Any) -> None:
    """Record `definition` as a local file's version (`dwf run FILE` does)."""
    await daemon.versions.record(
        definition, tenant=daemon.settings.tenant, source_kind="local", **version
    )


async def run(db, settings, definition, trigger=None, **request: Any) -> dict[str, Any]:
    """Record `definition` and execute it to its end (`dwf run FILE`) with `settings` on `db`."""
    async with Daemon(settings, database=db) as daemon:
        await register(daemon, definition, source_path="test.yaml")
        row = await daemon.execute(
            StartRequest(workflow_id=definition["id"], trigger=trigger or {}, **request)
        )
    async with db.connection() as conn:
        attempts = await executions.attempts(conn, row.execution_id)
    document = execution_document(row, attempts)
    document["attemptRows"] = attempts
    return document


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {node_id: node["status"] for node_id, node in document["nodes"].items()}


async def test_linear_chain_records_each_node_and_outputs(db, settings):
    doc = await run(
        db,
        settings,
        workflow(
            echo("a", "b", message="{{ trigger.name }}"),
            echo("b", message="{{ nodes.a.outputs.echo }}!"),
            outputs={"final": "{{ nodes['b'].outputs.echo }}"},
        ),
        {"name": "ada"},
    )
    assert doc["status"] == "Succeeded"
    assert statuses(doc) == {"a": "Succeeded", "b": "Succeeded"}
    assert doc["outputs"] == {"final": "ada!"}
    assert [r.parameters_json for r in doc["attemptRows"]] == [
        {"message": "ada"},
        {"message": "ada!"},
    ]


async def test_native_types_survive_a_single_expression(db, settings):
    doc = await run(
        db,
        settings,
        workflow(echo("a", message="{{ trigger.things }}"), outputs={"n": "{{ trigger.n }}"}),
        {"things": [1, {"x": True}], "n": 3},
    )
    assert doc["nodes"]["a"]["outputs"] == {"echo": [1, {"x": True}]}
    assert doc["outputs"] == {"n": 3}


async def test_join_after_a_skipped_branch_still_runs(db, settings):
    doc = await run(
        db,
        settings,
        workflow(
            echo("a", {"targetNode": "b", "condition": "trigger.left"}, {"targetNode": "c"}),
            echo("b", "d"),
            echo("c", "d"),
            echo("d"),
        ),
        {"left": False},
    )
    assert statuses(doc) == {"a": "Succeeded", "b": "Skipped", "c": "Succeeded", "d": "Succeeded"}
    assert doc["status"] == "Succeeded"


async def test_skip_propagates_to_a_join_whose_every_input_was_skipped(db, settings):
    doc = await run(
        db,
        settings,
        workflow(
            echo(
                "a",
                {"targetNode": "b", "condition": "false"},
                {"targetNode": "c", "condition": "false"},
            ),
            echo("b", "d"),
            echo("c", "d"),
            echo("d", "e"),
            echo("e"),
        ),
    )
    assert statuses(doc) == {
        "a": "Succeeded",
        "b": "Skipped",
        "c": "Skipped",
        "d": "Skipped",
        "e": "Skipped",
    }
    assert doc["status"] == "Succeeded"
    skipped = [r for r in doc["attemptRows"] if r.status == "Skipped"]
    assert all(r.attempt == 0 for r in skipped)


async def test_first_match_takes_only_the_first_true_edge(db, settings):
    doc = await run(
        db,
        settings,
        workflow(
            echo(
                "a",
                {"targetNode": "big", "condition": "trigger.amount > 100"},
                {"targetNode": "medium", "condition": "trigger.amount > 10"},
                {"targetNode": "any"},
                routePolicy="firstMatch",
            ),
            echo("big"),
            echo("medium"),
            echo("any"),
        ),
        {"amount": 50},
    )
    assert statuses(doc) == {
        "a": "Succeeded",
        "big": "Skipped",
        "medium": "Succeeded",
        "any": "Skipped",
    }


def failing(node_id: str, *edges: Any, mode: str = "permanent", times: int = 99, **extra: Any):
    node = echo(node_id, *edges, **extra)
    node["parameters"] |= {"failTimes": times, "failMode": mode}
    return node


async def test_handled_failure_does_not_fail_the_execution(db, settings):
    doc = await run(
        db,
        settings,
        workflow(
            failing("a", {"targetNode": "ok"}, {"targetNode": "recover", "when": "failure"}),
            echo("ok"),
            echo("recover", message="{{ nodes.a.error.message }}"),
        ),
    )
    assert doc["status"] == "Succeeded"
    assert statuses(doc) == {"a": "Failed", "ok": "Skipped", "recover": "Succeeded"}
    assert "failed attempt 1" in doc["nodes"]["recover"]["outputs"]["echo"]


async def test_unhandled_failure_fails_fast_and_runs_the_workflow_on_failure_path(db, settings):
    doc = await run(
        db,
        settings,
        workflow(
            echo("a", "boom", "slow"),
            failing("boom", "after"),
            {"id": "slow", "actionType": "core.delay", "parameters": {"duration": "30s"}},
            echo("after"),
            echo(
                "alert",
                "page",
                message="{{ execution.error.nodeId }}: {{ execution.error.message }}",
            ),
            echo("page"),
            onFailure="alert",
        ),
    )
    assert doc["status"] == "Failed"
    assert doc["error"]["nodeId"] == "boom"
    assert statuses(doc) == {
        "a": "Succeeded",
        "boom": "Failed",
        "slow": "Cancelled",
        "after": "Skipped",
        "alert": "Succeeded",
        "page": "Succeeded",
    }
    assert doc["nodes"]["alert"]["outputs"]["echo"].startswith("boom: core.echo failed")


async def test_failure_path_is_skipped_when_nothing_fails(db, settings):
    doc = await run(db, settings, workflow(echo("a"), echo("alert"), onFailure="alert"))
    assert statuses(doc) == {"a": "Succeeded", "alert": "Skipped"}
    assert doc["status"] == "Succeeded"


async def test_transient_failures_are_retried_each_attempt_its_own_row(db, settings):
    retry = {"maxAttempts": 3, "initialDelay": "10ms", "backoff": "fixed"}
    doc = await run(db, settings, workflow(failing("a", mode="transient", times=2, retry=retry)))
    assert doc["status"] == "Succeeded"
    rows = [(r.attempt, r.status) for r in doc["attemptRows"]]
    assert rows == [(1, "RetriableFailure"), (2, "RetriableFailure"), (3, "Succeeded")]
    assert all(r.finished_at is not None for r in doc["attemptRows"])


async def test_exhausted_retries_record_the_last_attempt_failed_with_the_cause(db, settings):
    retry = {"maxAttempts": 2, "initialDelay": "10ms"}
    doc = await run(db, settings, workflow(failing("a", mode="transient", retry=retry)))
    rows = [(r.attempt, r.status) for r in doc["attemptRows"]]
    assert rows == [(1, "RetriableFailure"), (2, "Failed")]
    assert doc["error"]["message"].startswith("gave up after 2 attempts: ")


async def test_permanent_failure_is_not_retried(db, settings):
    retry = {"maxAttempts": 5, "initialDelay": "10ms"}
    doc = await run(db, settings, workflow(failing("a", retry=retry)))
    assert [(r.attempt, r.status) for r in doc["attemptRows"]] == [(1, "Failed")]


async def test_attempt_timeout_is_transient_and_retried(db, settings):
    delay = {"id": "a", "actionType": "core.delay", "parameters": {"duration": "5s"}}
    delay |= {"timeout": "50ms", "retry": {"maxAttempts": 2, "initialDelay": "10ms"}}
    start = time.monotonic()
    doc = await run(db, settings, workflow(delay))
    assert time.monotonic() - start < 4
    assert [(r.attempt, r.status) for r in doc["attemptRows"]] == [
        (1, "RetriableFailure"),
        (2, "Failed"),
    ]
    assert doc["attemptRows"][0].error_json["type"] == "Timeout"


async def test_execution_timeout_fails_it_and_cancels_in_flight_nodes(db, settings):
    slow = {"id": "a", "actionType": "core.delay", "parameters": {"duration": "30s"}}
    start = time.monotonic()
    doc = await run(db, settings, workflow(slow, options={"timeout": "200ms"}))
    assert time.monotonic() - start < 5
    assert doc["status"] == "Failed"
    assert doc["error"]["type"] == "Timeout"
    assert statuses(doc) == {"a": "Cancelled"}


async def test_cancellation_ends_the_execution_cancelled_within_a_second(db, daemon):
    slow = {"id": "a", "actionType": "core.delay", "parameters": {"duration": "30s"}}
    definition = workflow(slow)
    await register(daemon, definition)
    row, _ = await daemon.starts.start(StartRequest(workflow_id="w"))
    task = asyncio.create_task(daemon.worker().run_execution(row.tenant, row.execution_id))
    await _wait_for_status(db, row, "Running")
    asked = time.monotonic()
    await daemon.conductor.cancel(row.tenant, row.execution_id)
    final = await asyncio.wait_for(task, timeout=5)
    assert time.monotonic() - asked < 1
    assert final.status == "Cancelled"
    async with db.connection() as conn:
        attempts = await executions.attempts(conn, row.execution_id)
    assert [(a.node_id, a.status) for a in attempts] == [("a", "Cancelled")]
    with pytest.raises(Conflict, match="already ended Cancelled"):
        await daemon.conductor.cancel(row.tenant, row.execution_id)


async def _wait_for_status(db, row, status: str, timeout: float = 5.0) -> None:
    async def reached() -> bool:
        async with db.connection() as conn:
            current = await executions.get(conn, row.tenant, row.execution_id)
        return current is not None and current.status == status

    await until(reached, timeout, f"execution {row.execution_id} to reach {status}", interval=0.01)


async def test_undefined_name_fails_the_node_naming_node_path_and_name(db, settings):
    doc = await run(db, settings, workflow(echo("a", message={"deep": ["{{ trigger.missing }}"]})))
    assert doc["status"] == "Failed"
    message = doc["nodes"]["a"]["error"]["message"]
    assert "node `a`" in message and "parameters.message.deep[0]" in message
    assert "missing" in message


async def test_rendered_parameters_failing_the_schema_fail_with_the_field_path(db, settings):
    doc = await run(
        db,
        settings,
        workflow(
            {"id": "a", "actionType": "core.delay", "parameters": {"duration": "{{ trigger.d }}"}}
        ),
        {"d": "soon"},
    )
    assert doc["status"] == "Failed"
    assert doc["nodes"]["a"]["error"]["type"] == "InvalidParameters"
    assert doc["nodes"]["a"]["error"]["message"].startswith("parameters.duration:")


@pytest.mark.parametrize(
    ("condition", "needle"),
    [
        ("(() => { while (true) {} })()", "longer than"),
        ("/(a+)+$/.test('a'.repeat(40) + 'b')", "longer than"),
        ("result.outputs.nope.deeper", "TypeError"),
        ("42", "true or false"),
    ],
)
async def test_a_bad_condition_fails_the_execution_naming_the_edge(db, settings, condition, needle):
    doc = await run(
        db, settings, workflow(echo("a", {"targetNode": "b", "condition": condition}), echo("b"))
    )
    assert doc["status"] == "Failed"
    assert doc["error"]["type"] == "ConditionError"
    assert "a -> b" in doc["error"]["message"] and needle in doc["error"]["message"]


async def test_nodes_and_keys_named_like_dict_methods_are_read_as_keys(db, settings):
    doc = await run(
        db,
        settings,
        workflow(
            echo("get", "items", message="{{ trigger.items | length }}"),
            echo("items", message="{{ nodes.get.outputs.echo }} of {{ trigger.keys }}"),
            start="get",
            outputs={"count": "{{ nodes.get.outputs.echo }}", "last": "{{ nodes.items.status }}"},
        ),
        {"items": [1, 2, 3], "keys": "k"},
    )
    assert doc["status"] == "Succeeded", doc["error"]
    assert doc["nodes"]["items"]["outputs"] == {"echo": "3 of k"}
    assert doc["outputs"] == {"count": 3, "last": "Succeeded"}


async def test_a_condition_out_of_memory_says_so(db, settings):
    # QuickJS throws null when no memory is left to make its error: not "threw null".
    condition = "[...'a'.repeat(1e7)].length > 0"
    doc = await run(
        db,
        dataclasses.replace(settings, condition_time_limit=5.0),  # only memory may stop it
        workflow(echo("a", {"targetNode": "b", "condition": condition}), echo("b")),
    )
    assert doc["status"] == "Failed" and doc["error"]["type"] == "ConditionError"
    assert doc["error"]["message"] == (
        "condition on edge a -> b ran out of memory (limit 32 MiB) and was stopped"
    )


async def test_template_injection_in_data_is_never_rendered(db, settings):
    doc = await run(
        db, settings, workflow(echo("a", message="{{ trigger.text }}")), {"text": "{{ 7 * 7 }}"}
    )
    assert doc["nodes"]["a"]["outputs"]["echo"] == "{{ 7 * 7 }}"


async def test_sandbox_escape_fails_the_node(db, settings):
    payload = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    doc = await run(db, settings, workflow(echo("a", message=payload)))
    assert doc["status"] == "Failed"
    assert doc["nodes"]["a"]["error"]["type"] == "TemplateError"


async def test_request_id_dedupes(db, settings):
    definition = workflow(echo("a"))
    first = await run(db, settings, definition, request_id="req-1")
    second = await run(db, settings, definition, request_id="req-1")
    assert first["executionId"] == second["executionId"]
    async with db.connection() as conn:
        page, _ = await executions.list_page(conn, "default", workflow_id="w")
    assert len(page) == 1


async def test_idempotency_key_reuses_outputs_across_executions(db, settings):
    definition = workflow(
        echo("a", message="{{ trigger.n }}", idempotencyKey="k-{{ trigger.key }}")
    )
    first = await run(db, settings, definition, {"key": "x", "n": 1})
    again = await run(db, settings, definition, {"key": "x", "n": 2})
    other = await run(db, settings, definition, {"key": "y", "n": 3})
    assert first["nodes"]["a"]["outputs"] == {"echo": 1}
    assert again["nodes"]["a"] == {
        "status": "Succeeded",
        "attempts": 1,
        "outputs": {"echo": 1},
        "error": None,
        "reused": True,
    }
    assert other["nodes"]["a"]["outputs"] == {"echo": 3}


async def test_max_parallel_actions_bounds_concurrency(db, settings):
    delays = [
        {"id": f"d{i}", "actionType": "core.delay", "parameters": {"duration": "100ms"}}
        for i in range(4)
    ]
    root = echo("a", *[d["id"] for d in delays])
    start = time.monotonic()
    doc = await run(db, settings, workflow(root, *delays, options={"maxParallelActions": 2}))
    elapsed = time.monotonic() - start
    assert doc["status"] == "Succeeded"
    starts = sorted(r.started_at for r in doc["attemptRows"] if r.node_id.startswith("d"))
    # Two waves of two: the third delay starts only after one of the first two ended.
    first_end = min(r.finished_at for r in doc["attemptRows"] if r.node_id in ("d0", "d1"))
    assert starts[2] >= first_end
    assert elapsed >= 0.2


async def test_subworkflow_waits_for_the_child_and_takes_its_outputs(db, settings, daemon):
    child = workflow(
        echo("c", message="{{ trigger.who }}"),
        start="c",
        id="child",
        outputs={"said": "{{ nodes.c.outputs.echo }}"},
    )
    await register(daemon, child)
    parent = workflow(
        {
            "id": "a",
            "nodeType": "subworkflow",
            "workflowId": "child",
            "parameters": {"who": "{{ trigger.who }}"},
            "edges": [{"targetNode": "b"}],
        },
        echo("b", message="{{ nodes.a.outputs.outputs.said }}"),
        id="parent",
    )
    doc = await run(db, settings, parent, {"who": "kid"})
    assert doc["status"] == "Succeeded"
    assert doc["nodes"]["a"]["outputs"]["status"] == "Succeeded"
    assert doc["nodes"]["b"]["outputs"] == {"echo": "kid"}
    async with db.connection() as conn:
        kid = await executions.get(
            conn, "default", __import__("uuid").UUID(doc["nodes"]["a"]["outputs"]["executionId"])
        )
    assert kid is not None and str(kid.parent_execution_id) == doc["executionId"]


async def test_payloads_that_are_not_objects_or_too_big_or_too_deep_are_refused(daemon):
    await register(daemon, workflow(echo("a")))
    deep: Any = {}
    for _ in range(70):
        deep = {"x": deep}
    for payload, needle in (
        ([1], "JSON object"),
        ({"x": "a" * (2 << 20)}, "bytes"),
        (deep, "deeper than 64"),
    ):
        with pytest.raises(InvalidRequest, match=needle):
            await daemon.starts.start(StartRequest(workflow_id="w", trigger=payload))


async def test_unknown_and_draft_workflows_are_refused(daemon):
    with pytest.raises(NotFound):
        await daemon.starts.start(StartRequest(workflow_id="nope"))
    draft = workflow(echo("a"), id="drafty") | {"status": "draft"}
    await register(daemon, draft)
    with pytest.raises(Conflict, match="Draft"):
        await daemon.starts.start(StartRequest(workflow_id="drafty"))
    row, created = await daemon.starts.start(StartRequest(workflow_id="drafty", allow_draft=True))
    assert created and row.status == "Pending"


async def test_an_action_that_raises_fails_its_node_not_the_process(db, settings, monkeypatch):
    from runner.actions import core

    async def explode(self, context, params):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(core.Echo, "execute", explode)
    doc = await run(db, settings, workflow(echo("a")))
    assert doc["status"] == "Failed"
    assert doc["nodes"]["a"]["error"] == {
        "type": "RuntimeError",
        "message": "kaboom",
        "nodeId": "a",
    }


async def test_every_transition_is_an_event(db, settings):
    doc = await run(db, settings, workflow(echo("a", "b"), echo("b")))
    async with db.connection() as conn:
        events = await executions.events(conn, __import__("uuid").UUID(doc["executionId"]))
    kinds = [(e.kind, e.node_id) for e in events]
    assert kinds == [
        ("ExecutionCreated", None),
        ("ExecutionStarted", None),
        ("NodeStarted", "a"),
        ("NodeSucceeded", "a"),
        ("NodeStarted", "b"),
        ("NodeSucceeded", "b"),
        ("ExecutionSucceeded", None),
    ]


async def test_log_lines_about_a_node_carry_the_execution_identity(db, settings):
    import structlog
    from structlog.testing import capture_logs

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        doc = await run(db, settings, workflow(echo("a")))
    node_lines = [entry for entry in logs if entry.get("nodeId") == "a"]
    assert node_lines, logs
    for entry in node_lines:
        assert entry["executionId"] == doc["executionId"]
        assert entry["workflowId"] == "w" and entry["version"] == 1
        assert entry["correlationId"] == doc["correlationId"] and entry["attempt"] == 1


async def test_rerender_on_retry_reads_nodes_that_finished_meanwhile(db, settings):
    # `b` fails once (transiently) while `slow` is still running; its retry renders again and
    # sees `slow`'s output only with rerenderOnRetry.
    def flow(rerender: bool) -> dict[str, Any]:
        b = failing(
            "b",
            mode="transient",
            times=1,
            message="{{ nodes.slow.outputs.waitedSeconds if 'slow' in nodes else 'not yet' }}",
            retry={"maxAttempts": 2, "initialDelay": "300ms", "rerenderOnRetry": rerender},
        )
        slow = {"id": "slow", "actionType": "core.delay", "parameters": {"duration": "50ms"}}
        return workflow(echo("a", "b", "slow"), b, slow, id=f"w{int(rerender)}")

    plain = await run(db, settings, flow(False))
    again = await run(db, settings, flow(True))
    assert plain["nodes"]["b"]["outputs"] == {"echo": "not yet"}
    assert again["nodes"]["b"]["outputs"] == {"echo": 0.05}
    rows = [r.parameters_json for r in again["attemptRows"] if r.node_id == "b"]
    assert rows == [{"message": "not yet", "failTimes": 1, "failMode": "transient"},
                    {"message": 0.05, "failTimes": 1, "failMode": "transient"}]  # fmt: skip


async def test_only_keyed_nodes_get_a_synthetic_link_and_no_document_shows_it(db, settings):
    # `plain` returns no links and has no key: nothing to store. `keyed` returns none either,
    # so the engine remembers its outputs under the key in a link of its own, which is its
    # memory, not something the action created: no attempt document lists it.
    doc = await run(
        db,
        settings,
        workflow(echo("plain", "keyed"), echo("keyed", idempotencyKey="k"), start="plain"),
    )
    async with db.connection() as conn:
        links = await executions.links(conn, doc["executionId"])
    assert [(link.node_id, link.system, link.resource_type, link.idempotency_key)
            for link in links] == [("keyed", "dataworkflows", "node-result", "k")]  # fmt: skip
    shown = attempt_documents(doc["attemptRows"], links)
    assert [(a["nodeId"], a["resourceLinks"]) for a in shown] == [("plain", []), ("keyed", [])]
