"""Running one node: its attempts, under a per-attempt timeout, retried by tenacity.

Only transient failures (`RetriableFailure`: timeouts, connection errors, HTTP 429/5xx, or the
action's own verdict) are retried, per the node's policy. Each attempt is its own row, written
when it starts and completed when it ends; the node's last attempt is completed by the conductor
in the same transaction that starts the next nodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
    wait_fixed,
)

from runner.actions.base import ActionContext, ActionResult, ResourceLink
from runner.actions.calls import ActionCall
from runner.errors import TemplateRenderError
from runner.spec import storable
from runner.spec.model import Node
from runner.store.batch import Batch

#: How a node ended after its attempts (a cancelled one has no result: its task gives None).
NodeStatus = Literal["Succeeded", "Failed"]


@dataclass(frozen=True, slots=True)
class NodeResult:
    """How a node ended, after all its attempts."""

    status: NodeStatus
    attempt: int
    outputs: Mapping[str, Any]
    error: Mapping[str, Any] | None = None
    resource_links: tuple[ResourceLink, ...] = ()
    reused: bool = False


def error_dict(error_type: str, message: str, node_id: str | None = None) -> dict[str, Any]:
    """The `error` of SPEC §4's scope: {type, message, nodeId} (None: the execution's own).
    A NUL or lone surrogate the message quotes (an exception's text, a response body) is
    written as its escape, so the error can always be recorded."""
    return {
        "type": storable.escaped(error_type),
        "message": storable.escaped(message),
        "nodeId": node_id,
    }


class NodeAttempts:
    """Runs a node's attempts; the first attempt's row is already written by the conductor."""

    def __init__(
        self,
        *,
        node: Node,
        call: ActionCall,
        context: ActionContext,
        render: Callable[[], Any],
        new_batch: Callable[[], Batch],
        commit: Callable[[Batch], Awaitable[None]],
        first_attempt: int = 1,
    ) -> None:
        self.node, self.call, self.context = node, call, context
        self.render, self.new_batch, self.commit = render, new_batch, commit
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
            context = dataclasses.replace(self.context, attempt=self.attempt)
            with structlog.contextvars.bound_contextvars(attempt=self.attempt):
                return await self.call(context, state["parameters"])

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
                error = error_dict("TemplateError", str(exc), self.node.id)
                batch.record_attempt(
                    self.node.id, self.attempt, self.node.action_type, "Failed", error=error
                )
                await self.commit(batch)
                return ActionResult.failed("TemplateError", str(exc))
        batch.start_attempt(self.node.id, self.attempt, self.node.action_type, state["parameters"])
        await self.commit(batch)
        return None

    async def _record_retry(self, retry_state: RetryCallState) -> None:
        result: ActionResult = retry_state.outcome.result()  # type: ignore[union-attr]  # set before sleeping
        assert result.error is not None
        batch = self.new_batch()
        error = error_dict(result.error.type, result.error.message, self.node.id)
        batch.finish_attempt(self.node.id, self.attempt, "RetriableFailure", error=error)
        delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
        batch.event("NodeRetrying", self.node.id, self.attempt, delaySeconds=delay, error=error)
        await self.commit(batch)

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
            "Failed", self.attempt, {}, error_dict(result.error.type, message, self.node.id)
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
