"""One execution being conducted: the async loop that does the I/O the state machine decides.

`ExecutionState` (pure) says which nodes start, which are skipped or cancelled and when the
execution is over; this loop renders parameters, runs attempts as tasks (at most
`maxParallelActions` at once, and at most the worker's node slots), evaluates conditions, and
writes every transition to Postgres in one transaction behind the lease fence: the node that
finished, the route decisions, the nodes that start next.

A run ends one of four ways: the execution's outcome; `PARKED` (only subworkflow children are
awaited: the lease and the worker slot are given up until a child ends); `RELEASED` (the
worker is draining: running nodes finished, nothing new started, another worker resumes); or an
exception (LeaseLost: another worker owns it now, so nothing more is written).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from runner.actions import calls, registry
from runner.actions.base import ActionContext
from runner.actions.calls import Wrapper
from runner.actions.services import ActionServices
from runner.engine import idempotency, subworkflows
from runner.engine.attempts import NodeAttempts, NodeResult, error_dict
from runner.engine.record import Recorded
from runner.engine.scope import ExecutionScope
from runner.engine.signals import PARKED, RELEASED, Observer, Signals
from runner.engine.state import ExecutionState, Step
from runner.errors import (
    ConditionError,
    DatabaseUnavailable,
    LeaseLost,
    StoreError,
    TemplateRenderError,
)
from runner.plan.compiler import Plan, Route
from runner.settings import Settings
from runner.spec.durations import format_duration
from runner.spec.model import Node
from runner.store import batch as batch_store
from runner.store.batch import Batch, Lease
from runner.store.database import Database
from runner.store.executions import ExecutionRow


@dataclass(frozen=True, slots=True)
class _Aborted:
    """A node's task could not go on because the database could not (or the lease is lost):
    the run stops, writing nothing more; a later claim resumes the execution."""

    error: StoreError


#: How a node ends: its result, a child to wait for, or None (cancelled).
_Finished = NodeResult | subworkflows.Waiting | None
#: How a node's task ends: as a node ends, or aborted.
_Ended = _Finished | _Aborted


class ExecutionRun:
    """Conducts one execution from Pending (or Running, when resumed) to its end or a pause."""

    def __init__(
        self,
        db: Database,
        row: ExecutionRow,
        plan: Plan,
        settings: Settings,
        *,
        signals: Signals,
        services: ActionServices,
        wrappers: Sequence[Wrapper] = (),
        lease: Lease,
        record: Recorded | None = None,
        observer: Observer | None = None,
        children: subworkflows.Children | None = None,
        node_slots: asyncio.Semaphore | None = None,
    ) -> None:
        self.db, self.row, self.plan, self.settings = db, row, plan, settings
        self.workflow = plan.workflow
        self.signals, self.lease, self.record = signals, lease, record
        self.services, self.wrappers = services, wrappers
        self.observer, self.children = observer, children
        self.node_slots = node_slots or asyncio.Semaphore(10_000)
        self.state = ExecutionState(plan)
        self.done: asyncio.Queue[tuple[str, _Ended]] = asyncio.Queue()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.waiting: deque[str] = deque()
        self.to_spawn: list[tuple[str, Any]] = []
        self.attempt_of: dict[str, int] = {}
        self.awaiting: dict[str, ExecutionRow] = {}  # subworkflow node -> child it waits for
        self.limit = self.workflow.options.max_parallel_actions or settings.max_parallel_actions
        self.keys: dict[str, Any] = {}
        self.error: dict[str, Any] | None = None
        self.outcome: str | None = None
        self.stopping = False  # cancelled or timed out: only wait for running nodes to end
        self.draining = False
        self.commit_lock = asyncio.Lock()
        # The execution's identity is bound around the whole run by the conductor
        # (`conductor.log_context`); lines about a node add nodeId and attempt.
        self.log = structlog.get_logger(__name__)
        self.scope = ExecutionScope(row, settings, services.secrets)

    # -- the loop -------------------------------------------------------------------------------

    async def conduct(self) -> str:
        """Run to the end, a park or a release; returns the outcome, PARKED or RELEASED."""
        batch = self.batch()
        if self.row.status == "Pending":
            self.begin(batch)
        else:
            self.resume(batch)
        await self.commit(batch)
        self.spawn()
        try:
            while self.outcome is None:
                if not self.tasks and not self.to_spawn:
                    paused = await self.pause_if_idle()
                    if paused is not None:
                        return paused
                    if self.outcome is not None:
                        break
                batch = self.batch()
                await self.next_transition(batch)
                await self.commit(batch)
                self.spawn()
        finally:
            for task in self.tasks.values():
                task.cancel()
        return self.outcome

    def begin(self, batch: Batch) -> None:
        try:
            variables = self.scope.render_vars(self.workflow.vars)
        except TemplateRenderError as exc:
            self.error = error_dict("TemplateError", str(exc))
            self.outcome = "Failed"
            batch.finish_execution(
                "Failed", error=self.error, parent_execution_id=self.row.parent_execution_id
            )
            self.notify("ExecutionFailed", None, {"error": self.error})
            return
        batch.start_execution(variables)
        self.scope.execution["startedAt"] = datetime.now(UTC).isoformat()
        self.log.info("execution started")
        self.notify("ExecutionStarted", None, {})
        self.advance(self.state.begin(), batch)

    def resume(self, batch: Batch) -> None:
        """Rebuild the state from the record and carry on where the last worker stopped."""
        record = self.record or Recorded()
        cancelled = self.row.cancel_requested_at is not None and record.failed is None
        self.state, step = ExecutionState.restore(
            self.plan, record.finished, record.decisions, failed=record.failed, cancelled=cancelled
        )
        self.stopping = record.failed is not None or cancelled
        self.scope.restore(record.entries)
        if self.state.unhandled is not None:
            self.error = dict(self.scope.nodes.get(self.state.unhandled, {}).get("error") or {})
            self.scope.execution["error"] = self.error
        elif record.failed is not None:
            self.error = error_dict("Failed", record.failed)
        self.log.info("execution resumed", inFlight=sorted(record.in_flight))
        batch.event("ExecutionResumed", inFlight=sorted(record.in_flight))
        for node_id, attempt in record.in_flight.items():
            self.attempt_of[node_id] = attempt
            child = record.children.get(node_id)
            if self.workflow.node(node_id).node_type == "subworkflow" and child is not None:
                # The child runs on its own: keep waiting for it, do not start a second one.
                if node_id in step.start:
                    self.state.node_started(node_id)
                self.awaiting[node_id] = child
            elif node_id in step.start:
                # Interrupted with its worker: it is attempted again, as its next attempt.
                lost = error_dict("WorkerLost", "the worker running this attempt stopped")
                batch.finish_attempt(node_id, attempt, "RetriableFailure", error=lost)
        step = Step(
            start=tuple(n for n in step.start if n not in self.awaiting),
            skipped=step.skipped,
            cancel=step.cancel,
            outcome=step.outcome,
        )
        self.advance(step, batch)
        if self.signals.cancel.is_set() and not self.stopping and self.outcome is None:
            self.stop_for_cancel(batch)

    async def pause_if_idle(self) -> str | None:
        """Nothing runs here: finish waits whose children ended, or park, or release."""
        if self.awaiting:
            batch = self.batch()
            if await self.collect_children(batch):
                await self.commit(batch)
                self.spawn()
                return None
            if self.outcome is None and not self.waiting:
                batch.park()
                await self.commit(batch)
                self.log.info("execution parked", awaiting=sorted(self.awaiting))
                return PARKED
        if self.draining and self.outcome is None:
            return RELEASED
        return None

    async def next_transition(self, batch: Batch) -> None:
        """Wait for the next node to end (or a cancel, wake, drain or the deadline) and decide."""
        getter = asyncio.ensure_future(self.done.get())
        waits: set[asyncio.Future[Any]] = {getter}
        signal_waits = {"wake": asyncio.ensure_future(self.signals.wake.wait())}
        if not self.draining:
            # Once draining, the event stays set: waiting on it again would return at once,
            # and the loop would spin on the CPU until the running nodes end.
            signal_waits["drain"] = asyncio.ensure_future(self.signals.drain.wait())
        if not self.stopping:
            signal_waits["cancel"] = asyncio.ensure_future(self.signals.cancel.wait())
        waits.update(signal_waits.values())
        remaining = None if self.stopping else self.remaining()
        try:
            finished, _ = await asyncio.wait(
                waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for future in signal_waits.values():
                future.cancel()
        if getter in finished:
            node_id, result = getter.result()
            self.tasks.pop(node_id, None)
            if isinstance(result, _Aborted):
                raise result.error
            self.finish_node(node_id, result, batch)
            return
        getter.cancel()
        if signal_waits["wake"] in finished:
            self.signals.wake.clear()
            await self.collect_children(batch)
        elif "drain" in signal_waits and signal_waits["drain"] in finished:
            self.draining = True
            self.log.info("execution draining")
        elif "cancel" in signal_waits and signal_waits["cancel"] in finished:
            self.stop_for_cancel(batch)
        elif not finished:
            self.stopping = True
            self.waiting.clear()
            limit = format_duration(self.workflow.options.timeout or 0)
            message = f"execution exceeded its timeout of {limit}"
            self.error = error_dict("Timeout", message)
            batch.event("ExecutionStopping", reason=message)
            self.advance(self.state.fail(message), batch)

    def remaining(self) -> float | None:
        """Seconds left of the execution's timeout, counted from when it first started."""
        timeout = self.workflow.options.timeout
        if timeout is None:
            return None
        started = self.row.started_at or datetime.now(UTC)
        if self.row.status == "Pending":
            started = datetime.fromisoformat(self.scope.execution["startedAt"])
        return max(timeout - (datetime.now(UTC) - started).total_seconds(), 0.0)

    def stop_for_cancel(self, batch: Batch) -> None:
        self.log.info("execution cancel requested")
        self.stopping = True
        self.waiting.clear()
        batch.event("ExecutionCancelling")
        self.advance(self.state.cancel(), batch)

    def finish_node(self, node_id: str, result: _Finished, batch: Batch) -> None:
        """Record a node's end, route from it, and start what became ready."""
        attempt = self.attempt_of[node_id]
        if isinstance(result, subworkflows.Waiting):
            self.awaiting[node_id] = result.child
            batch.event("NodeWaiting", node_id, attempt, child=str(result.child.execution_id))
            return
        if result is None:  # cancelled (fail-fast, cancel, timeout)
            batch.finish_attempt(node_id, attempt, "Cancelled")
            batch.event("NodeCancelled", node_id, attempt)
            self.notify("NodeCancelled", node_id, {"attempt": attempt})
            self.advance(self.state.node_cancelled(node_id), batch)
            return
        # Fenced by status = 'Running': a no-op for a row already completed (reuse, refusal).
        batch.finish_attempt(node_id, attempt, result.status, result.outputs, result.error)
        entry = {
            "status": result.status,
            "outputs": dict(result.outputs),
            "error": result.error,
            "attempts": result.attempt,
        }
        self.scope.nodes[node_id] = entry
        if result.status == "Succeeded" and not result.reused:
            idempotency.remember(batch, self.row, node_id, result, self.keys.get(node_id))
        try:
            step = self.state.node_finished(
                node_id, result.status, functools.partial(self.scope.holds, entry)
            )
        except ConditionError as exc:
            self.error = error_dict("ConditionError", str(exc), node_id)
            reason = self.error["message"]  # escaped: a condition's message may quote anything
            self.waiting.clear()
            self.stopping = True
            batch.event("ExecutionStopping", reason=reason)
            stop = self.state.fail(reason)
            # The failed routing left the state unchanged: record the result now (after fail
            # it routes nothing), so the node is not left running.
            after = self.state.node_finished(node_id, result.status, _never)
            batch.event(f"Node{result.status}", node_id, attempt, error=result.error)
            self.notify(f"Node{result.status}", node_id, entry)
            self.advance(stop, batch)
            self.advance(after, batch)
            return
        routes = [list(d) for d in step.decisions]
        batch.event(f"Node{result.status}", node_id, attempt, routes=routes, error=result.error)
        # A success is routine (debug: the events record it); anything else is worth a line.
        log = self.log.debug if result.status == "Succeeded" else self.log.info
        log("node finished", nodeId=node_id, attempt=attempt, status=result.status)
        self.notify(f"Node{result.status}", node_id, entry)
        if self.state.unhandled == node_id:
            self.error = dict(result.error or error_dict("Failed", "node failed", node_id))
            self.scope.execution["error"] = self.error
            self.waiting.clear()  # fail fast: ready nodes that have not started never will
        self.advance(step, batch)

    def advance(self, step: Step, batch: Batch) -> None:
        """Carry out a Step: record skips, cancel, start what is ready (as slots allow)."""
        for node_id in step.skipped:
            batch.record_attempt(node_id, 0, self.workflow.node(node_id).action_type, "Skipped")
            batch.event("NodeSkipped", node_id)
            self.notify("NodeSkipped", node_id, {})
        for node_id in step.cancel:
            task = self.tasks.get(node_id)
            if task is not None:
                task.cancel()
            elif node_id in self.awaiting:
                self.cancel_child(self.awaiting.pop(node_id))
                self.finish_node(node_id, None, batch)
            elif node_id in self.attempt_of and self.state.statuses[node_id] == "Running":
                self.finish_node(node_id, None, batch)  # in flight when its worker died
        self.waiting.extend(step.start)
        if step.outcome is not None and self.outcome is None:
            self.outcome = step.outcome
            self.finish_execution(step.outcome, batch)
        self.start_waiting(batch)

    def start_waiting(self, batch: Batch) -> None:
        """Start waiting nodes while slots are free (a node may also end at once, e.g. when
        its parameters do not render: that recursion is bounded by the number of nodes)."""
        while self.waiting and len(self.tasks) + len(self.to_spawn) < self.limit:
            if self.outcome is not None:
                self.waiting.clear()
                return
            if self.draining:
                return  # whoever resumes the execution starts them
            node_id = self.waiting.popleft()
            if not self.state.is_ready(node_id):
                continue  # the execution is stopping: a queued node that was ready no longer is
            self.state.node_started(node_id)
            immediate = self.prepare(node_id, batch)
            if immediate is not None:
                self.finish_node(node_id, immediate, batch)

    def prepare(self, node_id: str, batch: Batch) -> NodeResult | None:
        """Render and write the first attempt; a result when the node ends without running."""
        node = self.workflow.node(node_id)
        attempt = self.attempt_of.get(node_id, 0) + 1
        self.attempt_of[node_id] = attempt
        names = self.scope.names()
        where = f"node `{node_id}`"
        try:
            params = self.scope.render(node.parameters, where, "parameters", names)
            key = None
            if node.idempotency_key is not None:
                key = self.scope.render(node.idempotency_key, where, "idempotencyKey", names)
        except TemplateRenderError as exc:
            error = error_dict("TemplateError", str(exc), node_id)
            batch.record_attempt(node_id, attempt, node.action_type, "Failed", error=error)
            self.notify("NodeStarted", node_id, {"attempt": attempt})
            return NodeResult("Failed", attempt, {}, error)
        self.keys[node_id] = key
        batch.start_attempt(node_id, attempt, node.action_type, params)
        self.notify("NodeStarted", node_id, {"attempt": attempt})
        self.to_spawn.append((node_id, params))
        return None

    def spawn(self) -> None:
        """Start the tasks of nodes whose attempt row is now committed."""
        for node_id, params in self.to_spawn:
            self.tasks[node_id] = asyncio.create_task(self.run_node(node_id, params))
        self.to_spawn.clear()

    async def run_node(self, node_id: str, params: Any) -> None:
        # Always a task of its own (`spawn`), with its own copy of the execution's log
        # context: what its action, and httpx under it, logs also names the node.
        structlog.contextvars.bind_contextvars(nodeId=node_id)
        node = self.workflow.node(node_id)
        key = self.keys.get(node_id)
        result: _Ended
        try:
            if key is not None and (reused := await self.reuse(node_id, key)) is not None:
                result = reused
            elif node.node_type == "subworkflow":
                if self.children is None:
                    raise RuntimeError("subworkflows need a conductor")
                result = await subworkflows.start(
                    self.children, self.row, node, params, attempt=self.attempt_of[node_id],
                    limit=self.workflow.options.max_nesting_depth,
                )  # fmt: skip
            else:
                async with self.node_slots:
                    result = await self.run_action(node, params)
        except asyncio.CancelledError:
            result = None
        except (DatabaseUnavailable, LeaseLost) as exc:  # not the node's failure
            result = _Aborted(exc)
        except Exception as exc:  # the registry failed, or a bug: the node fails, not us
            error = error_dict(type(exc).__name__, str(exc), node_id)
            result = NodeResult("Failed", self.attempt_of[node_id], {}, error)
        await self.done.put((node_id, result))

    async def run_action(self, node: Node, params: Any) -> NodeResult:
        options, row = self.workflow.options, self.row
        timeout = node.timeout or options.default_action_timeout or self.settings.action_timeout
        context = ActionContext(
            str(row.execution_id), row.workflow_id, node.id,
            correlation_id=row.correlation_id, services=self.services,
            action_type=node.action_type,
        )  # fmt: skip
        runner = NodeAttempts(
            node=node,
            call=calls.for_action(registry.get(node.action_type or ""), timeout, self.wrappers),
            context=context,
            render=functools.partial(
                self.scope.render, node.parameters, f"node `{node.id}`", "parameters"
            ),
            new_batch=self.batch,
            commit=self.commit,
            first_attempt=self.attempt_of[node.id],
        )
        try:
            return await runner.run(params)
        finally:
            self.attempt_of[node.id] = max(runner.attempt, self.attempt_of[node.id])

    # -- subworkflows ---------------------------------------------------------------------------

    async def collect_children(self, batch: Batch) -> bool:
        """Finish the subworkflow nodes whose child ended; True if any did."""
        if not self.awaiting:
            return False
        ended = await self.db.retrying(
            lambda: subworkflows.ended(self.db, self.awaiting),
            seconds=self.settings.transition_retry_seconds,
        )
        for node_id, final in ended.items():
            del self.awaiting[node_id]
            node, attempt = self.workflow.node(node_id), self.attempt_of[node_id]
            self.finish_node(node_id, subworkflows.result(node, final, attempt), batch)
        return bool(ended)

    def cancel_child(self, child: ExecutionRow) -> None:
        """Cancel a child this execution no longer waits for (it cancels its own children)."""
        if self.children is not None:
            subworkflows.cancel(self.children, child)

    # -- idempotency ----------------------------------------------------------------------------

    async def reuse(self, node_id: str, key: Any) -> NodeResult | None:
        """The stored result of an earlier run with this key, recorded as reused; or None."""
        outputs = await self.db.retrying(
            lambda: idempotency.stored_outputs(self.db, self.row, node_id, key),
            seconds=self.settings.transition_retry_seconds,
        )
        if outputs is None:
            return None
        batch = self.batch()
        result = idempotency.reuse(batch, node_id, self.attempt_of[node_id], key, outputs)
        await self.commit(batch)
        return result

    # -- the end --------------------------------------------------------------------------------

    def finish_execution(self, status: str, batch: Batch) -> None:
        outputs = None
        if status == "Succeeded" and self.workflow.outputs:
            try:
                outputs = self.scope.render(self.workflow.outputs, "workflow outputs", "outputs")
            except TemplateRenderError as exc:
                status = "Failed"
                self.error = error_dict("TemplateError", str(exc))
        if status == "Failed" and self.error is None:
            self.error = error_dict("Failed", "the execution failed")
        error = self.error if status == "Failed" else None
        if status == "Cancelled":
            error = error_dict("Cancelled", "the execution was cancelled")
        batch.finish_execution(
            status, outputs, error, parent_execution_id=self.row.parent_execution_id
        )
        self.log.info("execution finished", status=status)
        self.notify(f"Execution{status}", None, {"outputs": outputs, "error": error})

    # -- plumbing -------------------------------------------------------------------------------

    def batch(self) -> Batch:
        return Batch(self.row.tenant, self.row.execution_id, lease=self.lease)

    async def commit(self, batch: Batch) -> None:
        """Write a transition behind the lease fence; sent again on a fresh connection while the
        database is unavailable (a repeat of one that did commit changes nothing)."""
        # The lock keeps a run's own transactions (the loop's and its retrying nodes') in the
        # order they were made, retries included.
        async with self.commit_lock:
            await self.db.retrying(
                functools.partial(self._send, batch),
                seconds=self.settings.transition_retry_seconds,
            )

    async def _send(self, batch: Batch) -> None:
        # A pooled connection per transition, not one held for the whole run: a worker runs
        # far more executions at once than it keeps connections.
        async with self.db.connection(autocommit=True) as conn:
            await batch_store.commit(conn, batch)

    def notify(self, kind: str, node_id: str | None, details: Mapping[str, Any]) -> None:
        if self.observer is not None:
            with contextlib.suppress(Exception):  # a display must never break an execution
                self.observer(kind, node_id, details)


def _never(route: Route) -> bool:
    raise AssertionError(f"no condition is evaluated after the execution failed ({route})")
