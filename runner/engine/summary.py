"""The JSON shape of a finished (or running) execution, shared by `dwf run` and the API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner.store.executions import AttemptRow, EventRow, ExecutionRow


def execution_document(row: ExecutionRow, attempts: Sequence[AttemptRow]) -> dict[str, Any]:
    """SPEC §9's shape: executionId, status, error, outputs, and `nodes` {id: {status, attempts,
    outputs, error}} taken from each node's last attempt."""
    nodes: dict[str, dict[str, Any]] = {}
    for attempt in attempts:
        nodes[attempt.node_id] = {
            "status": attempt.status,
            "attempts": attempt.attempt,
            "outputs": attempt.outputs_json,
            "error": attempt.error_json,
            **({"reused": True} if attempt.reused else {}),
        }
    return {
        "executionId": str(row.execution_id),
        "workflowId": row.workflow_id,
        "workflowVersion": row.workflow_version,
        "status": row.status,
        "requestId": row.request_id,
        "correlationId": row.correlation_id,
        "principal": row.principal,
        "error": row.error,
        "outputs": row.outputs,
        "nodes": nodes,
        "createdAt": _iso(row.created_at),
        "startedAt": _iso(row.started_at),
        "finishedAt": _iso(row.finished_at),
    }


def attempt_document(attempt: AttemptRow) -> dict[str, Any]:
    """One attempt row as JSON (the API lists them all)."""
    return {
        "nodeId": attempt.node_id,
        "attempt": attempt.attempt,
        "actionType": attempt.action_type,
        "status": attempt.status,
        "parameters": attempt.parameters_json,
        "outputs": attempt.outputs_json,
        "error": attempt.error_json,
        "reused": attempt.reused,
        "startedAt": _iso(attempt.started_at),
        "finishedAt": _iso(attempt.finished_at),
    }


def listing_item(row: ExecutionRow) -> dict[str, Any]:
    """An execution row as a listing item."""
    return {
        "executionId": str(row.execution_id),
        "workflowId": row.workflow_id,
        "workflowVersion": row.workflow_version,
        "status": row.status,
        "requestId": row.request_id,
        "principal": row.principal,
        "createdAt": row.created_at.isoformat(),
        "startedAt": row.started_at.isoformat() if row.started_at else None,
        "finishedAt": row.finished_at.isoformat() if row.finished_at else None,
    }


def event_document(event: EventRow) -> dict[str, Any]:
    """An event row as JSON."""
    return {
        "eventId": event.event_id,
        "kind": event.kind,
        "nodeId": event.node_id,
        "attempt": event.attempt,
        "data": event.data,
        "createdAt": event.created_at.isoformat(),
    }


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
