"""Compile a workflow into its plan: the superset graph the engine walks (SPEC §4, §6).

The plan is a pure value: the typed workflow, its checksum and what the engine needs to decide
readiness without looking at the document again (routes in document order, join fan-in, the
failure path, a deterministic topological order). Plans serialise to JSON for `workflow_plans`
and are cached in memory by (checksum, compiler version), so an unchanged definition compiles once.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

import networkx as nx

from runner import errors
from runner.plan import cache
from runner.plan import checksum as checksums
from runner.spec import model, structure

#: Bump whenever the plan's JSON shape or meaning changes: cached and stored plans of another
#: version are then recompiled instead of being trusted.
COMPILER_VERSION = 1
#: How many compiled plans the in-process cache keeps (least recently used are dropped first).
PLAN_CACHE_SIZE = 256

RouteKind = Literal["edge", "onFailure"]
_WHENS = frozenset(get_args(model.EdgeWhen))
_ROUTE_POLICIES = frozenset(get_args(model.RoutePolicy))
_MAX_LISTED_IDS = 10


@dataclass(frozen=True, slots=True)
class Route:
    """One way out of a node: an `edges` entry, or its `onFailure` (last, when=failure)."""

    source: str
    target: str
    when: model.EdgeWhen
    condition: str | None
    order: int
    kind: RouteKind = "edge"

    def as_dict(self) -> dict[str, Any]:
        """The route's JSON shape inside a stored plan: its fields by name."""
        return {name: getattr(self, name) for name in self.__slots__}


