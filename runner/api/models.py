"""The API's request and response bodies (pydantic): they are its contract and its OpenAPI schema.

Fields are snake_case in Python and camelCase on the wire. Documents built by the engine
(`runner.engine.summary`) pass through with any field these models do not name yet.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

ExecutionStatus = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
MAX_ID_LENGTH = 200
#: The largest number Postgres's `bigint` holds: event and fire ids (paging) are no larger.
MAX_BIGINT = 2**63 - 1


class ApiModel(BaseModel):
    """camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Document(ApiModel):
    """An engine document: fields added there later pass through unchanged."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class ExecuteBody(ApiModel):
    """What to start a workflow with; every field is optional, and so is the body."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    trigger: dict[str, Any] = Field(
        default_factory=dict,
        description="The trigger payload (`trigger` in expressions): a JSON object.",
    )
    request_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="Idempotency key: a repeated id for the same workflow returns the execution "
        "it started (200) instead of starting another. Overrides the `X-Request-Id` header.",
    )
    principal: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="Who asks (recorded on the execution): taken as given in loose auth mode "
        "(default `anonymous`); in strict mode the token's `sub` is the principal, and a "
        "different value here is refused (400).",
    )


class Accepted(ApiModel):
    """An execution started (202), or the one a repeated request id started earlier (200)."""

    execution_id: str = Field(description="The execution's id (a UUID).")
    status: ExecutionStatus = Field(description="Its status now.")
    status_url: str = Field(description="Where to follow it: `GET` this path.")


class CancelAccepted(ApiModel):
    """A cancel was recorded; the execution ends Cancelled shortly."""

    execution_id: str = Field(description="The execution's id.")
    status: Literal["Cancelling"] = Field(description="Always `Cancelling`.")


class NodeState(Document):
    """A node's state, from its last attempt."""

    status: str = Field(description="Running, Succeeded, Failed, Skipped or Cancelled.")
    attempts: int = Field(description="The number of its last attempt (0: skipped, never run).")
    outputs: Any = Field(default=None, description="Its outputs, when it succeeded.")
    error: Any = Field(default=None, description="Its error {type, message, …}, when it failed.")


class ResourceLink(ApiModel):
    """Something an action created in another system (a `workflow_resource_links` row)."""

    system: str = Field(description="The other system, e.g. `slack`, `monday`.")
    resource_type: str = Field(description="What was created there, e.g. `message`, `item`.")
    external_id: str = Field(description="Its id in that system.")
    url: str | None = Field(default=None, description="Where to see it, when the action knows.")


class Attempt(Document):
    """One attempt of one node (an `action_executions` row)."""

    node_id: str = Field(description="The node.")
    attempt: int = Field(description="1, 2, … (0: the node was skipped).")
    action_type: str | None = Field(default=None, description="The action, e.g. `core.echo`.")
    status: str = Field(description="Running, Succeeded, Failed, Skipped or Cancelled.")
    parameters: Any = Field(default=None, description="The rendered parameters (secrets masked).")
    outputs: Any = Field(default=None, description="The outputs, when it succeeded.")
    error: Any = Field(default=None, description="The error, when it failed.")
    reused: bool = Field(default=False, description="Outputs reused by idempotency key.")
    started_at: str | None = Field(default=None, description="ISO 8601.")
    finished_at: str | None = Field(default=None, description="ISO 8601; null while running.")
    resource_links: list[ResourceLink] = Field(
        default_factory=list,
        description="What this attempt created elsewhere, as its action returned it (a reused "
        "attempt has none: they belong to the attempt that created them).",
    )


class ExecutionSummary(ApiModel):
    """An execution in a listing."""

    execution_id: str = Field(description="The execution's id.")
    workflow_id: str = Field(description="The workflow it runs.")
    workflow_version: int = Field(description="The version of the workflow it runs.")
    status: ExecutionStatus = Field(description="Its status.")
    request_id: str = Field(description="Its idempotency key.")
    principal: str | None = Field(default=None, description="Who started it.")
    created_at: str = Field(description="ISO 8601.")
    started_at: str | None = Field(default=None, description="ISO 8601.")
    finished_at: str | None = Field(default=None, description="ISO 8601; null until it ends.")


class Execution(ExecutionSummary):
    """An execution with its nodes and every attempt."""

    model_config = Document.model_config

    correlation_id: str = Field(description="Passed on to outbound calls as X-Correlation-Id.")
    error: Any = Field(default=None, description="Why it failed {type, message, nodeId}.")
    outputs: Any = Field(default=None, description="The workflow's outputs, once it succeeded.")
    nodes: dict[str, NodeState] = Field(description="Each node that started, by id.")
    attempts: list[Attempt] = Field(description="Every attempt of every node, in start order.")


class ExecutionPage(ApiModel):
    """A page of executions, newest first."""

    items: list[ExecutionSummary] = Field(description="This page.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class Event(ApiModel):
    """An entry of an execution's event log."""

    event_id: int = Field(description="Increasing; resume after it with `after` or Last-Event-ID.")
    kind: str = Field(description="ExecutionStarted, NodeStarted, ExecutionSucceeded, …")
    node_id: str | None = Field(default=None, description="The node it is about, if any.")
    attempt: int | None = Field(default=None, description="The node's attempt, if any.")
    data: dict[str, Any] = Field(description="Details of the event.")
    created_at: str = Field(description="ISO 8601.")


class Health(ApiModel):
    """The process is alive."""

    status: Literal["ok"] = Field(description="Always `ok`.")


class Ready(ApiModel):
    """The database answers and every migration is applied."""

    status: Literal["ready"] = Field(description="Always `ready`.")
