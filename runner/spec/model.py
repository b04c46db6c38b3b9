"""The typed, frozen model of a workflow document (SPEC §3).

`Workflow.from_data` builds it from a document that passed the JSON Schema. Given one that did
not, a scalar field of the wrong type takes its default (so `dwf lint` can still run the graph
and expression rules and report every problem at once) and a structural problem (a node that
is not a mapping, a missing id) raises `ShapeError`. Code that runs workflows builds models only
from documents without findings. Free-form data (parameters, vars, payloads,
outputs) is deep-frozen: mappings become read-only views and lists become tuples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, UnionType
from typing import Any, Literal, overload

from runner.errors import ShapeError as ShapeError  # noqa: PLC0414 (re-export)
from runner.spec.durations import parse_duration

EdgeWhen = Literal["success", "failure", "always"]
RoutePolicy = Literal["parallel", "firstMatch"]
WorkflowStatus = Literal["draft", "active", "archived"]

DEFAULT_CATCHUP_WINDOW_SECONDS = 3600.0
DEFAULT_MAX_NESTING_DEPTH = 5
DEFAULT_RETRY_INITIAL_DELAY_SECONDS = 1.0
DEFAULT_RETRY_MAX_DELAY_SECONDS = 60.0


def freeze(value: Any) -> Any:
    """A deep read-only copy of JSON-like data: dicts become mapping proxies, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain JSON-ready data (dicts and lists) from frozen data."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


def _get(
    data: Mapping[str, Any],
    key: str,
    kind: type | UnionType | tuple[type, ...],
    default: Any = None,
) -> Any:
    value = data.get(key, default)
    if value is not default and not isinstance(value, kind):
        if kind is list or kind is dict:
            raise ShapeError(key)  # structure: nothing sensible can stand in for it
        return default  # a scalar: the schema check reports it; see the module docstring
    return value


@overload
def _seconds(data: Mapping[str, Any], key: str, default: float) -> float: ...
@overload
def _seconds(data: Mapping[str, Any], key: str, default: None = None) -> float | None: ...
def _seconds(data: Mapping[str, Any], key: str, default: float | None = None) -> float | None:
    value = data.get(key)
    if value is None:
        return default
    try:
        return parse_duration(value)
    except ValueError:
        return default  # the schema check reports it; see the module docstring


@dataclass(frozen=True, slots=True)
class Edge:
    """A directed edge: taken when the source's outcome matches `when` and `condition` holds."""

    target_node: str
    when: EdgeWhen = "success"
    condition: str | None = None

    @classmethod
    def from_data(cls, data: Any) -> Edge:
        """Build from a validated edge mapping."""
        if not isinstance(data, Mapping) or not isinstance(data.get("targetNode"), str):
            raise ShapeError("edge")
        return cls(
            target_node=data["targetNode"],
            when=_get(data, "when", str, "success"),
            condition=_get(data, "condition", str),
        )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a node's transient failures are retried."""

    max_attempts: int = 1
    backoff: Literal["fixed", "exponential"] = "exponential"
    initial_delay: float = DEFAULT_RETRY_INITIAL_DELAY_SECONDS
    max_delay: float = DEFAULT_RETRY_MAX_DELAY_SECONDS
    multiplier: float = 2.0
    rerender_on_retry: bool = False

    @classmethod
    def from_data(cls, data: Any) -> RetryPolicy:
        """Build from a validated `retry` mapping."""
        if not isinstance(data, Mapping):
            raise ShapeError("retry")
        return cls(
            max_attempts=_get(data, "maxAttempts", int, 1),
            backoff=_get(data, "backoff", str, "exponential"),
            initial_delay=_seconds(data, "initialDelay", DEFAULT_RETRY_INITIAL_DELAY_SECONDS),
            max_delay=_seconds(data, "maxDelay", DEFAULT_RETRY_MAX_DELAY_SECONDS),
            multiplier=float(_get(data, "multiplier", int | float, 2.0)),
            rerender_on_retry=_get(data, "rerenderOnRetry", bool, False),
        )


NO_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Node:
    """A step of the workflow: an action, or a subworkflow started as a child execution."""

    id: str
    node_type: Literal["action", "subworkflow"] = "action"
    action_type: str | None = None
    description: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    retry: RetryPolicy = NO_RETRY
    timeout: float | None = None
    edges: tuple[Edge, ...] = ()
    on_failure: str | None = None
    idempotency_key: str | None = None
    route_policy: RoutePolicy | None = None
    workflow_id: str | None = None
    version: int | None = None
    wait_for_completion: bool = True

    @classmethod
    def from_data(cls, data: Any) -> Node:
        """Build from a validated node mapping."""
        if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
            raise ShapeError("node")
        edges = _get(data, "edges", list, [])
        retry = data.get("retry")
        return cls(
            id=data["id"],
            node_type=_get(data, "nodeType", str, "action"),
            action_type=_get(data, "actionType", str),
            description=_get(data, "description", str),
            parameters=freeze(_get(data, "parameters", dict, {})),
            retry=NO_RETRY if retry is None else RetryPolicy.from_data(retry),
            timeout=_seconds(data, "timeout"),
            edges=tuple(Edge.from_data(e) for e in edges),
            on_failure=_get(data, "onFailure", str),
            idempotency_key=_get(data, "idempotencyKey", str),
            route_policy=_get(data, "routePolicy", str),
            workflow_id=_get(data, "workflowId", str),
            version=_get(data, "version", int),
            wait_for_completion=_get(data, "waitForCompletion", bool, True),
        )


