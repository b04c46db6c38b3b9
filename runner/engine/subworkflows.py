"""Subworkflow nodes (SPEC §4): start the child, wait for it without holding a worker, take its
outcome and outputs, cancel it when the parent no longer waits.

The child is started through `Children` (the conductor) with request id
`subworkflow:<parent execution>:<node>`, so a re-attempt of the node finds the same child
instead of starting a second one. A node that waits parks its execution when nothing else runs;
the child's end wakes it (`dwf_child`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runner.engine.attempts import NodeResult, error_dict
from runner.errors import DwfError, StoreError
from runner.spec.model import Node
from runner.store import executions
from runner.store.database import Database
from runner.store.executions import TERMINAL, ExecutionRow

#: Fire-and-forget child cancels, kept referenced until they end.
_BACKGROUND: set[asyncio.Task[Any]] = set()


class Children(Protocol):
    """What a run needs to start and cancel subworkflow executions (the Conductor)."""

    async def start_child(
        self, parent: ExecutionRow, node: Node, parameters: Mapping[str, Any]
    ) -> ExecutionRow: ...

    async def cancel(self, tenant: str, execution_id: uuid.UUID) -> ExecutionRow: ...


@dataclass(frozen=True, slots=True)
class Waiting:
    """A subworkflow node's task result: the child runs on its own; wait for it to end."""

    child: ExecutionRow


async def start(
    children: Children, parent: ExecutionRow, node: Node, params: Any, *, attempt: int, limit: int
) -> NodeResult | Waiting:
    """Start (or find again) the node's child; `limit` is the workflow's `maxNestingDepth`."""
    depth = parent.depth + 1
    if depth > limit:
        message = f"subworkflow `{node.workflow_id}` would nest {depth} deep; the limit is {limit}"
        return NodeResult("Failed", attempt, {}, error_dict("NestingTooDeep", message, node.id))
    try:
        child = await children.start_child(parent, node, params)
    except StoreError:
        raise  # the database's trouble, not the node's: the run stops and is resumed
    except DwfError as exc:
        error = error_dict(type(exc).__name__, str(exc), node.id)
        return NodeResult("Failed", attempt, {}, error)
    if not node.wait_for_completion:
        return NodeResult("Succeeded", attempt, {"executionId": str(child.execution_id)})
    if child.status in TERMINAL:
        return result(node, child, attempt)
    return Waiting(child)


async def ended(db: Database, awaiting: Mapping[str, ExecutionRow]) -> dict[str, ExecutionRow]:
    """Of the children awaited (by node), those that ended, with their final rows."""
    async with db.connection() as conn:
        rows = await executions.ended(conn, [c.execution_id for c in awaiting.values()])
    by_id = {row.execution_id: row for row in rows}
    return {
        node_id: by_id[child.execution_id]
        for node_id, child in awaiting.items()
        if child.execution_id in by_id
    }


def result(node: Node, child: ExecutionRow, attempt: int) -> NodeResult:
    """The node's result from its ended child: its status, and {executionId, status, outputs}."""
    child_id = str(child.execution_id)
    outputs = {"executionId": child_id, "status": child.status, "outputs": child.outputs}
    if child.status == "Succeeded":
        return NodeResult("Succeeded", attempt, outputs)
    cause = (child.error or {}).get("message", child.status)
    message = f"subworkflow `{node.workflow_id}` ({child_id}) ended {child.status}: {cause}"
    return NodeResult("Failed", attempt, outputs, error_dict("SubworkflowFailed", message, node.id))


def cancel(children: Children, child: ExecutionRow) -> None:
    """Cancel, in the background, a child its parent no longer waits for (it cancels its own)."""

    async def request() -> None:
        with contextlib.suppress(DwfError):
            await children.cancel(child.tenant, child.execution_id)

    task = asyncio.create_task(request())
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
