"""The action contract of SPEC §10: a type, JSON Schemas for parameters and outputs, `execute`.

Connector packages subclass `Action` and register the class under the `dataworkflows.actions`
entry-point group. Keep module-level imports light (import SDKs inside `execute`): `dwf lint`
loads action classes only for their schemas and must start fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

AttemptStatus = Literal["Succeeded", "Failed", "RetriableFailure"]


@dataclass(frozen=True, slots=True)
class ResourceLink:
    """Something an action created in another system, so reruns can find it instead."""

    system: str
    resource_type: str
    external_id: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ActionError:
    """Why an attempt failed: a short type (`Timeout`, `HTTP 404`) and a message for people."""

    type: str
    message: str


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What one attempt produced."""

    status: AttemptStatus
    outputs: Mapping[str, Any] = field(default_factory=dict)
    error: ActionError | None = None
    resource_links: tuple[ResourceLink, ...] = ()

    @classmethod
    def ok(cls, outputs: Mapping[str, Any] | None = None, *links: ResourceLink) -> ActionResult:
        """A successful attempt."""
        return cls("Succeeded", dict(outputs or {}), None, links)

    @classmethod
    def failed(cls, error_type: str, message: str, *, transient: bool = False) -> ActionResult:
        """A failed attempt; transient failures are retried by the node's retry policy."""
        return cls(
            "RetriableFailure" if transient else "Failed", {}, ActionError(error_type, message)
        )


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What an action may know about the attempt it runs in."""

    execution_id: str
    workflow_id: str
    node_id: str
    attempt: int = 1
    correlation_id: str | None = None


class Action(ABC):
    """Base class of every action type; subclasses set the class attributes and `execute`."""

    type: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    parameters_schema: ClassVar[Mapping[str, Any]] = {"type": "object"}
    outputs_schema: ClassVar[Mapping[str, Any]] = {"type": "object"}

    @abstractmethod
    async def execute(self, context: ActionContext, params: Mapping[str, Any]) -> ActionResult:
        """Run one attempt with rendered, schema-validated parameters."""
