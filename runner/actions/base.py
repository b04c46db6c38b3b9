"""The action contract of SPEC §10: a type, JSON Schemas for parameters and outputs, `execute`.

Connector packages subclass `Action` and register the class under the `dataworkflows.actions`
entry-point group. Keep module-level imports light (import SDKs inside `execute`): `dwf lint`
loads action classes only for their schemas and must start fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from runner.actions.services import ActionServices

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
    #: A transient failure's server asked to wait this long (Retry-After) before the next try.
    retry_after: float | None = None

    def masked(self) -> ActionResult:
        """This result with secret values masked in outputs, error and links (`***`)."""
        from dataclasses import replace

        from runner.credentials import masking

        if masking.MASKER.pattern is None:
            return self  # no secret revealed in this process: nothing to look for
        mask = masking.mask
        error = self.error
        if error is not None:
            error = ActionError(error.type, masking.mask_text(error.message))
        links = tuple(
            ResourceLink(link.system, link.resource_type, mask(link.external_id), mask(link.url))
            for link in self.resource_links
        )
        return replace(self, outputs=mask(dict(self.outputs)), error=error, resource_links=links)

    @classmethod
    def ok(cls, outputs: Mapping[str, Any] | None = None, *links: ResourceLink) -> ActionResult:
        """A successful attempt."""
        return cls("Succeeded", dict(outputs or {}), None, links)

    @classmethod
    def failed(
        cls,
        error_type: str,
        message: str,
        *,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> ActionResult:
        """A failed attempt; transient failures are retried by the node's retry policy (not
        sooner than `retry_after` seconds, when the other side said so)."""
        status: AttemptStatus = "RetriableFailure" if transient else "Failed"
        return cls(status, {}, ActionError(error_type, message), (), retry_after)


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What an action may know about the attempt it runs in, and the services it may use."""

    execution_id: str
    workflow_id: str
    node_id: str
    _: KW_ONLY
    #: Credentials, the shared HTTP client and connector settings of the running process.
    services: ActionServices
    attempt: int = 1
    correlation_id: str | None = None
    #: The node's action type (`core.http`): what metrics and traces label an attempt with.
    action_type: str | None = None

    def outbound_headers(self) -> dict[str, str]:
        """Headers every outbound call carries: the execution's correlation id, and the W3C
        trace context (`traceparent`: the attempt's span, when traces are recorded)."""
        from runner.actions.services import CORRELATION_HEADER, trace_headers

        headers = trace_headers()
        if self.correlation_id:
            headers[CORRELATION_HEADER] = self.correlation_id
        return headers


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
