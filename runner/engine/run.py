"""One execution being conducted: the async loop that does the I/O the state machine decides.

`ExecutionState` (pure) says which nodes start, which are skipped or cancelled and when the
execution is over; this loop renders parameters, runs attempts as tasks (at most
`maxParallelActions` at once), evaluates conditions, and writes every transition to Postgres in
one transaction: the node that finished, the route decisions, the nodes that start next.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog
from psycopg import AsyncConnection

from runner.actions import registry
from runner.actions.base import ActionContext
from runner.engine import conditions, templates
from runner.engine.attempts import NodeAttempts, NodeResult, error_dict
from runner.engine.state import ExecutionState, Step
from runner.errors import ConditionError, DwfError, TemplateRenderError
from runner.plan.compiler import Plan, Route
from runner.settings import Settings
from runner.spec.durations import format_duration
from runner.spec.model import Node
from runner.store import executions
from runner.store.executions import Batch, ExecutionRow

#: Called with (event kind, node id or None, details) as the execution progresses (`dwf run`).
Observer = Callable[[str, str | None, Mapping[str, Any]], None]
#: How long a cancelled parent waits for its child to acknowledge the cancel.
CHILD_CANCEL_GRACE_SECONDS = 5.0


class Children(Protocol):
    """What a run needs to start, run and cancel subworkflow executions (the Conductor)."""

    async def start_child(
        self, parent: ExecutionRow, node: Node, parameters: Mapping[str, Any]
    ) -> ExecutionRow: ...

    async def run(self, tenant: str, execution_id: uuid.UUID) -> ExecutionRow: ...

    async def cancel(self, tenant: str, execution_id: uuid.UUID) -> ExecutionRow: ...


_SYSTEM = "dataworkflows"  # the `system` of links that only remember an idempotent node's outputs


class ExecutionRun:
    """Conducts one execution from Pending (or Running, on resume) to its end."""

    def __init__(
        self,
        conn: AsyncConnection,
        row: ExecutionRow,
        plan: Plan,
        settings: Settings,
        *,
        cancel_event: asyncio.Event,
        observer: Observer | None = None,
        children: Children | None = None,
    ) -> None:
        self.conn, self.row, self.plan, self.settings = conn, row, plan, settings
        self.workflow = plan.workflow
        self.cancel_event = cancel_event
        self.observer = observer
        self.children = children
        self.background: set[asyncio.Task[Any]] = set()
        self.state = ExecutionState(plan)
        self.done: asyncio.Queue[tuple[str, NodeResult | None]] = asyncio.Queue()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.waiting: deque[str] = deque()
        self.to_spawn: list[tuple[str, Any]] = []
        self.attempt_of: dict[str, int] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.limit = self.workflow.options.max_parallel_actions or settings.max_parallel_actions
        self.keys: dict[str, Any] = {}
        self.error: dict[str, Any] | None = None
        self.outcome: str | None = None
        self.stopping = False  # cancelled or timed out: only wait for running nodes to end
        self.commit_lock = asyncio.Lock()
        self.log = structlog.get_logger("runner.engine").bind(
            executionId=str(row.execution_id),
            workflowId=row.workflow_id,
            version=row.workflow_version,
            correlationId=row.correlation_id,
        )
        self.execution_scope: dict[str, Any] = {
            "id": str(row.execution_id),
            "workflowId": row.workflow_id,
            "workflowVersion": row.workflow_version,
            "requestId": row.request_id,
            "correlationId": row.correlation_id,
            "principal": row.principal,
            "tenant": row.tenant,
            "startedAt": None,
            "error": None,
        }
        self.vars: Any = {}

    # -- the loop -------------------------------------------------------------------------------

    async def conduct(self) -> str:
        """Run to the end; returns the final status."""
        batch = self.batch()
        self.begin(batch)
        await self.commit(batch)
        self.spawn()
        deadline = self.workflow.options.timeout
        started = time.monotonic()
        cancel_wait = asyncio.ensure_future(self.cancel_event.wait())
        try:
            while self.outcome is None:
                remaining = None if deadline is None else deadline - (time.monotonic() - started)
                batch = self.batch()
                await self.next_transition(batch, remaining, cancel_wait)
                await self.commit(batch)
                self.spawn()
        finally:
            cancel_wait.cancel()
            for task in self.tasks.values():
                task.cancel()
        return self.outcome

    def begin(self, batch: Batch) -> None:
        scope = {"trigger": self.row.trigger_payload, "event": self.row.event}
        scope["execution"] = self.execution_scope
        try:
            self.vars = self.render(self.workflow.vars, scope, "workflow vars", "vars")
        except TemplateRenderError as exc:
            self.error = {"type": "TemplateError", "message": str(exc), "nodeId": None}
            self.outcome = "Failed"
            batch.finish_execution("Failed", error=self.error)
            self.notify("ExecutionFailed", None, {"error": self.error})
            return
        batch.start_execution(self.vars)
        self.execution_scope["startedAt"] = _now_iso()
        self.log.info("execution started")
        self.notify("ExecutionStarted", None, {})
        self.advance(self.state.begin(), batch)

    async def next_transition(
        self, batch: Batch, remaining: float | None, cancel_wait: asyncio.Future[Any]
    ) -> None:
        """Wait for the next node to end (or a cancel, or the deadline) and decide what follows."""
        getter = asyncio.ensure_future(self.done.get())
        waits: set[asyncio.Future[Any]] = {getter}
        timeout = None
        if not self.stopping:
            waits.add(cancel_wait)
            timeout = None if remaining is None else max(remaining, 0.0)
        finished, _ = await asyncio.wait(
            waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in finished:
            node_id, result = getter.result()
            self.tasks.pop(node_id, None)
            self.finish_node(node_id, result, batch)
            return
        getter.cancel()
        self.stopping = True
        self.waiting.clear()
        if cancel_wait in finished:
            self.log.info("execution cancel requested")
            self.advance(self.state.cancel(), batch)
            return
        limit = format_duration(self.workflow.options.timeout or 0)
        message = f"execution exceeded its timeout of {limit}"
        self.error = {"type": "Timeout", "message": message, "nodeId": None}
        self.advance(self.state.fail(message), batch)

    def finish_node(self, node_id: str, result: NodeResult | None, batch: Batch) -> None:
        """Record a node's end, route from it, and start what became ready."""
        attempt = self.attempt_of[node_id]
        node = self.workflow.node(node_id)
        if result is None:  # the task was cancelled (fail-fast, cancel, timeout)
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
        self.nodes[node_id] = entry
        if result.status == "Succeeded" and node.idempotency_key is not None:
            self.remember(node_id, attempt, result, batch)
        try:
            step = self.state.node_finished(
                node_id, result.status, functools.partial(self.holds, entry)
            )
        except ConditionError as exc:
            self.error = error_dict(node_id, "ConditionError", str(exc))
            self.waiting.clear()
            stop = self.state.fail(str(exc))
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
        self.log.info("node finished", nodeId=node_id, attempt=attempt, status=result.status)
        self.notify(f"Node{result.status}", node_id, entry)
        if self.state.unhandled == node_id:
            self.error = dict(result.error or error_dict(node_id, "Failed", "node failed"))
            self.execution_scope["error"] = self.error
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
        self.attempt_of[node_id] = 1
        scope = self.scope()
        try:
            params = self.render(node.parameters, scope, f"node `{node_id}`", "parameters")
            key = None
            if node.idempotency_key is not None:
                key = self.render(
                    node.idempotency_key, scope, f"node `{node_id}`", "idempotencyKey"
                )
        except TemplateRenderError as exc:
            error = error_dict(node_id, "TemplateError", str(exc))
            batch.record_attempt(node_id, 1, node.action_type, "Failed", error=error)
            self.notify("NodeStarted", node_id, {"attempt": 1})
            return NodeResult("Failed", 1, {}, error)
        self.keys[node_id] = key
        batch.start_attempt(node_id, 1, node.action_type, params)
        self.notify("NodeStarted", node_id, {"attempt": 1})
        self.to_spawn.append((node_id, params))
        return None

    def spawn(self) -> None:
        """Start the tasks of nodes whose first attempt row is now committed."""
        for node_id, params in self.to_spawn:
            self.tasks[node_id] = asyncio.create_task(self.run_node(node_id, params))
        self.to_spawn.clear()

    async def run_node(self, node_id: str, params: Any) -> None:
        node = self.workflow.node(node_id)
        key = self.keys.get(node_id)
        try:
            if key is not None:
                reused = await self.reusable(node_id, key)
                if reused is not None:
                    await self.done.put((node_id, reused))
                    return
            if node.node_type == "subworkflow":
                await self.done.put((node_id, await self.run_subworkflow(node, params)))
                return
            action_cls = registry.get(node.action_type or "")
            runner = NodeAttempts(
                node=node,
                action=action_cls(),
                context=ActionContext(
                    execution_id=str(self.row.execution_id),
                    workflow_id=self.row.workflow_id,
                    node_id=node_id,
                    correlation_id=self.row.correlation_id,
                ),
                timeout=node.timeout
                or self.workflow.options.default_action_timeout
                or self.settings.action_timeout,
                render=functools.partial(self.render_parameters, node_id),
                new_batch=self.batch,
                commit=self.commit,
                validate=functools.partial(_validate, action_cls.parameters_schema),
            )
            try:
                result = await runner.run(params)
            finally:
                self.attempt_of[node_id] = max(runner.attempt, 1)
        except asyncio.CancelledError:
            await self.done.put((node_id, None))
            return
        except Exception as exc:  # the registry or the database failed: the node fails, not us
            error = error_dict(node_id, type(exc).__name__, str(exc))
            result = NodeResult("Failed", self.attempt_of[node_id], {}, error)
        await self.done.put((node_id, result))

    async def run_subworkflow(self, node: Node, params: Any) -> NodeResult:
        """Start the child; with waitForCompletion its outcome and outputs are the node's."""
        if self.children is None:
            raise RuntimeError("subworkflows need a conductor")
        depth, limit = self.row.depth + 1, self.workflow.options.max_nesting_depth
        if depth > limit:
            message = (
                f"subworkflow `{node.workflow_id}` would nest {depth} deep; the limit is {limit}"
            )
            return NodeResult("Failed", 1, {}, error_dict(node.id, "NestingTooDeep", message))
        try:
            child = await self.children.start_child(self.row, node, params)
        except DwfError as exc:
            return NodeResult("Failed", 1, {}, error_dict(node.id, type(exc).__name__, str(exc)))
        child_id = str(child.execution_id)
        task = asyncio.create_task(self.children.run(child.tenant, child.execution_id))
        if not node.wait_for_completion:
            self.background.add(task)  # a strong reference until it ends
            task.add_done_callback(self.background.discard)
            return NodeResult("Succeeded", 1, {"executionId": child_id})
        try:
            final = await asyncio.shield(task)
        except asyncio.CancelledError:
            # The parent stops waiting: the child is cancelled too, and given a moment to end.
            with contextlib.suppress(DwfError):
                await self.children.cancel(child.tenant, child.execution_id)
            await asyncio.wait({task}, timeout=CHILD_CANCEL_GRACE_SECONDS)
            raise
        outputs = {"executionId": child_id, "status": final.status, "outputs": final.outputs}
        if final.status == "Succeeded":
            return NodeResult("Succeeded", 1, outputs)
        cause = (final.error or {}).get("message", final.status)
        message = f"subworkflow `{node.workflow_id}` ({child_id}) ended {final.status}: {cause}"
        return NodeResult("Failed", 1, outputs, error_dict(node.id, "SubworkflowFailed", message))

    # -- expressions ----------------------------------------------------------------------------

    def scope(self) -> dict[str, Any]:
        return {
            "trigger": self.row.trigger_payload,
            "event": self.row.event,
            "vars": self.vars,
            "nodes": self.nodes,
            "execution": self.execution_scope,
        }

    def render_parameters(self, node_id: str) -> Any:
        node = self.workflow.node(node_id)
        return self.render(node.parameters, self.scope(), f"node `{node_id}`", "parameters")

    def render(self, value: Any, scope: Mapping[str, Any], where: str, path: str) -> Any:
        """Render templates in `value` under the server's size cap."""
        return templates.render_value(
            value, scope, where=where, path=path, max_bytes=self.settings.max_rendered_bytes
        )

    def holds(self, entry: Mapping[str, Any], route: Route) -> bool:
        """Whether a route's condition holds for the entry of the node it leaves."""
        assert route.condition is not None
        scope = self.scope()
        scope["result"] = entry
        where = f"edge {route.source} -> {route.target}"
        return conditions.evaluate(
            route.condition,
            scope,
            where=where,
            time_limit=self.settings.condition_time_limit,
            memory_limit=self.settings.condition_memory_limit,
        )

    # -- idempotency ----------------------------------------------------------------------------

    async def reusable(self, node_id: str, key: Any) -> NodeResult | None:
        async with self.commit_lock:
            outputs = await executions.reusable_outputs(
                self.conn, self.row.tenant, self.row.workflow_id, node_id, str(key)
            )
            await self.conn.commit()
        if outputs is None:
            return None
        batch = self.batch()
        batch.finish_attempt(node_id, 1, "Succeeded", outputs)
        # Mark the row reused: the action did not run again.
        batch.statements.append(
            (
                "UPDATE action_executions SET reused = true"
                " WHERE execution_id = %s AND node_id = %s AND attempt = 1",
                (self.row.execution_id, node_id),
            )
        )
        batch.event("NodeReused", node_id, 1, idempotencyKey=str(key))
        await self.commit(batch)
        return NodeResult("Succeeded", 1, outputs, reused=True)

    def remember(self, node_id: str, attempt: int, result: NodeResult, batch: Batch) -> None:
        """Store resource links (or one synthetic link) so a rerun with the key reuses outputs."""
        key = str(self.keys.get(node_id))
        links = result.resource_links or ()
        common = {"workflow_id": self.row.workflow_id, "node_id": node_id, "attempt": attempt}
        if not links:
            batch.link(
                **common,
                idempotency_key=key,
                system=_SYSTEM,
                resource_type="node-result",
                external_id=f"{self.row.execution_id}/{node_id}",
                url=None,
                outputs=dict(result.outputs),
            )
        for link in links:
            batch.link(
                **common,
                idempotency_key=key,
                system=link.system,
                resource_type=link.resource_type,
                external_id=link.external_id,
                url=link.url,
                outputs=dict(result.outputs),
            )

    # -- the end --------------------------------------------------------------------------------

    def finish_execution(self, status: str, batch: Batch) -> None:
        outputs = None
        if status == "Succeeded" and self.workflow.outputs:
            try:
                outputs = self.render(
                    self.workflow.outputs, self.scope(), "workflow outputs", "outputs"
                )
            except TemplateRenderError as exc:
                status = "Failed"
                self.error = {"type": "TemplateError", "message": str(exc), "nodeId": None}
        if status == "Failed" and self.error is None:
            self.error = {"type": "Failed", "message": "the execution failed", "nodeId": None}
        error = self.error if status == "Failed" else None
        if status == "Cancelled":
            error = {"type": "Cancelled", "message": "the execution was cancelled", "nodeId": None}
        batch.finish_execution(status, outputs, error)
        self.log.info("execution finished", status=status)
        self.notify(f"Execution{status}", None, {"outputs": outputs, "error": error})

    # -- plumbing -------------------------------------------------------------------------------

    def batch(self) -> Batch:
        return Batch(self.row.tenant, self.row.execution_id)

    async def commit(self, batch: Batch) -> None:
        # One connection serves the whole run; node tasks commit retries through it too.
        async with self.commit_lock:
            await executions.commit(self.conn, batch)

    def notify(self, kind: str, node_id: str | None, details: Mapping[str, Any]) -> None:
        if self.observer is not None:
            with contextlib.suppress(Exception):  # a display must never break an execution
                self.observer(kind, node_id, details)


def _never(route: Route) -> bool:
    raise AssertionError(f"no condition is evaluated after the execution failed ({route})")


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    import json

    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


def _validate(schema: Mapping[str, Any], parameters: Any) -> str | None:
    """None when rendered parameters fit the action's schema, else the first problem's path."""
    import json

    from runner.spec.diagnostics import format_path

    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(parameters), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    first = errors[0]
    return f"{format_path(('parameters', *first.absolute_path))}: {first.message}"
