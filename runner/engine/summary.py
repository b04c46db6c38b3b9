"""The JSON shape of a finished (or running) execution, shared by `dwf run` and the API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner.engine import idempotency
from runner.store.executions import AttemptRow, EventRow, ExecutionRow, LinkRow


def execution_document(row: ExecutionRow, attempts: Sequence[AttemptRow]) -> dict[str, Any]:
    """SPEC §9's shape: the listing item, with correlationId, error, outputs, and `nodes`
    {id: {status, attempts, outputs, error}} taken from each node's last attempt."""
    nodes: dict[str, dict[str, Any]] = {}
    for attempt in attempts:
        nodes[attempt.node_id] = {
            "status": attempt.status,
            "attempts": attempt.attempt,
            "outputs": attempt.outputs_json,
            "error": attempt.error_json,
            **({"reused": True} if attempt.reused else {}),
        }
    return listing_item(row) | {
        "correlationId": row.correlation_id,
        "error": row.error,
        "outputs": row.outputs,
        "nodes": nodes,
    }


def attempt_document(attempt: AttemptRow, links: Sequence[LinkRow] = ()) -> dict[str, Any]:
    """One attempt row as JSON (the API lists them all), with the resource links it stored."""
    return attempt.document(
        "node_id", "attempt", "action_type", "status",
        parameters="parameters_json", outputs="outputs_json", error="error_json",
        reused="reused", startedAt="started_at", finishedAt="finished_at",
    ) | {"resourceLinks": [link_document(link) for link in links]}  # fmt: skip


def attempt_documents(
    attempts: Sequence[AttemptRow], links: Sequence[LinkRow]
) -> list[dict[str, Any]]:
    """Every attempt as JSON, each with the links the action returned in it (an idempotent
    node's synthetic `node-result` link is the engine's memory, not the action's: left out)."""
    by_attempt: dict[int, list[LinkRow]] = {}
    for link in links:
        if link.action_execution_id is not None and not idempotency.is_synthetic(
            link.system, link.resource_type
        ):
            by_attempt.setdefault(link.action_execution_id, []).append(link)
    return [attempt_document(a, by_attempt.get(a.action_execution_id, ())) for a in attempts]


def link_document(link: LinkRow) -> dict[str, Any]:
    """A resource link as JSON: {system, resourceType, externalId, url}."""
    return link.document("system", "resource_type", "external_id", "url")


def listing_item(row: ExecutionRow) -> dict[str, Any]:
    """An execution row as a listing item."""
    return row.document(
        "execution_id", "workflow_id", "workflow_version", "status", "request_id", "principal",
        "created_at", "started_at", "finished_at",
    )  # fmt: skip


def event_document(event: EventRow) -> dict[str, Any]:
    """An event row as JSON."""
    return event.document("event_id", "kind", "node_id", "attempt", "data", "created_at")