@dataclass(frozen=True, slots=True)
class Options:
    """Execution-wide settings; `None` means the server's configured default."""

    max_parallel_actions: int | None = None
    timeout: float | None = None
    default_action_timeout: float | None = None
    route_policy: RoutePolicy = "parallel"
    max_nesting_depth: int = DEFAULT_MAX_NESTING_DEPTH

    @classmethod
    def from_data(cls, data: Any) -> Options:
        """Build from a validated `options` mapping."""
        if not isinstance(data, Mapping):
            raise ShapeError("options")
        return cls(
            max_parallel_actions=_get(data, "maxParallelActions", int),
            timeout=_seconds(data, "timeout"),
            default_action_timeout=_seconds(data, "defaultActionTimeout"),
            route_policy=_get(data, "routePolicy", str, "parallel"),
            max_nesting_depth=_get(data, "maxNestingDepth", int, DEFAULT_MAX_NESTING_DEPTH),
        )


@dataclass(frozen=True, slots=True)
class ScheduleTrigger:
    """Fire on a cron schedule in a time zone."""

    id: str
    cron: str
    timezone: str = "UTC"
    payload: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    overlap: Literal["skip", "allow", "cancelPrevious"] = "skip"
    catchup: Literal["none", "latest", "all"] = "latest"
    catchup_window: float = DEFAULT_CATCHUP_WINDOW_SECONDS
    misfire_grace_time: float | None = None
    enabled: bool = True
    type: Literal["schedule"] = "schedule"


@dataclass(frozen=True, slots=True)
class WebhookTrigger:
    """Fire on a signed HTTP POST to `/api/v1/hooks/<tenant>/<path>`."""

    id: str
    path: str
    secret_ref: str | None = None
    signature: Literal["github", "slack", "hmac-sha256"] | None = None
    signature_header: str | None = None
    #: `signature: none` was written out: unsigned deliveries are accepted on purpose (lint
    #: warns of a webhook without `signature`); `signature` is then None.
    unsigned: bool = False
    request_id_header: str | None = None
    activation_condition: str | None = None
    enabled: bool = True
    type: Literal["webhook"] = "webhook"


@dataclass(frozen=True, slots=True)
class ManualTrigger:
    """Allow starts by hand (`dwf run`, the execute API), optionally with a default payload."""

    id: str
    payload: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    enabled: bool = True
    type: Literal["manual"] = "manual"


Trigger = ScheduleTrigger | WebhookTrigger | ManualTrigger


def trigger_from_data(data: Any) -> Trigger:
    """Build the trigger a validated mapping describes, by its `type`."""
    if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
        raise ShapeError("trigger")
    kind, tid, enabled = data.get("type"), data["id"], _get(data, "enabled", bool, True)
    if kind == "schedule":
        return ScheduleTrigger(
            id=tid,
            cron=_get(data, "cron", str, ""),
            timezone=_get(data, "timezone", str, "UTC"),
            payload=freeze(_get(data, "payload", dict, {})),
            overlap=_get(data, "overlap", str, "skip"),
            catchup=_get(data, "catchup", str, "latest"),
            catchup_window=_seconds(data, "catchupWindow", DEFAULT_CATCHUP_WINDOW_SECONDS),
            misfire_grace_time=_seconds(data, "misfireGraceTime"),
            enabled=enabled,
        )
    if kind == "webhook":
        return WebhookTrigger(
            id=tid,
            path=_get(data, "path", str, ""),
            secret_ref=_get(data, "secretRef", str),
            signature=None if data.get("signature") == "none" else _get(data, "signature", str),
            signature_header=_get(data, "signatureHeader", str),
            unsigned=data.get("signature") == "none",
            request_id_header=_get(data, "requestIdHeader", str),
            activation_condition=_get(data, "activationCondition", str),
            enabled=enabled,
        )
    if kind == "manual":
        return ManualTrigger(
            id=tid, payload=freeze(_get(data, "payload", dict, {})), enabled=enabled
        )
    raise ShapeError("type")


@dataclass(frozen=True, slots=True)
class Workflow:
    """A whole workflow document, typed and read-only."""

    id: str
    start_node: str
    nodes: tuple[Node, ...]
    api_version: str = "dataworkflows/v1"
    kind: str = "Workflow"
    display_name: str | None = None
    description: str | None = None
    status: WorkflowStatus = "draft"
    vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    options: Options = Options()
    on_failure: str | None = None
    outputs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    triggers: tuple[Trigger, ...] = ()

    @classmethod
    def from_data(cls, data: Any) -> Workflow:
        """Build from a document that passed the JSON Schema; `ShapeError` otherwise."""
        if not isinstance(data, Mapping):
            raise ShapeError("document")
        options = data.get("options")
        return cls(
            id=_get(data, "id", str, ""),
            start_node=_get(data, "startNode", str, ""),
            nodes=tuple(Node.from_data(n) for n in _get(data, "nodes", list, [])),
            api_version=_get(data, "apiVersion", str, "dataworkflows/v1"),
            kind=_get(data, "kind", str, "Workflow"),
            display_name=_get(data, "displayName", str),
            description=_get(data, "description", str),
            status=_get(data, "status", str, "draft"),
            vars=freeze(_get(data, "vars", dict, {})),
            options=Options() if options is None else Options.from_data(options),
            on_failure=_get(data, "onFailure", str),
            outputs=freeze(_get(data, "outputs", dict, {})),
            triggers=tuple(trigger_from_data(t) for t in _get(data, "triggers", list, [])),
        )

    def node(self, node_id: str) -> Node:
        """The node with this id; KeyError naming it otherwise."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(f"workflow {self.id!r} has no node {node_id!r}")
