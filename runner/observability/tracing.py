"""Traces (SPEC §13): a span per execution and per node attempt, the W3C trace context in and out.

    traced = Tracing.from_environment()        # the Daemon's part, from the OTEL_* variables
    Conductor(..., wrappers=traced.wrappers, execution_wrappers=[traced.executions])
    traceparent, tracestate = tracing.incoming(headers)    # at the doors: execute, webhooks
    with tracing.subworkflow_attempt(parent, node) as (traceparent, tracestate):  # a child
        ...

With no exporter configured (the default) nothing is recorded: the OpenTelemetry API's no-op
tracer only carries a context that came in (a caller's `traceparent`) on to outbound calls and
child executions, which costs next to nothing (docs/performance.md). With an exporter an SDK
TracerProvider records, and exports in batches off the event loop:

    execution <workflow>        dwf.execution.id, dwf.workflow.id, dwf.workflow.version, dwf.status
      attempt <node>            dwf.node.id, dwf.action.type, dwf.attempt, dwf.status, error.type
        (an outbound call's `traceparent` names this span)
      attempt <subworkflow>     the node's start of its child, and the child's parent:
        execution <child>       conducted whenever a worker claims it

An execution's first conduct is a child of the context stored with it (the caller's, or its
parent's attempt span). A resumed conduct (claimed again after a crash, a hand-back or a park)
starts a new trace linked to the first conduct's span; that span's ids follow from the
execution id (and the stored trace id), so nothing about it needs writing back to the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import os
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from runner.actions.base import ActionContext, ActionResult
from runner.actions.calls import ActionCall, Wrapper
from runner.errors import UsageError
from runner.store.executions import ExecutionRow

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from runner.engine.conductor import ExecutionCall
    from runner.spec.model import Node

#: The instrumentation scope of every span the runner makes.
TRACER_NAME = "dataworkflows"
#: `service.name` when neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES names one.
DEFAULT_SERVICE_NAME = "dataworkflows"
#: W3C Trace Context lets a tracestate be trimmed past 512 characters; the row holds no more.
MAX_TRACESTATE = 512
#: Longer error messages are cut in a span's status (the attempt row keeps the whole message).
MAX_STATUS_MESSAGE = 500
EXPORTERS = ("none", "otlp", "console")

_W3C = TraceContextTextMapPropagator()
#: The tracer and row of the execution conducted (recorded), for its nodes' tasks, which copy it.
_EXECUTION: contextvars.ContextVar[tuple[trace.Tracer, ExecutionRow] | None] = (
    contextvars.ContextVar("dwf_traced_execution", default=None)
)
#: Ids the next span must take (trace id or None, span id): an execution's first span.
_FIXED_IDS: contextvars.ContextVar[tuple[int | None, int] | None] = contextvars.ContextVar(
    "dwf_fixed_span_ids", default=None
)


def incoming(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The W3C `traceparent` and `tracestate` a request carries, normalised; (None, None) when
    it carries none or an invalid one (W3C: a bad context is ignored, never refused)."""
    return _headers_of(_W3C.extract(headers))


def current() -> tuple[str | None, str | None]:
    """The current span's `traceparent` and `tracestate` (None, None when there is none)."""
    return _headers_of(None)


def _headers_of(context: otel_context.Context | None) -> tuple[str | None, str | None]:
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context)
    return carrier.get("traceparent"), _trimmed(carrier.get("tracestate"))


def _trimmed(tracestate: str | None) -> str | None:
    """A tracestate of at most MAX_TRACESTATE characters, trimmed as W3C says: members over 128
    characters go first, then members from the end."""
    if not tracestate or len(tracestate) <= MAX_TRACESTATE:
        return tracestate or None
    members = [m for m in tracestate.split(",") if len(m) <= 128]
    while members and len(",".join(members)) > MAX_TRACESTATE:
        members.pop()
    return ",".join(members) or None


def _stored(row: ExecutionRow) -> otel_context.Context | None:
    """The context an execution was started in, or None."""
    if row.traceparent is None:
        return None
    carrier = {"traceparent": row.traceparent}
    if row.tracestate:
        carrier["tracestate"] = row.tracestate
    return _W3C.extract(carrier)


def first_span_ids(row: ExecutionRow) -> tuple[int, int]:
    """(trace id, span id) of an execution's first conduct span: the stored trace's id, or one
    derived from the execution id when it was started in none; a span id derived from it."""
    stored = _stored(row)
    trace_id = 0 if stored is None else trace.get_current_span(stored).get_span_context().trace_id
    span_id = _derived(row.execution_id, b"span", 8)
    return trace_id or _derived(row.execution_id, b"trace", 16), span_id


