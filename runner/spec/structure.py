"""Rules over the graph of nodes and edges: ids, targets, cycles and reachability (SPEC §4).

Pure functions of the model; they use the standard library's graphlib rather than networkx so
that `dwf lint` does not pay networkx's import time (the compiler in runner/plan uses networkx).
"""

from __future__ import annotations

import graphlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal

from runner.spec.diagnostics import DocPath, Finding
from runner.spec.model import Workflow


def first_positions(ids: Iterable[str]) -> tuple[dict[str, int], list[tuple[int, int]]]:
    """Each id's first position, and (position, first position) of every later repeat."""
    first: dict[str, int] = {}
    repeats: list[tuple[int, int]] = []
    for index, ident in enumerate(ids):
        earlier = first.setdefault(ident, index)
        if earlier != index:
            repeats.append((index, earlier))
    return first, repeats


def duplicate_ids(
    ids: Sequence[str], section: Literal["nodes", "triggers"]
) -> tuple[dict[str, int], list[Finding]]:
    """Each id's first position in a section of the workflow, and a `duplicate-node-id` or
    `duplicate-trigger-id` finding at every later use of an id."""
    noun = section[:-1]
    first, repeats = first_positions(ids)
    findings = [
        Finding(
            f"duplicate-{noun}-id",
            f"{noun} id `{ids[index]}` is already used by {section}[{earlier}]; "
            f"{noun} ids must be unique in a workflow",
            (section, index, "id"),
        )
        for index, earlier in repeats
    ]
    return first, findings


def routes(workflow: Workflow) -> dict[str, list[tuple[str, DocPath]]]:
    """Each node's outgoing targets in document order, with the path of the key naming each."""
    out: dict[str, list[tuple[str, DocPath]]] = {}
    for i, node in enumerate(workflow.nodes):
        targets = out.setdefault(node.id, [])
        for j, edge in enumerate(node.edges):
            targets.append((edge.target_node, ("nodes", i, "edges", j, "targetNode")))
        if node.on_failure is not None:
            targets.append((node.on_failure, ("nodes", i, "onFailure")))
    return out


def reachable(graph: dict[str, list[tuple[str, DocPath]]], roots: Iterable[str]) -> set[str]:
    """Every node reachable from `roots` (roots included when they exist)."""
    seen = {r for r in roots if r in graph}
    queue = deque(seen)
    while queue:
        for target, _ in graph.get(queue.popleft(), ()):
            if target in graph and target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def ancestors(workflow: Workflow) -> dict[str, frozenset[str]]:
    """For each node, the nodes that always end before it can start (its transitive sources)."""
    graph = routes(workflow)
    parents: dict[str, set[str]] = {node_id: set() for node_id in graph}
    for source, targets in graph.items():
        for target, _ in targets:
            if target in parents:
                parents[target].add(source)
    result: dict[str, frozenset[str]] = {}

    def collect(node_id: str, trail: frozenset[str]) -> frozenset[str]:
        if node_id in result:
            return result[node_id]
        found: set[str] = set()
        for parent in parents[node_id]:
            if parent not in trail:  # a cycle is reported by `check`; do not loop on it here
                found.add(parent)
                found |= collect(parent, trail | {node_id})
        result[node_id] = frozenset(found)
        return result[node_id]

    for node_id in graph:
        collect(node_id, frozenset())
    return result


def failure_path(workflow: Workflow) -> set[str]:
    """The workflow-level onFailure node and every node reachable from it."""
    if workflow.on_failure is None:
        return set()
    return reachable(routes(workflow), [workflow.on_failure])


def check(workflow: Workflow) -> list[Finding]:
    """Duplicate ids, unknown targets, cycles and unreachable nodes, each positioned."""
    first_index, findings = duplicate_ids([node.id for node in workflow.nodes], "nodes")
    known = sorted(first_index)
    graph = routes(workflow)

    def unknown(name: str) -> str:
        return f"no node has the id `{name}` (nodes: {', '.join(known)})"

    if workflow.start_node not in first_index:
        findings.append(
            Finding(
                "unknown-start-node", f"startNode: {unknown(workflow.start_node)}", ("startNode",)
            )
        )
    if workflow.on_failure is not None and workflow.on_failure not in first_index:
        findings.append(
            Finding(
                "unknown-on-failure-target",
                f"onFailure: {unknown(workflow.on_failure)}",
                ("onFailure",),
            )
        )
    for source, targets in graph.items():
        for target, path in targets:
            if target not in first_index:
                rule = (
                    "unknown-on-failure-target"
                    if path[-1] == "onFailure"
                    else "unknown-edge-target"
                )
                findings.append(
                    Finding(
                        rule, f"node `{source}` routes to an unknown node: {unknown(target)}", path
                    )
                )
    findings.extend(_cycles(graph, first_index))
    if workflow.start_node in first_index:
        roots = [workflow.start_node]
        if workflow.on_failure is not None:
            roots.append(workflow.on_failure)
        seen = reachable(graph, roots)
        for node_id, i in first_index.items():
            if node_id not in seen:
                findings.append(
                    Finding(
                        "unreachable-node",
                        f"node `{node_id}` cannot be reached from startNode `{workflow.start_node}`"
                        + (
                            ""
                            if workflow.on_failure is None
                            else f" or onFailure `{workflow.on_failure}`"
                        )
                        + "; add an edge to it or remove it",
                        ("nodes", i, "id"),
                    )
                )
    return findings


def cycles(edges: Mapping[str, Iterable[str]]) -> Iterator[list[str]]:
    """Every independent cycle of a graph given as source -> targets, each as the nodes along
    its edges with the first node again at the end (`a, b, a`). After each, the edge that closes
    it is cut (in a copy) and the graph searched again, so one cycle never hides another."""
    remaining = {source: list(targets) for source, targets in edges.items()}
    while True:
        try:
            graphlib.TopologicalSorter(remaining).prepare()
            return
        except graphlib.CycleError as exc:
            # graphlib names the cycle backwards along predecessor links: reverse it to edge order.
            cycle: list[str] = list(reversed(exc.args[1]))
        yield cycle
        source, target = cycle[-2], cycle[-1]
        remaining[source] = [t for t in remaining[source] if t != target]


def _cycles(graph: dict[str, list[tuple[str, DocPath]]], index: dict[str, int]) -> list[Finding]:
    """One finding per distinct cycle, at the edge that closes it."""
    findings: list[Finding] = []
    edges = {source: [t for t, _ in targets if t in index] for source, targets in graph.items()}
    reported: set[frozenset[str]] = set()
    for cycle in cycles(edges):
        closing_source, closing_target = cycle[-2], cycle[-1]
        path: DocPath = ("nodes", index[closing_source])
        for target, target_path in graph[closing_source]:
            if target == closing_target:
                path = target_path
                break
        if frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            findings.append(
                Finding(
                    "cycle",
                    f"edges form a cycle: {' -> '.join(cycle)}; a workflow must be acyclic "
                    "(remove or redirect one of these edges)",
                    path,
                )
            )
    return findings
