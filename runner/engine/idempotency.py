"""Idempotency keys (SPEC §4): a node whose rendered `idempotencyKey` already has a resource link
from any earlier execution of its workflow is not run again; it ends `Succeeded` with the stored
outputs and `reused: true`.

After such a node succeeds, its resource links are stored with the key and the node's outputs;
an action that returns no links gets one link of system `dataworkflows`, type `node-result`, so
any action can be made effectively-once. Two executions racing on a new key may both run the
action: the key protects reruns, it is not a lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.engine.attempts import NodeResult
from runner.store import executions
from runner.store.batch import Batch
from runner.store.database import Database
from runner.store.executions import ExecutionRow

#: The `system` of links that only remember an idempotent node's outputs.
SYSTEM = "dataworkflows"


async def stored_outputs(
    db: Database, row: ExecutionRow, node_id: str, key: Any
) -> Mapping[str, Any] | None:
    """The outputs an earlier run of this node stored under `key`, or None."""
    async with db.connection() as conn:
        return await executions.reusable_outputs(
            conn, row.tenant, row.workflow_id, node_id, str(key)
        )


def reuse(batch: Batch, node_id: str, attempt: int, key: Any, outputs: Any) -> NodeResult:
    """Record the attempt as reused (in `batch`) and return its result."""
    batch.finish_attempt(node_id, attempt, "Succeeded", outputs, reused=True)
    batch.event("NodeReused", node_id, attempt, idempotencyKey=str(key))
    return NodeResult("Succeeded", attempt, outputs, reused=True)


def remember(batch: Batch, row: ExecutionRow, node_id: str, result: NodeResult, key: Any) -> None:
    """Store the node's resource links (or one synthetic link) under its key, with its outputs."""
    common: dict[str, Any] = {
        "workflow_id": row.workflow_id,
        "node_id": node_id,
        "attempt": result.attempt,
        "idempotency_key": str(key),
        "outputs": dict(result.outputs),
    }
    for link in result.resource_links:
        batch.link(
            **common,
            system=link.system,
            resource_type=link.resource_type,
            external_id=link.external_id,
            url=link.url,
        )
    if not result.resource_links:
        batch.link(
            **common,
            system=SYSTEM,
            resource_type="node-result",
            external_id=f"{row.execution_id}/{node_id}",
            url=None,
        )