def _derived(execution_id: uuid.UUID, purpose: bytes, size: int) -> int:
    # Hashed, not the UUID's own bits: those hold fixed version bits, and a ratio sampler reads
    # the trace id's low bits as random.
    digest = hashlib.blake2b(execution_id.bytes, digest_size=size, person=b"dwf-" + purpose)
    return int.from_bytes(digest.digest(), "big") or 1


class Tracing:
    """The process's tracer: no-op (no processors given) or an SDK provider with `processors`
    (an exporter's batch processor; a test's in-memory one; none at all, to measure)."""

    def __init__(self, processors: Sequence[SpanProcessor] | None = None) -> None:
        self._provider: TracerProvider | None = None
        self._tracer: trace.Tracer = trace.NoOpTracer()
        if processors is not None:
            from opentelemetry.sdk.trace import TracerProvider  # the SDK: only when recording

            from runner import __version__

            self._provider = TracerProvider(
                resource=_resource(), id_generator=_execution_ids()(), shutdown_on_exit=False
            )
            for processor in processors:
                self._provider.add_span_processor(processor)
            self._tracer = self._provider.get_tracer(TRACER_NAME, __version__)
        #: Wrappers around every action call (the attempt span); none when nothing records.
        self.wrappers: tuple[Wrapper, ...] = () if self._provider is None else (self._attempts,)

    @classmethod
    def from_environment(cls) -> Tracing:
        """The tracing the OTEL_* variables ask for: OTEL_TRACES_EXPORTER `none` (the default),
        `otlp` (OTLP over HTTP/protobuf) or `console` (stderr), several comma-separated;
        OTEL_SDK_DISABLED=true for none. UsageError naming the variable for anything else."""
        environ = os.environ
        if (environ.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
            return cls()
        exporters = [_exporter(name) for name in _exporter_names(environ)]
        if not exporters:
            return cls()
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        return cls([BatchSpanProcessor(exporter) for exporter in exporters])

    @property
    def recording(self) -> bool:
        """Whether spans are recorded (an SDK provider), not only carried through."""
        return self._provider is not None

    async def aclose(self) -> None:
        """Export what is left and stop the exporters (off the event loop: it may block)."""
        if self._provider is not None:
            await asyncio.to_thread(self._provider.shutdown)

    # -- the execution span -----------------------------------------------------------------

    def executions(self, call: ExecutionCall) -> ExecutionCall:
        """The execution span around the conduct of a claimed execution (an execution wrapper
        of the Conductor); its outcome is `dwf.status`. Unrecorded, the context the execution
        was started in is only made current, for outbound calls and children to carry."""
        if self._provider is None:

            async def carried(row: ExecutionRow) -> str | None:
                stored = _stored(row)
                if stored is None:
                    return await call(row)
                token = otel_context.attach(stored)
                try:
                    with _log_ids(trace.get_current_span(stored).get_span_context(), span=False):
                        return await call(row)
                finally:
                    otel_context.detach(token)

            return carried

        async def traced(row: ExecutionRow) -> str | None:
            span = self._execution_span(row)
            token = otel_context.attach(trace.set_span_in_context(span, otel_context.Context()))
            marker = _EXECUTION.set((self._tracer, row))
            try:
                with _log_ids(span.get_span_context()):
                    outcome = await call(row)
            except BaseException as exc:
                _failed(span, exc)
                raise
            else:
                span.set_attribute("dwf.status", outcome or "Nothing")
                if outcome == "Failed":
                    span.set_status(Status(StatusCode.ERROR, "the execution failed"))
                return outcome
            finally:
                _EXECUTION.reset(marker)
                otel_context.detach(token)
                span.end()

        return traced

    def _execution_span(self, row: ExecutionRow) -> trace.Span:
        attributes: dict[str, Any] = {
            "dwf.execution.id": str(row.execution_id),
            "dwf.workflow.id": row.workflow_id,
            "dwf.workflow.version": row.workflow_version,
            "dwf.tenant": row.tenant,
            "dwf.trigger.type": row.trigger_type,
        }
        if row.parent_execution_id is not None:
            attributes["dwf.parent.execution.id"] = str(row.parent_execution_id)
        name = f"execution {row.workflow_id}"
        trace_id, span_id = first_span_ids(row)
        if row.status == "Pending":  # the first conduct: it takes the ids a resume links to
            stored = _stored(row)
            fixed = _FIXED_IDS.set((None if stored else trace_id, span_id))
            try:
                return self._tracer.start_span(
                    name, stored or otel_context.Context(), SpanKind.CONSUMER, attributes
                )
            finally:
                _FIXED_IDS.reset(fixed)
        first = SpanContext(
            trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        )
        attributes["dwf.execution.resumed"] = True
        return self._tracer.start_span(
            name, otel_context.Context(), SpanKind.CONSUMER, attributes,
            links=[Link(first, {"dwf.link": "first conduct"})],
        )  # fmt: skip

    # -- attempt spans ----------------------------------------------------------------------

    def _attempts(self, call: ActionCall) -> ActionCall:
        """The attempt span around an action call: it is current while the action runs, so
        its outbound calls name it in their `traceparent`."""
        tracer = self._tracer

        async def traced(context: ActionContext, params: Any) -> ActionResult:
            attributes: dict[str, Any] = {
                "dwf.execution.id": context.execution_id,
                "dwf.workflow.id": context.workflow_id,
                "dwf.node.id": context.node_id,
                "dwf.attempt": context.attempt,
            }
            execution = _EXECUTION.get()
            if execution is not None:
                attributes["dwf.workflow.version"] = execution[1].workflow_version
            if context.action_type is not None:
                attributes["dwf.action.type"] = context.action_type
            span = tracer.start_span(f"attempt {context.node_id}", attributes=attributes)
            try:
                with (
                    trace.use_span(span, record_exception=False, set_status_on_exception=False),
                    _log_ids(span.get_span_context(), trace=False),
                ):
                    result = await call(context, params)
            except BaseException as exc:
                _failed(span, exc)
                raise
            else:
                span.set_attribute("dwf.status", result.status)
                if result.error is not None:
                    span.set_attribute("error.type", result.error.type)
                    message = result.error.message[:MAX_STATUS_MESSAGE]
                    span.set_status(Status(StatusCode.ERROR, message))
                return result
            finally:
                span.end()

        return traced


@contextlib.contextmanager
def subworkflow_attempt(
    parent: ExecutionRow, node: Node
) -> Iterator[tuple[str | None, str | None]]:
    """The span of a subworkflow node's start of its child (no action call runs that node);
    yields the trace context to start the child in: this span's, or unrecorded the current."""
    execution = _EXECUTION.get()
    if execution is None:
        yield current()
        return
    attributes: dict[str, Any] = {
        "dwf.execution.id": str(parent.execution_id),
        "dwf.workflow.id": parent.workflow_id,
        "dwf.workflow.version": parent.workflow_version,
        "dwf.node.id": node.id,
        "dwf.subworkflow.id": node.workflow_id or "",
    }
    with execution[0].start_as_current_span(f"attempt {node.id}", attributes=attributes):
        yield current()


@contextlib.contextmanager
def _log_ids(ids: SpanContext, *, trace: bool = True, span: bool = True) -> Iterator[None]:
    """Log lines carry the span's ids (traceId, spanId: lower-case hex, as W3C writes them), so
    logs and traces join."""
    if not ids.is_valid:
        yield
        return
    bound = {}
    if trace:
        bound["traceId"] = format(ids.trace_id, "032x")
    if span:
        bound["spanId"] = format(ids.span_id, "016x")
    with structlog.contextvars.bound_contextvars(**bound):
        yield


def _failed(span: Any, exc: BaseException) -> None:
    """An execution or attempt ended by an exception: cancelled (a cancel, a lost lease, a
    drain's end) or an error."""
    if isinstance(exc, asyncio.CancelledError):
        span.set_attribute("dwf.status", "Cancelled")
        return
    span.set_attribute("error.type", type(exc).__qualname__)
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:MAX_STATUS_MESSAGE]))


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    raw = environ.get("OTEL_TRACES_EXPORTER") or "none"
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    for name in names:
        if name not in EXPORTERS:
            raise UsageError(
                f"OTEL_TRACES_EXPORTER={raw!r}: unknown exporter {name!r}; use "
                f"{', '.join(EXPORTERS)} (several comma-separated)"
            )
    return [name for name in dict.fromkeys(names) if name != "none"]


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)  # stdout is `dwf run --output json`'s
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol.strip().lower() != "http/protobuf":
        raise UsageError(
            f"OTLP protocol {protocol!r}: the runner exports OTLP over HTTP/protobuf only; set "
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (a collector listens on port 4318)"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout: the OTEL_EXPORTER_OTLP_* variables


def _resource() -> Any:
    """`service.name` from OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES (else dataworkflows),
    with the runner's version."""
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource

    from runner import __version__

    resource = Resource.create({SERVICE_VERSION: __version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


@functools.cache
def _execution_ids() -> type:
    """The SDK's id generator (loaded only when recording), but for an execution's first span:
    that one takes the ids `_FIXED_IDS` gives."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class ExecutionIds(RandomIdGenerator):
        def generate_span_id(self) -> int:
            fixed = _FIXED_IDS.get()
            return super().generate_span_id() if fixed is None else fixed[1]

        def generate_trace_id(self) -> int:
            fixed = _FIXED_IDS.get()
            if fixed is None or fixed[0] is None:
                return super().generate_trace_id()
            return fixed[0]

    return ExecutionIds