# The graph is a MultiDiGraph (a DiGraph subclass) keyed by route order: a node may reach the
# same target twice (an explicit edge and `onFailure`, or a success and a failure edge), and each
# route has its own when/condition and resolves on its own. Parallel edges keep those attributes
# flat, make in_degree the number of routes a join waits for, and leave topological sorts, cycle
# search and reachability unchanged.
@dataclass(frozen=True, eq=False, repr=False)
class Plan:
    """A compiled workflow; compare plans by `checksum` and `compiler_version`, not identity."""

    workflow: model.Workflow
    checksum: str
    compiler_version: int
    graph: nx.MultiDiGraph[str]
    entry_node: str
    failure_entry: str | None
    failure_path: frozenset[str]
    expected_incoming: Mapping[str, int]
    topological_order: tuple[str, ...]
    definition: Mapping[str, Any]
    _outgoing: Mapping[str, tuple[Route, ...]] = field(init=False)
    _incoming: Mapping[str, tuple[Route, ...]] = field(init=False)
    _nodes: Mapping[str, model.Node] = field(init=False)

    def __post_init__(self) -> None:
        # Indexes built once so the engine's per-node questions are dictionary look-ups.
        outgoing: dict[str, list[Route]] = {node.id: [] for node in self.workflow.nodes}
        incoming: dict[str, list[Route]] = {node.id: [] for node in self.workflow.nodes}
        for source, target, attrs in self.graph.edges(data=True):
            route = Route(source, target, **attrs)
            outgoing[source].append(route)
            incoming[target].append(route)
        for routes in outgoing.values():
            routes.sort(key=lambda r: r.order)
        object.__setattr__(self, "_outgoing", {k: tuple(v) for k, v in outgoing.items()})
        object.__setattr__(self, "_incoming", {k: tuple(v) for k, v in incoming.items()})
        object.__setattr__(self, "_nodes", {node.id: node for node in self.workflow.nodes})

    def __repr__(self) -> str:
        return (
            f"Plan(workflow={self.workflow.id!r}, checksum={self.checksum[:12]!r}, "
            f"compiler_version={self.compiler_version}, nodes={len(self.topological_order)})"
        )

    def node(self, node_id: str) -> model.Node:
        """The node with this id; KeyError naming it otherwise."""
        try:
            return self._nodes[node_id]
        except KeyError:
            raise KeyError(f"workflow {self.workflow.id!r} has no node {node_id!r}") from None

    def outgoing(self, node_id: str) -> tuple[Route, ...]:
        """The node's routes in document order (its edges, then its onFailure)."""
        self.node(node_id)
        return self._outgoing[node_id]

    def incoming(self, node_id: str) -> tuple[Route, ...]:
        """The routes into a node, by source document order then route order."""
        self.node(node_id)
        return self._incoming[node_id]

    @property
    def routes(self) -> tuple[Route, ...]:
        """Every route of the workflow, by source document order then route order."""
        return tuple(r for node in self.workflow.nodes for r in self._outgoing[node.id])

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data for `workflow_plans`; `from_json` rebuilds the same plan from it."""
        return self._analysis_json() | {"definition": model.thaw(self.definition)}

    def _analysis_json(self) -> dict[str, Any]:
        return {
            "compilerVersion": self.compiler_version,
            "checksum": self.checksum,
            "workflowId": self.workflow.id,
            "entryNode": self.entry_node,
            "failureEntry": self.failure_entry,
            "failurePath": [n for n in self.topological_order if n in self.failure_path],
            "topologicalOrder": list(self.topological_order),
            "expectedIncoming": dict(self.expected_incoming),
            "routes": [route.as_dict() for route in self.routes],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """Rebuild a stored plan, verified against its definition; PlanError if it differs."""
        return _plan_from_json(data)


def compile_plan(definition: Mapping[str, Any], *, workflow: model.Workflow | None = None) -> Plan:
    """Compile a loaded document; PlanError naming the workflow and node for what it cannot run.

    `definition` is the document as loaded (plain JSON data): the plan's checksum is taken over it
    and the plan stores it. `workflow` is its typed model when the caller already built it with
    `Workflow.from_data(definition)`; otherwise it is built here.
    """
    checksum = checksums.definition_checksum(definition)
    if workflow is None:
        try:
            workflow = model.Workflow.from_data(definition)
        except errors.ShapeError as exc:
            raise errors.PlanError(f"the document is malformed at {exc!s}; lint it first") from exc
    where = f"workflow {workflow.id!r}"
    node_ids = [node.id for node in workflow.nodes]
    problems = _reference_problems(workflow, node_ids)
    if problems:
        raise errors.PlanError(f"{where} cannot be compiled: " + "; ".join(problems))
    routes = [route for node in workflow.nodes for route in _routes_of(node)]
    graph = _build_graph(workflow, routes)
    position = {node_id: index for index, node_id in enumerate(node_ids)}
    try:
        order = tuple(nx.lexicographical_topological_sort(graph, key=position.__getitem__))
    except nx.NetworkXUnfeasible:
        # The sort fails on any cycle; only then is it worth searching one out to name it.
        cycle = nx.find_cycle(graph)
        path = " -> ".join([cycle[0][0], *(edge[1] for edge in cycle)])
        raise errors.PlanError(
            f"{where} cannot be compiled: its edges form a cycle {path}; a workflow must be a DAG"
        ) from None
    return _assemble(
        workflow,
        checksum,
        definition=definition,
        graph=graph,
        order=order,
        failure_path=frozenset(structure.failure_path(workflow)),
    )


def _reference_problems(workflow: model.Workflow, node_ids: list[str]) -> list[str]:
    # Everything the linter reports first, re-checked: the engine must never see a plan that
    # points nowhere. All problems are listed at once so one failed sync shows them all.
    first_index, repeats = structure.first_positions(node_ids)
    problems = [
        f"duplicate node id {node_ids[index]!r} (nodes[{earlier}] and nodes[{index}]); "
        "node ids must be unique"
        for index, earlier in repeats
    ]
    known = first_index.keys()

    def check(target: str, what: str) -> None:
        if target not in known:
            problems.append(f"{what} names unknown node {target!r}{_valid_ids(target, node_ids)}")

    check(workflow.start_node, "startNode")
    if workflow.on_failure is not None:
        check(workflow.on_failure, "onFailure")
    for index, node in enumerate(workflow.nodes):
        at = f"node {node.id!r} (nodes[{index}])"
        for edge_index, edge in enumerate(node.edges):
            check(edge.target_node, f"{at} edges[{edge_index}].targetNode")
            if edge.when not in _WHENS:
                problems.append(
                    f"{at} edges[{edge_index}].when is {edge.when!r}; "
                    f"use one of {', '.join(sorted(_WHENS))}"
                )
        if node.on_failure is not None:
            check(node.on_failure, f"{at} onFailure")
        if node.route_policy is not None and node.route_policy not in _ROUTE_POLICIES:
            problems.append(
                f"{at} routePolicy is {node.route_policy!r}; "
                f"use one of {', '.join(sorted(_ROUTE_POLICIES))}"
            )
    return problems


def _valid_ids(target: str, node_ids: list[str]) -> str:
    close = difflib.get_close_matches(target, node_ids, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    listed = ", ".join(node_ids[:_MAX_LISTED_IDS]) + (
        ", …" if len(node_ids) > _MAX_LISTED_IDS else ""
    )
    return f" (node ids: {listed})" if node_ids else " (the workflow has no nodes)"


def _routes_of(node: model.Node) -> list[Route]:
    routes = [
        Route(node.id, edge.target_node, edge.when, edge.condition, index, "edge")
        for index, edge in enumerate(node.edges)
    ]
    if node.on_failure is not None:
        # onFailure comes after the explicit edges so firstMatch prefers what the author listed.
        routes.append(Route(node.id, node.on_failure, "failure", None, len(routes), "onFailure"))
    return routes


def _build_graph(workflow: model.Workflow, routes: list[Route]) -> nx.MultiDiGraph[str]:
    graph: nx.MultiDiGraph[str] = nx.MultiDiGraph(workflow_id=workflow.id)
    for index, node in enumerate(workflow.nodes):
        graph.add_node(node.id, node=node, index=index)
    for route in routes:
        # Exactly Route's fields but the endpoints: Plan rebuilds each as Route(u, v, **attrs).
        attrs = {"when": route.when, "condition": route.condition, "order": route.order}
        graph.add_edge(route.source, route.target, key=route.order, kind=route.kind, **attrs)
    return graph


def _assemble(
    workflow: model.Workflow,
    checksum: str,
    *,
    definition: Mapping[str, Any],
    graph: nx.MultiDiGraph[str],
    order: tuple[str, ...],
    failure_path: frozenset[str],
) -> Plan:
    incoming = {node.id: graph.in_degree(node.id) for node in workflow.nodes}
    return Plan(
        workflow=workflow,
        checksum=checksum,
        compiler_version=COMPILER_VERSION,
        graph=nx.freeze(graph),
        entry_node=workflow.start_node,
        failure_entry=workflow.on_failure,
        failure_path=failure_path,
        expected_incoming=MappingProxyType(incoming),
        topological_order=order,
        definition=model.freeze(definition),
    )


def _plan_from_json(data: Mapping[str, Any]) -> Plan:
    if not isinstance(data, Mapping):
        raise errors.PlanError("stored plan: not a JSON object")
    version = data.get("compilerVersion")
    if version != COMPILER_VERSION:
        raise errors.PlanError(
            f"stored plan was compiled by compiler version {version!r}, this runner "
            f"is version {COMPILER_VERSION}; recompile it"
        )
    definition, stored_checksum = data.get("definition"), data.get("checksum")
    if not isinstance(stored_checksum, str):
        raise errors.PlanError("stored plan: 'checksum' is missing or not a string")
    try:
        workflow = model.Workflow.from_data(definition)
    except errors.ShapeError as exc:
        raise errors.PlanError(f"stored plan: its definition is malformed at {exc}") from exc
    assert isinstance(definition, Mapping)  # from_data refuses anything else
    # Loading trusts the stored analysis (no topological sort, no reachability search: that is
    # what storing it saves) but checks it is the analysis of this definition, cheaply: the
    # checksum, the routes (derived from the typed nodes), an order every route goes forward
    # in, the fan-in counts and a failure path closed under its routes. A row edited by hand,
    # truncated, or paired with another definition is refused instead of trusted.
    where = f"stored plan of workflow {workflow.id!r}"
    if checksums.definition_checksum(definition) != stored_checksum:
        raise errors.PlanError(f"{where}: its checksum does not match its definition; recompile it")
    node_ids = [node.id for node in workflow.nodes]
    problems = _reference_problems(workflow, node_ids)
    if problems:
        raise errors.PlanError(f"stored plan: {'; '.join(problems)}")
    routes = [route for node in workflow.nodes for route in _routes_of(node)]
    order = data.get("topologicalOrder")
    failure = data.get("failurePath")
    if (
        data.get("routes") != [route.as_dict() for route in routes]
        or not isinstance(order, list)
        or sorted(order, key=str) != sorted(node_ids)
        or not isinstance(failure, list)
        or not set(failure) <= set(node_ids)
    ):
        raise errors.PlanError(f"{where} does not match its definition; recompile it")
    position = {node_id: index for index, node_id in enumerate(order)}
    failure_path = frozenset(failure)
    if any(
        position[r.source] >= position[r.target] for r in routes
    ) or failure_path != structure.failure_path(workflow):
        raise errors.PlanError(f"{where} does not match its definition; recompile it")
    plan = _assemble(
        workflow,
        stored_checksum,
        definition=definition,
        graph=_build_graph(workflow, routes),
        order=tuple(order),
        failure_path=failure_path,
    )
    stored = {key: value for key, value in data.items() if key != "definition"}
    if plan._analysis_json() != stored:
        raise errors.PlanError(f"{where} does not match its definition; recompile it")
    return plan


PLAN_CACHE: cache.LruCache[tuple[str, int], Plan] = cache.LruCache(PLAN_CACHE_SIZE)


def get_plan(data: Mapping[str, Any], workflow: model.Workflow | None = None) -> Plan:
    """The plan of a loaded document, compiled at most once per (checksum, compiler version)."""
    checksum = checksums.definition_checksum(data)
    key = (checksum, COMPILER_VERSION)
    plan = PLAN_CACHE.get(key)
    if plan is not None:
        return plan
    # Compiled outside the cache lock: two threads may compile the same plan once each, which is
    # harmless, rather than every compile serialising behind one lock. Only a miss checksums the
    # document twice (here for the key, in compile_plan for the plan), next to a whole compile.
    plan = compile_plan(data, workflow=workflow)
    PLAN_CACHE.put(key, plan)
    return plan


def cached_plan(checksum: str) -> Plan | None:
    """The plan of the definition with this checksum, if this process holds it."""
    return PLAN_CACHE.get((checksum, COMPILER_VERSION))


def remember(plan: Plan) -> None:
    """Keep a plan (loaded from `workflow_plans`, say) in this process's cache."""
    PLAN_CACHE.put((plan.checksum, plan.compiler_version), plan)
