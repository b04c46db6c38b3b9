"""Running one node: its attempts, under a per-attempt timeout, retried by tenacity.

Only transient failures (`RetriableFailure`: timeouts, connection errors, HTTP 429/5xx, or the
action's own verdict) are retried, per the node's policy. Each attempt is its own row, written
when it starts and completed when it ends; the node's last attempt is completed by the conductor
in the same transaction that starts the next nodes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
    wait_fixed,
)

from runner.actions.base import Action, ActionContext, ActionResult, ResourceLink
from runner.errors import TemplateRenderError
from runner.spec.durations import format_duration
from runner.spec.model import Node
from runner.store.batch import Batch

NodeStatus = Literal["Succeeded", "Failed", "Cancelled"]


@dataclass(frozen=True, slots=True)
class NodeResult:
    """How a node ended, after all its attempts."""

    status: NodeStatus
    attempt: int
    outputs: Mapping[str, Any]
    error: Mapping[str, Any] | None = None
    resource_links: tuple[ResourceLink, ...] = ()
    reused: bool = False


def error_dict(node_id: str, error_type: str, message: str) -> dict[str, str]:
    """The `error` of SPEC §4's scope: {type, message, nodeId}."""
    return {"type": error_type, "message": message, "nodeId": node_id}


class NodeAttempts:
    """Runs a node's attempts; the first attempt's row is already written by the conductor."""

    def __init__(
        self,
        *,
        node: Node,
        action: Action,
        context: ActionContext,
        timeout: float,
        render: Callable[[], Any],
        new_batch: Callable[[], Batch],
        commit: Callable[[Batch], Awaitable[None]],
        validate: Callable[[Any], str | None],
        first_attempt: int = 1,
    ) -> None:
        self.node, self.action, self.context, self.timeout = node, action, context, timeout
        self.render, self.new_batch, self.commit = render, new_batch, commit
        self.validate = validate
        # A resumed node goes on numbering from its interrupted attempt, with a fresh budget.
        self.first_attempt = first_attempt
        self.attempt = first_attempt - 1

    async def run(self, parameters: Any) -> NodeResult:
        """Attempt until success, a permanent failure, or the retry policy gives up."""
        policy = self.node.retry
        state = {"parameters": parameters}

        async def once() -> ActionResult:
            self.attempt += 1
            if self.attempt > self.first_attempt:
                problem = await self._start_retry(state)
                if problem is not None:
                    return problem
            # Masked where it comes from: what the engine keeps and what it stores agree.
            return (await self._execute(state["parameters"])).masked()

        if policy.max_attempts <= 1:  # nothing to retry: no tenacity machinery per node
            return self._final(await once(), policy.max_attempts)
        wait = (
            wait_fixed(policy.initial_delay)
            if policy.backoff == "fixed"
            else wait_exponential(
                multiplier=policy.initial_delay, exp_base=policy.multiplier, max=policy.max_delay
            )
        )
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.max_attempts),
            wait=_honouring_retry_after(wait),
            retry=retry_if_result(lambda r: r.status == "RetriableFailure"),
            before_sleep=self._record_retry,
            retry_error_callback=lambda rs: rs.outcome.result() if rs.outcome else None,
            reraise=True,
        )
        result: ActionResult = await retrying(once)
        return self._final(result, policy.max_attempts)

    async def _start_retry(self, state: dict[str, Any]) -> ActionResult | None:
        """Write the next attempt's row (re-rendering first if the node asks for it)."""
        batch = self.new_batch()
        if self.node.retry.rerender_on_retry:
            try:
                state["parameters"] = self.render()
            except TemplateRenderError as exc:
                error = error_dict(self.node.id, "TemplateError", str(exc))
                batch.record_attempt(
                    self.node.id, self.attempt, self.node.action_type, "Failed", error=error
                )
                await self.commit(batch)
                return ActionResult.failed("TemplateError", str(exc))
        batch.start_attempt(self.node.id, self.attempt, self.node.action_type, state["parameters"])
        await self.commit(batch)
        return None

    async def _record_retry(self, retry_state: RetryCallState) -> None:
        result: ActionResult = retry_state.outcome.result()  # type: ignore[union-attr]
        assert result.error is not None
        batch = self.new_batch()
        error = error_dict(self.node.id, result.error.type, result.error.message)
        batch.finish_attempt(self.node.id, self.attempt, "RetriableFailure", error=error)
        delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
        batch.event("NodeRetrying", self.node.id, self.attempt, delaySeconds=delay, error=error)
        await self.commit(batch)

    async def _execute(self, parameters: Any) -> ActionResult:
        problem = self.validate(parameters)
        if problem is not None:
            return ActionResult.failed("InvalidParameters", problem)
        context = ActionContext(
            execution_id=self.context.execution_id,
            workflow_id=self.context.workflow_id,
            node_id=self.node.id,
            attempt=self.attempt,
            correlation_id=self.context.correlation_id,
            shared=self.context.shared,
        )
        try:
            async with asyncio.timeout(self.timeout):
                result = await self.action.execute(context, parameters)
        except TimeoutError:
            limit = format_duration(self.timeout)
            return ActionResult.failed(
                "Timeout", f"attempt {self.attempt} timed out after {limit}", transient=True
            )
        except (Exception, SystemExit) as exc:  # an action's bug fails its node, never the process
            return ActionResult.failed(type(exc).__name__, str(exc) or type(exc).__name__)
        return _checked(result)

    def _final(self, result: ActionResult, max_attempts: int) -> NodeResult:
        if result.status == "Succeeded":
            return NodeResult(
                "Succeeded", self.attempt, dict(result.outputs), None, result.resource_links
            )
        assert result.error is not None
        message = result.error.message
        tried = self.attempt - self.first_attempt + 1
        if result.status == "RetriableFailure" and max_attempts > 1:
            message = f"gave up after {tried} attempts: {message}"
        return NodeResult(
            "Failed", self.attempt, {}, error_dict(self.node.id, result.error.type, message)
        )


#: A server's Retry-After is honoured up to this long; a longer one waits this long.
MAX_RETRY_AFTER_SECONDS = 300.0


def _honouring_retry_after(policy_wait: Callable[[RetryCallState], float]) -> Any:
    """The policy's wait, or the failed attempt's `retry_after` when that is longer."""

    def wait(retry_state: RetryCallState) -> float:
        delay = policy_wait(retry_state)
        outcome = retry_state.outcome
        asked = None if outcome is None or outcome.failed else outcome.result().retry_after
        return max(delay, min(asked, MAX_RETRY_AFTER_SECONDS)) if asked else delay

    return wait


def _checked(result: Any) -> ActionResult:
    """An action's result, or a Failed one saying why it cannot be accepted."""
    if not isinstance(result, ActionResult):
        return ActionResult.failed(
            "InvalidResult", f"the action returned {type(result).__name__}, not an ActionResult"
        )
    if result.status not in ("Succeeded", "Failed", "RetriableFailure"):
        return ActionResult.failed("InvalidResult", f"unknown status {result.status!r}")
    if result.status != "Succeeded" and result.error is None:
        return ActionResult.failed("InvalidResult", "a failed result must carry an error")
    try:
        json.dumps(dict(result.outputs), allow_nan=False)
    except (TypeError, ValueError) as exc:
        return ActionResult.failed("InvalidResult", f"the outputs are not JSON data: {exc}")
    return result
