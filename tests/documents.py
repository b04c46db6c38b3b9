"""Workflow documents for tests: the one builder of a workflow around its nodes."""

from __future__ import annotations

from typing import Any


def workflow(workflow_id: str, *nodes: dict[str, Any], **top: Any) -> dict[str, Any]:
    """An Active workflow of `nodes`, starting at the first; `top` adds top-level fields."""
    return {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": workflow_id,
        "status": "active",
        "startNode": nodes[0]["id"],
        "nodes": list(nodes),
        **top,
    }
