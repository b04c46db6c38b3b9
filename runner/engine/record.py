"""What an execution's rows say happened: the input a resumed run rebuilds its state from.

A worker that claims an execution another worker was running (it died, lost its lease, or shut
down) reads the attempts and events and replays them into `ExecutionState.restore`: succeeded
nodes are not run again, and a node that was in flight is attempted again as its next attempt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.engine.state import NodeStatus, RouteDecision
from runner.store.executions import AttemptRow, EventRow, ExecutionRow

_FINISHED_EVENTS = {
    "NodeSucceeded": NodeStatus.SUCCEEDED,
    "NodeFailed": NodeStatus.FAILED,
    "NodeSkipped": NodeStatus.SKIPPED,
    "NodeCancelled": NodeStatus.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class Recorded:
    """Results in the order they were recorded, route decisions, and what was in flight."""

    finished: dict[str, NodeStatus] = field(default_factory=dict)
    decisions: list[RouteDecision] = field(default_factory=list)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)  # node -> its Running attempt
    children: dict[str, ExecutionRow] = field(default_factory=dict)  # node -> child execution
    failed: str | None = None
    keys: dict[str, Any] = field(default_factory=dict)


def recorded(
    attempts: Sequence[AttemptRow],
    events: Sequence[EventRow],
    children: Mapping[str, ExecutionRow] | None = None,
) -> Recorded:
    """Read an execution's rows into a `Recorded`."""
    record = Recorded(children=dict(children or {}))
    for event in events:
        status = _FINISHED_EVENTS.get(event.kind)
        if status is not None and event.node_id is not None:
            record.finished[event.node_id] = status
            for source, order, taken in event.data.get("routes") or ():
                record.decisions.append((source, int(order), bool(taken)))
        elif event.kind == "ExecutionStopping":
            record = _with_failed(record, str(event.data.get("reason") or "stopped"))
    last: dict[str, AttemptRow] = {}
    for attempt in attempts:
        last[attempt.node_id] = attempt
    for node_id, attempt in last.items():
        if attempt.status == "Running" and node_id not in record.finished:
            record.in_flight[node_id] = attempt.attempt
            record.finished[node_id] = NodeStatus.RUNNING
        elif node_id in record.finished and record.finished[node_id] in (
            NodeStatus.SUCCEEDED,
            NodeStatus.FAILED,
        ):
            record.entries[node_id] = {
                "status": attempt.status,
                "outputs": attempt.outputs_json or {},
                "error": attempt.error_json,
                "attempts": attempt.attempt,
            }
    return record


def _with_failed(record: Recorded, reason: str) -> Recorded:
    return Recorded(
        record.finished,
        record.decisions,
        record.entries,
        record.in_flight,
        record.children,
        reason,
        record.keys,
    )
