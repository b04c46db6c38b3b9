"""A request to start an execution, checked at the door: payload shape, size and depth."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from runner.errors import InvalidRequest
from runner.settings import DEFAULT_MAX_TRIGGER_BYTES, DEFAULT_MAX_TRIGGER_DEPTH
from runner.spec import storable
from runner.spec.diagnostics import format_path

TriggerType = Literal["manual", "api", "schedule", "webhook", "subworkflow"]

#: Request headers never shown to expressions (`event.headers`): they carry credentials.
SECRET_HEADERS = frozenset(
    {"authorization", "cookie", "x-hub-signature", "x-hub-signature-256", "x-slack-signature"}
)


@dataclass(frozen=True, slots=True)
class StartRequest:
    """Who wants which workflow started, with what payload, under which request id."""

    workflow_id: str
    trigger: Mapping[str, Any] = field(default_factory=dict)
    trigger_type: TriggerType = "api"
    trigger_id: str | None = None
    request_id: str | None = None
    principal: str | None = None
    tenant: str = "default"
    version: int | None = None
    allow_draft: bool = False
    #: `dwf run FILE`: its author testing it, so the workflow's status does not matter.
    any_status: bool = False
    correlation_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    parent_execution_id: uuid.UUID | None = None
    parent_node_id: str | None = None
    depth: int = 0
    #: `event.firedAt`; a schedule gives its scheduled time (default: now).
    fired_at: datetime | None = None
    #: The W3C trace context it is started in, normalised (`observability.tracing.incoming`):
    #: the caller's, or a subworkflow node's attempt span. Stored with the execution.
    traceparent: str | None = None
    tracestate: str | None = None


def visible_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as expressions see them (`event.headers`): lower-cased, credentials left out."""
    lowered = ((k.lower(), v) for k, v in headers.items())
    return {k: v for k, v in lowered if k not in SECRET_HEADERS}


def event_scope(
    trigger_type: str,
    trigger_id: str | None,
    *,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    fired_at: datetime | None = None,
) -> dict[str, Any]:
    """The `event` of SPEC §4's expression scope: {type, triggerId, firedAt, headers, query}."""
    return {
        "type": trigger_type,
        "triggerId": trigger_id,
        "firedAt": (fired_at or datetime.now(UTC)).isoformat(),
        "headers": visible_headers(headers),
        "query": dict(query),
    }


def check_trigger(
    payload: Any,
    *,
    max_bytes: int = DEFAULT_MAX_TRIGGER_BYTES,
    max_depth: int = DEFAULT_MAX_TRIGGER_DEPTH,
) -> dict[str, Any]:
    """The payload when it is a JSON object within the limits; InvalidRequest saying why not."""
    if not isinstance(payload, Mapping):
        kind = "null" if payload is None else type(payload).__name__
        raise InvalidRequest(f"the trigger payload must be a JSON object, not {kind}")
    # Depth first: it is counted iteratively, while json.dumps would recurse on deep data.
    depth = _depth(payload, max_depth + 1)
    if depth > max_depth:
        raise InvalidRequest(
            f"the trigger payload nests deeper than {max_depth} levels; flatten it"
        )
    try:
        text = json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"the trigger payload is not JSON data: {exc}") from exc
    # ASCII JSON writes a NUL as \u0000 and any surrogate as \udXXX: only then walk it.
    if "\\u0000" in text or "\\ud" in text:
        found = storable.find(payload, ("trigger",))
        if found is not None:
            raise InvalidRequest(
                f"the trigger payload's `{format_path(found[0])}` {found[1]}, which cannot be "
                "stored"
            )
    size = len(text)
    if size > max_bytes:
        raise InvalidRequest(
            f"the trigger payload is {size:,} bytes; the limit is {max_bytes:,} bytes"
        )
    return dict(payload)


def parse_trigger(text: str, **limits: int) -> dict[str, Any]:
    """A payload from JSON text (a command-line `--trigger`); InvalidRequest when it is not."""
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"the trigger payload is not valid JSON: {exc}") from exc
    return check_trigger(payload, **limits)


def _depth(value: Any, stop: int) -> int:
    """Nesting depth of JSON data, counted iteratively and no further than `stop`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            deepest = max(deepest, level)
            if deepest >= stop:
                return deepest
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, level + 1) for child in children)
    return deepest
