"""OpenTelemetry traces (SPEC §13) on a real Postgres: the span tree of a run, the W3C trace
context taken at the doors, sent on outbound calls and into children, a resumed run's link to
its first trace, no exporter by default, and OTLP/HTTP to a local collector."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import structlog
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from structlog.testing import capture_logs

from runner.daemon import Daemon
from runner.engine.requests import StartRequest
from runner.errors import UsageError
from runner.observability import tracing
from runner.observability.tracing import Tracing
from runner.settings import Settings
from runner.store import executions, queue
from runner.store.database import Database
from tests import fakes
from tests.documents import workflow
from tests.waiting import until

pytestmark = pytest.mark.anyio

#: A caller's trace context, as W3C's own example writes it.
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def node(node_id: str, action: str, parameters: dict[str, Any], *edges: str, **extra: Any):
    found = {"id": node_id, "actionType": action, "parameters": parameters, **extra}
    if edges:
        found["edges"] = [{"targetNode": target} for target in edges]
    return found


CHILD = workflow("child", node("c", "core.echo", {"message": "kid"}))
RETRY = {"maxAttempts": 2, "initialDelay": "10ms", "backoff": "fixed"}


def parent(url: str) -> dict[str, Any]:
    """fetch (a 503, then a 200: two attempts, each an HTTP call) -> sub (a child execution)."""
    return workflow(
        "parent",
        node("fetch", "core.http", {"url": f"{url}/flaky"}, "sub", retry=RETRY),
        {"id": "sub", "nodeType": "subworkflow", "workflowId": "child", "parameters": {}},
    )


def echo_http(url: str, workflow_id: str = "w") -> dict[str, Any]:
    return workflow(workflow_id, node("call", "core.http", {"url": f"{url}/echo"}))


def named(spans: Any, name: str) -> list[ReadableSpan]:
    """The finished spans of that name, in the order they started."""
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_time or 0)


def traceparent_of(span: ReadableSpan) -> str:
    assert span.context is not None
    ids = span.context
    return f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{int(ids.trace_flags):02x}"


def parent_span_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


@pytest.fixture
def no_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a machine with no OTEL_* set up (CI's may have some)."""
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def loopback(settings: Settings) -> Settings:
    """Settings whose core.http may call the local servers."""
    return dataclasses.replace(settings, http_allow_private=True)


@pytest.fixture
async def traced(loopback: Settings, db: Database, spans) -> AsyncIterator[Daemon]:
    """A daemon that records every span in memory."""
    recording = Tracing([SimpleSpanProcessor(spans)])
    async with Daemon(loopback, database=db, tracing=recording) as daemon:
        yield daemon
    await recording.aclose()


async def register(daemon: Daemon, *definitions: dict[str, Any]) -> None:
    for definition in definitions:
        await daemon.versions.record(definition, tenant=daemon.settings.tenant, source_kind="api")


