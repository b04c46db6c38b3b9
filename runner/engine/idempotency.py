"""Idempotency keys (SPEC §4): a node whose rendered `idempotencyKey` already has a resource link
from any earlier execution of its workflow is not run again; it ends `Succeeded` with the stored
outputs and `reused: true`.

Every succeeded attempt's resource links are stored (`remember`), with or without a key, so
what an execution created elsewhere is always on record. With a key they carry the node's
outputs, and an action that returns no links gets one link of system `dataworkflows`, type
`node-result`, so any action can be made effectively-once. Two executions racing on a new key
may both run the action: the key protects reruns, it is not a lock.
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
SYNTHETIC_TYPE = "node-result"


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


def remember(
    batch: Batch, row: ExecutionRow, node_id: str, result: NodeResult, key: Any | None
) -> None:
    """Store the resource links a succeeded attempt returned. Under an idempotency key (not
    None) they carry its outputs to reuse, and an attempt that returned none gets one
    synthetic link (`SYSTEM`, `node-result`) so the key still finds its outputs."""
    common: dict[str, Any] = {
        "workflow_id": row.workflow_id,
        "node_id": node_id,
        "attempt": result.attempt,
        "idempotency_key": None if key is None else str(key),
        # Only a key ever reads them back: without one the action's outputs are in its attempt.
        "outputs": None if key is None else dict(result.outputs),
    }
    for link in result.resource_links:
        batch.link(
            **common,
            system=link.system,
            resource_type=link.resource_type,
            external_id=link.external_id,
            url=link.url,
        )
    if key is not None and not result.resource_links:
        batch.link(
            **common,
            system=SYSTEM,
            resource_type=SYNTHETIC_TYPE,
            external_id=f"{row.execution_id}/{node_id}",
            url=None,
        )


def is_synthetic(system: str, resource_type: str) -> bool:
    """Whether a stored link is the engine's own memory of a keyed node, not the action's."""
    return system == SYSTEM and resource_type == SYNTHETIC_TYPE