async def test_a_run_with_a_retry_an_http_call_and_a_subworkflow_is_one_span_tree(traced, spans):
    with (
        fakes.http() as server,
        capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs,
    ):
        server.fail_next = 1
        await register(traced, CHILD, parent(server.url))
        row = await traced.execute(StartRequest(workflow_id="parent", trigger_type="manual"))
    assert row.status == "Succeeded", row.error
    finished = spans.get_finished_spans()

    # The parent parks while its child runs: two conducts, the second a resumed one.
    first, resumed = named(finished, "execution parent")
    assert first.parent is None  # started in no trace: the root of a new one
    assert first.attributes is not None
    assert first.attributes["dwf.execution.id"] == str(row.execution_id)
    assert (first.attributes["dwf.workflow.id"], first.attributes["dwf.workflow.version"]) == (
        "parent",
        1,
    )
    assert first.attributes["dwf.status"] == "Parked"
    assert resumed.attributes is not None and resumed.attributes["dwf.status"] == "Succeeded"

    # The retry: two attempt spans under the one node, each named by its HTTP call.
    attempts = named(finished, "attempt fetch")
    assert [(a.attributes or {}).get("dwf.attempt") for a in attempts] == [1, 2]
    assert [(a.attributes or {}).get("dwf.status") for a in attempts] == [
        "RetriableFailure",
        "Succeeded",
    ]
    for attempt in attempts:
        assert parent_span_id(attempt) == span_id(first)
        assert trace_id(attempt) == trace_id(first)
        assert attempt.attributes is not None
        assert attempt.attributes["dwf.action.type"] == "core.http"
        assert attempt.attributes["dwf.node.id"] == "fetch"
        assert attempt.attributes["dwf.workflow.version"] == 1
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[0].attributes is not None and "error.type" in attempts[0].attributes
    sent = [seen.headers.get("traceparent") for seen in server.requests]
    assert sent == [traceparent_of(a) for a in attempts]

    # The subworkflow: the child's execution span is a child of the node's attempt span.
    [sub] = named(finished, "attempt sub")
    assert parent_span_id(sub) == span_id(first)
    [child] = named(finished, "execution child")
    assert parent_span_id(child) == span_id(sub)
    assert trace_id(child) == trace_id(first)
    assert child.attributes is not None
    assert child.attributes["dwf.parent.execution.id"] == str(row.execution_id)
    [kid_attempt] = named(finished, "attempt c")
    assert parent_span_id(kid_attempt) == span_id(child)
    async with traced.db.connection() as conn:
        [kid] = await executions.children(conn, row.execution_id)
    assert kid.traceparent == traceparent_of(sub)  # stored: any worker conducts it in its trace

    # The parent's resumed conduct is a new trace that links to its first.
    assert resumed.parent is None and trace_id(resumed) != trace_id(first)
    [link] = resumed.links
    assert (link.context.trace_id, link.context.span_id) == (trace_id(first), span_id(first))

    # Log lines join the traces: each conduct's lines carry its trace and span ids.
    fetched = [e for e in logs if e.get("nodeId") == "fetch"]
    assert fetched and {(e["traceId"], e["spanId"]) for e in fetched} == {
        (f"{trace_id(first):032x}", f"{span_id(first):016x}")
    }


async def test_an_actions_log_lines_carry_its_attempt_span(traced, spans, monkeypatch):
    from runner.actions import core

    echo = core.Echo.execute

    async def chatty(self, context, params):
        structlog.get_logger("test").info("echoing")
        return await echo(self, context, params)

    monkeypatch.setattr(core.Echo, "execute", chatty)
    await register(traced, workflow("w", node("a", "core.echo", {"message": "hi"})))
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await traced.execute(StartRequest(workflow_id="w", traceparent=TRACEPARENT))
    [line] = [e for e in logs if e["event"] == "echoing"]
    [attempt] = named(spans.get_finished_spans(), "attempt a")
    assert (line["traceId"], line["spanId"]) == (CALLER_TRACE, f"{span_id(attempt):016x}")
    assert (line["nodeId"], line["attempt"]) == ("a", 1)


@pytest.fixture
async def api(traced: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    """The API of the recording daemon, with a worker beside it."""
    application = traced.app({"worker"})
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


async def finished_row(daemon: Daemon, execution_id: str) -> executions.ExecutionRow:
    async def ended() -> executions.ExecutionRow | None:
        async with daemon.db.connection() as conn:
            row = await executions.get(conn, "default", uuid.UUID(execution_id))
        return row if row is not None and row.status in executions.TERMINAL else None

    return await until(ended, 20, "the execution to end")


async def test_a_traceparent_sent_on_execute_or_a_webhook_parents_the_execution_span(
    traced, spans, api
):
    hook = {"id": "hook", "type": "webhook", "path": "traced"}
    echo = node("a", "core.echo", {"message": "hi"})
    await register(traced, workflow("w", echo, triggers=[hook]))
    headers = {"traceparent": TRACEPARENT, "tracestate": "vendor=opaque"}
    by_api = await api.post("/api/v1/workflows/w/execute", json={}, headers=headers)
    by_hook = await api.post("/api/v1/hooks/default/traced", json={}, headers=headers)
    # Broken contexts are ignored (W3C), never refused: those runs start traces of their own.
    junk = {"traceparent": "00-not-a-trace-01", "tracestate": "x" * 600}
    by_junk = await api.post("/api/v1/workflows/w/execute", json={}, headers=junk)
    assert [r.status_code for r in (by_api, by_hook, by_junk)] == [202, 202, 202]
    ids = [r.json()["executionId"] for r in (by_api, by_hook, by_junk)]
    rows = [await finished_row(traced, execution_id) for execution_id in ids]
    assert [(r.traceparent, r.tracestate) for r in rows] == [
        (TRACEPARENT, "vendor=opaque"),
        (TRACEPARENT, "vendor=opaque"),
        (None, None),
    ]

    async def three() -> list[ReadableSpan] | None:
        found = named(spans.get_finished_spans(), "execution w")
        return found if len(found) == 3 else None

    by_execution = {
        (s.attributes or {}).get("dwf.execution.id"): s
        for s in await until(three, 10, "three execution spans")
    }
    for execution_id, trigger in zip(ids[:2], ("api", "webhook"), strict=True):
        span = by_execution[execution_id]
        assert span.parent is not None and span.parent.is_remote
        assert f"{span.parent.span_id:016x}" == CALLER_SPAN
        assert f"{trace_id(span):032x}" == CALLER_TRACE
        assert span.context is not None and span.context.trace_state.get("vendor") == "opaque"
        assert (span.attributes or {}).get("dwf.trigger.type") == trigger
    stranger = by_execution[ids[2]]
    assert stranger.parent is None and f"{trace_id(stranger):032x}" != CALLER_TRACE


async def test_a_resumed_execution_links_to_its_first_trace(traced, spans):
    slow = node("a", "core.delay", {"duration": "1s"}, "b")
    await register(traced, workflow("w", slow, node("b", "core.echo", {"message": "b"})))
    row, _ = await traced.starts.start(StartRequest(workflow_id="w", traceparent=TRACEPARENT))
    async with traced.db.connection() as conn:
        [claim] = await queue.claim(conn, "first-worker", 1, traced.settings.lease_seconds)
    conducting = asyncio.create_task(traced.conductor.conduct(claim))

    async def a_runs() -> bool:
        async with traced.db.connection() as conn:
            attempts = await executions.attempts(conn, row.execution_id)
        return any(a.node_id == "a" and a.status == "Running" for a in attempts)

    await until(a_runs, 10, "node a to run")
    traced.conductor.drain_all()  # the worker shuts down: a finishes, b is left for another
    assert await conducting == "Released"
    async with traced.db.connection() as conn:
        await queue.release(conn, claim)  # handed back, as a draining worker does
    final = await traced.worker(name="second-worker").run_execution("default", row.execution_id)
    assert final.status == "Succeeded"

    first, resumed = named(spans.get_finished_spans(), "execution w")
    assert (first.attributes or {}).get("dwf.status") == "Released"
    assert f"{trace_id(first):032x}" == CALLER_TRACE  # the first conduct: in the caller's trace
    assert resumed.parent is None and trace_id(resumed) != trace_id(first)
    assert (resumed.attributes or {}).get("dwf.execution.resumed") is True
    [link] = resumed.links
    assert (link.context.trace_id, link.context.span_id) == (trace_id(first), span_id(first))
    [b] = named(spans.get_finished_spans(), "attempt b")
    assert parent_span_id(b) == span_id(resumed)


async def test_a_resumed_execution_started_in_no_trace_links_to_its_first_too(traced, spans):
    await register(traced, workflow("w", node("a", "core.echo", {"message": "a"})))
    row, _ = await traced.starts.start(StartRequest(workflow_id="w"))
    assert row.traceparent is None
    # Its first conduct's ids follow from the execution id alone: nothing was stored.
    expected_trace, expected_span = tracing.first_span_ids(row)
    await traced.worker().run_execution("default", row.execution_id)
    [first] = named(spans.get_finished_spans(), "execution w")
    assert (trace_id(first), span_id(first)) == (expected_trace, expected_span)


async def test_no_exporter_by_default_and_a_callers_trace_still_reaches_outbound_calls(
    loopback, db, no_otel_variables
):
    with fakes.http() as server:
        async with Daemon(loopback, database=db) as daemon:
            assert not daemon.tracing.recording  # nothing recorded, nothing exported
            await register(daemon, echo_http(server.url, "traced"), echo_http(server.url))
            called = await daemon.execute(
                StartRequest(workflow_id="traced", traceparent=TRACEPARENT)
            )
            alone = await daemon.execute(StartRequest(workflow_id="w"))
    assert called.status == alone.status == "Succeeded"
    with_context, without = server.requests
    assert with_context.headers.get("traceparent") == TRACEPARENT  # carried through unchanged
    assert "traceparent" not in without.headers


async def test_an_unknown_exporter_stops_the_daemon_naming_the_variable(settings, db, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(UsageError, match="OTEL_TRACES_EXPORTER='jaeger'"):
        async with Daemon(settings, database=db):
            pass


@dataclasses.dataclass
class Collector:
    """A local OTLP/HTTP collector: takes protobuf POSTs on /v1/traces, decoded."""

    received: list[ExportTraceServiceRequest] = dataclasses.field(default_factory=list)
    content_types: list[str] = dataclasses.field(default_factory=list)

    async def traces(self, request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        self.received.append(message)
        self.content_types.append(request.headers.get("content-type", ""))
        return Response(ExportTraceServiceRequest().SerializeToString(), status_code=200)

    def spans(self) -> dict[str, dict[str, Any]]:
        """Every span received, by name: its attributes and the resource's."""
        found: dict[str, dict[str, Any]] = {}
        for message in self.received:
            for resource_spans in message.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        attributes = {a.key: _value(a.value) for a in span.attributes}
                        found[span.name] = {"attributes": attributes, "resource": resource}
        return found


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@contextlib.contextmanager
def collector() -> Iterator[tuple[Collector, str]]:
    fake = Collector()
    with fakes.serve(Starlette(routes=[Route("/v1/traces", fake.traces, methods=["POST"])])) as url:
        yield fake, url


async def test_otlp_exports_the_spans_to_a_collector(settings, db, monkeypatch):
    with collector() as (fake, url):
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "dwf-under-test")
        monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
        async with Daemon(settings, database=db) as daemon:
            assert daemon.tracing.recording
            await register(daemon, workflow("w", node("a", "core.echo", {"message": "hi"})))
            row = await daemon.execute(StartRequest(workflow_id="w"))
        # Closing the daemon flushed the batch to the collector.
    assert row.status == "Succeeded"
    assert fake.content_types and set(fake.content_types) == {"application/x-protobuf"}
    spans = fake.spans()
    execution, attempt = spans["execution w"], spans["attempt a"]
    assert execution["resource"]["service.name"] == "dwf-under-test"
    assert execution["attributes"]["dwf.execution.id"] == str(row.execution_id)
    assert execution["attributes"]["dwf.status"] == "Succeeded"
    assert attempt["attributes"]["dwf.action.type"] == "core.echo"
    assert attempt["attributes"]["dwf.attempt"] == 1
    assert json.dumps(attempt["attributes"])  # plain values, readable by any backend


def test_a_long_tracestate_is_trimmed_from_the_end_as_w3c_allows():
    members = ",".join(f"k{i}={'v' * 40}" for i in range(20))  # 20 members, 883 characters
    traceparent, tracestate = tracing.incoming({"traceparent": TRACEPARENT, "tracestate": members})
    assert traceparent == TRACEPARENT
    assert tracestate is not None and len(tracestate) <= tracing.MAX_TRACESTATE
    assert members.startswith(tracestate)
