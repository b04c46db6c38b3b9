"""The compiled plan: checksums, graph analysis, refusals, JSON round trip and the plan cache."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import networkx as nx
import pytest
from ruamel.yaml import YAML

from runner import errors
from runner.plan import cache, checksum, compiler
from runner.spec import model

ONBOARDING = """\
# yaml-language-server: $schema=../schemas/workflow.schema.json
apiVersion: dataworkflows/v1
kind: Workflow
id: client-onboarding
startNode: fetch-items
onFailure: alert-ops        # runs after an unhandled failure
options: {timeout: 1h, routePolicy: parallel}
nodes:
  - id: fetch-items
    actionType: monday.get-items
    parameters: {boardId: "{{ trigger.boardId }}", filter: {status: Working on it}}
    retry: {maxAttempts: 3, backoff: exponential, initialDelay: 1s, maxDelay: 30s}
    timeout: 30s
    edges:
      - {targetNode: post-summary, when: success, condition: "result.outputs.count > 0"}
      - {targetNode: notify-failure, when: failure}
  - id: post-summary
    actionType: slack.post-message
    parameters: {channel: "#ops", text: "done"}
    edges: [{targetNode: wrap-up}]
  - {id: notify-failure, actionType: core.echo, parameters: {message: failed},
     edges: [{targetNode: wrap-up, when: always}]}
  - {id: wrap-up, actionType: core.echo}
  - {id: alert-ops, actionType: core.echo, edges: [{targetNode: page.on-call}]}
  - {id: page.on-call, nodeType: subworkflow, workflowId: page-someone}
"""

# The same document: other key order, block instead of flow style, other comments and quoting.
ONBOARDING_REFORMATTED = """\
kind: Workflow
apiVersion: 'dataworkflows/v1'
nodes:
  - actionType: monday.get-items
    id: fetch-items
    timeout: "30s"
    edges:
      - condition: 'result.outputs.count > 0'
        when: success
        targetNode: post-summary
      - when: failure
        targetNode: notify-failure
    retry:
      maxDelay: 30s
      initialDelay: 1s
      backoff: exponential
      maxAttempts: 3
    parameters:
      filter:
        status: "Working on it"
      boardId: '{{ trigger.boardId }}'
  - id: post-summary
    edges:
      - targetNode: wrap-up
    parameters:
      text: done
      channel: '#ops'
    actionType: slack.post-message
  - id: notify-failure
    parameters: {message: "failed"}
    actionType: core.echo
    edges: [{when: always, targetNode: wrap-up}]
  # a comment between nodes
  - {actionType: core.echo, id: wrap-up}
  - {edges: [{targetNode: page.on-call}], actionType: core.echo, id: alert-ops}
  - {workflowId: page-someone, nodeType: subworkflow, id: page.on-call}
options:
  routePolicy: parallel
  timeout: 1h
onFailure: alert-ops
startNode: fetch-items
id: client-onboarding
"""


def load(text: str) -> dict:
    return YAML(typ="safe", pure=False).load(text)


def compiled(text: str = ONBOARDING) -> compiler.Plan:
    return compiler.compile_plan(load(text))


def workflow(*nodes: dict, start: str = "a", on_failure: str | None = None) -> dict:
    data: dict = {"apiVersion": "dataworkflows/v1", "kind": "Workflow", "id": "wf"}
    data |= {"startNode": start, "nodes": list(nodes)}
    if on_failure is not None:
        data["onFailure"] = on_failure
    return data


def node(node_id: str, *targets: str, **extra: object) -> dict:
    edges = [{"targetNode": target} for target in targets]
    return {"id": node_id, "actionType": "core.echo", "edges": edges, **extra}


@pytest.fixture(autouse=True)
def _empty_plan_cache():
    compiler.PLAN_CACHE.clear()
    yield
    compiler.PLAN_CACHE.clear()


# Checksums


def test_checksum_ignores_comments_key_order_and_layout():
    assert checksum.definition_checksum(load(ONBOARDING)) == checksum.definition_checksum(
        load(ONBOARDING_REFORMATTED)
    )


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("nodes", 0, "parameters", "filter", "status"), "Done"),
        (("nodes", 0, "edges", 0, "condition"), "result.outputs.count > 1"),
        (("nodes", 0, "retry", "maxAttempts"), 4),
        (("nodes", 0, "retry", "initialDelay"), "2s"),
        (("nodes", 2, "edges", 0, "when"), "success"),
        (("status",), "active"),
    ],
)
def test_checksum_changes_with_any_semantic_change(path, value):
    data = load(ONBOARDING)
    changed = copy.deepcopy(data)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert checksum.definition_checksum(changed) != checksum.definition_checksum(data)


def test_canonical_json_is_sorted_compact_and_unescaped():
    text = checksum.canonical_json({"b": [1, {"z": "é", "a": None}], "a": True})
    assert text == '{"a":true,"b":[1,{"a":null,"z":"é"}]}'


def test_checksum_is_sha256_hex_and_accepts_frozen_data():
    data = load(ONBOARDING)
    digest = checksum.definition_checksum(data)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert checksum.definition_checksum(model.freeze(data)) == digest


def test_canonical_json_refuses_non_json_values():
    with pytest.raises(ValueError):
        checksum.canonical_json({"x": math.nan})
    with pytest.raises(TypeError, match="set"):
        checksum.canonical_json({"x": {1, 2}})


# The graph


def test_graph_has_one_node_per_workflow_node_and_routes_with_attributes():
    plan = compiled()
    assert isinstance(plan.graph, nx.DiGraph)
    assert list(plan.graph.nodes) == [n.id for n in plan.workflow.nodes]
    attrs = plan.graph.get_edge_data("fetch-items", "post-summary")[0]
    assert attrs == {
        "when": "success",
        "condition": "result.outputs.count > 0",
        "order": 0,
        "kind": "edge",
    }
    assert plan.graph.get_edge_data("fetch-items", "notify-failure")[1]["when"] == "failure"
    assert plan.entry_node == "fetch-items" and plan.failure_entry == "alert-ops"


def test_graph_is_frozen():
    with pytest.raises(nx.NetworkXError):
        compiled().graph.add_edge("wrap-up", "fetch-items")


def test_expected_incoming_counts_routes_into_a_join():
    plan = compiled()
    assert plan.expected_incoming["wrap-up"] == 2
    assert plan.expected_incoming["fetch-items"] == 0
    assert [r.source for r in plan.incoming("wrap-up")] == ["post-summary", "notify-failure"]


def test_edge_and_on_failure_to_the_same_target_are_two_routes():
    plan = compiler.compile_plan(
        workflow(
            node("a", "b", onFailure="b"),
            node("b"),
        )
    )
    routes = plan.outgoing("a")
    assert [(r.target, r.when, r.order, r.kind) for r in routes] == [
        ("b", "success", 0, "edge"),
        ("b", "failure", 1, "onFailure"),
    ]
    assert plan.expected_incoming["b"] == 2
    assert plan.graph.number_of_edges("a", "b") == 2


def test_topological_order_breaks_ties_by_document_order():
    # d must follow c although listed first; b and c are free: document order decides.
    wf = workflow(
        node("d"),
        node("a", "c", "b"),
        node("c", "d"),
        node("b"),
    )
    orders = {compiler.compile_plan(wf).topological_order for _ in range(5)}
    assert orders == {("a", "c", "d", "b")}


def test_failure_path_is_the_failure_entry_and_what_follows_it():
    plan = compiled()
    assert plan.failure_path == frozenset({"alert-ops", "page.on-call"})
    no_failure_entry = compiler.compile_plan(workflow(node("a")))
    assert no_failure_entry.failure_path == frozenset()
    assert no_failure_entry.failure_entry is None


def test_outgoing_of_an_unknown_node_names_it():
    with pytest.raises(KeyError, match="nope"):
        compiled().outgoing("nope")


# Refusals


@pytest.mark.parametrize(
    ("wf", "expected"),
    [
        (
            lambda: workflow(node("a", "post-sumary"), node("post-summary")),
            r"node 'a' \(nodes\[0\]\) edges\[0\]\.targetNode names unknown node 'post-sumary' "
            r"\(did you mean 'post-summary'\?\)",
        ),
        (lambda: workflow(node("a", "b"), node("b", "a")), r"cycle a -> b -> a"),
        (lambda: workflow(node("a", "a")), r"cycle a -> a"),
        (lambda: workflow(node("a"), node("b"), node("a")), r"duplicate node id 'a'"),
        (lambda: workflow(node("a"), start="zzz"), r"startNode names unknown node 'zzz'"),
        (lambda: workflow(node("a"), on_failure="zzz"), r"onFailure names unknown node 'zzz'"),
        (
            lambda: workflow(node("a", onFailure="zzz")),
            r"node 'a' \(nodes\[0\]\) onFailure names unknown node 'zzz'",
        ),
        (
            lambda: workflow(node("a", edges=[{"targetNode": "a", "when": "sometimes"}])),
            r"edges\[0\]\.when is 'sometimes'",
        ),
    ],
)
def test_compile_refuses_broken_graphs_naming_workflow_and_node(wf, expected):
    with pytest.raises(errors.PlanError, match=r"workflow 'wf'.*" + expected):
        compiler.compile_plan(wf())


def test_compile_lists_every_reference_problem_at_once():
    with pytest.raises(errors.PlanError) as info:
        compiler.compile_plan(workflow(node("a", "x"), node("a", "y"), start="q"))
    message = str(info.value)
    assert all(part in message for part in ("'x'", "'y'", "'q'", "duplicate node id 'a'"))


# JSON round trip


def edges_of(plan: compiler.Plan) -> list:
    return sorted(plan.graph.edges(keys=True, data=True), key=lambda e: (e[0], e[1], e[2]))


def test_plan_json_round_trips_exactly():
    plan = compiled()
    stored = json.loads(json.dumps(plan.to_json()))
    again = compiler.Plan.from_json(stored)
    assert again.to_json() == plan.to_json()
    assert json.dumps(again.to_json()) == json.dumps(plan.to_json())
    assert again.workflow == plan.workflow
    assert edges_of(again) == edges_of(plan)
    assert dict(again.graph.nodes(data="index")) == dict(plan.graph.nodes(data="index"))
    assert again.topological_order == plan.topological_order
    assert again.failure_path == plan.failure_path
    assert dict(again.expected_incoming) == dict(plan.expected_incoming)
    assert again.checksum == plan.checksum == checksum.definition_checksum(load(ONBOARDING))


def test_plan_json_holds_the_definition_as_loaded():
    assert compiled().to_json()["definition"] == load(ONBOARDING)


def test_compile_uses_a_workflow_the_caller_already_built():
    data = load(ONBOARDING)
    wf = model.Workflow.from_data(data)
    plan = compiler.compile_plan(data, workflow=wf)
    assert plan.workflow is wf
    assert plan.checksum == checksum.definition_checksum(data)
    assert compiler.compile_plan(data).workflow == wf


def test_compile_refuses_a_malformed_document():
    with pytest.raises(errors.PlanError, match="malformed at nodes"):
        compiler.compile_plan({"id": "x", "nodes": "not a list"})


EVERY_FIELD = """\
apiVersion: dataworkflows/v1
kind: Workflow
id: every-field
displayName: Every field
description: all of them
status: active
startNode: a
vars: {region: eu, list: [1, 2.5, true, null]}
options: {maxParallelActions: 4, timeout: 1h30m, defaultActionTimeout: 250ms,
          routePolicy: firstMatch, maxNestingDepth: 3}
onFailure: c
outputs: {count: "{{ nodes['a'].outputs.count }}"}
triggers:
  - {id: s, type: schedule, cron: "0 9 * * 1-5", timezone: Europe/London, overlap: allow,
     catchup: all, catchupWindow: 2h, misfireGraceTime: 30s, payload: {x: 1}, enabled: false}
  - {id: w, type: webhook, path: clients/new, secretRef: hook, signature: hmac-sha256,
     signatureHeader: X-Sig, requestIdHeader: X-Id, activationCondition: "trigger.ok"}
  - {id: m, type: manual, payload: {y: [1]}}
nodes:
  - id: a
    actionType: core.echo
    description: first
    parameters: {message: hi}
    retry: {maxAttempts: 5, backoff: fixed, initialDelay: 1500ms, maxDelay: 1m,
            multiplier: 3, rerenderOnRetry: true}
    timeout: 1d
    idempotencyKey: "{{ execution.requestId }}"
    routePolicy: parallel
    edges: [{targetNode: b, when: always, condition: "true"}]
    onFailure: c
  - {id: b, nodeType: subworkflow, workflowId: child, version: 2, waitForCompletion: false}
  - {id: c, actionType: core.echo}
"""


def test_plan_json_round_trips_every_field():
    data = load(EVERY_FIELD)
    plan = compiler.compile_plan(data)
    again = compiler.Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again.workflow == plan.workflow == model.Workflow.from_data(data)
    assert again.to_json() == plan.to_json()
    assert again.to_json()["definition"] == data


def test_from_json_refuses_what_is_not_a_stored_plan():
    with pytest.raises(errors.PlanError, match="not a JSON object"):
        compiler.Plan.from_json([])  # type: ignore[arg-type]
    with pytest.raises(errors.PlanError, match="compiler version"):
        compiler.Plan.from_json({})


def test_from_json_refuses_another_compiler_version():
    stored = compiled().to_json() | {"compilerVersion": compiler.COMPILER_VERSION + 1}
    with pytest.raises(errors.PlanError, match="compiler version"):
        compiler.Plan.from_json(stored)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s["topologicalOrder"].pop(),
        lambda s: s["routes"][0].update(condition="true"),
        lambda s: s["expectedIncoming"].update({"wrap-up": 1}),
        lambda s: s.update(failurePath=["wrap-up"]),
        lambda s: s["definition"]["nodes"][0]["edges"][0].update(targetNode="gone"),
        lambda s: s.pop("checksum"),
        lambda s: s.update(checksum="0" * 64),
    ],
)
def test_from_json_refuses_a_row_that_does_not_match_its_definition(tamper):
    stored = json.loads(json.dumps(compiled().to_json()))
    tamper(stored)
    with pytest.raises(errors.PlanError, match="stored plan"):
        compiler.Plan.from_json(stored)


def test_plan_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        compiled().checksum = "other"  # type: ignore[misc]


# The plan cache


def test_get_plan_compiles_an_unchanged_definition_once(monkeypatch):
    calls = []
    real = compiler.compile_plan

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(compiler, "compile_plan", counting)
    first = compiler.get_plan(load(ONBOARDING))
    second = compiler.get_plan(load(ONBOARDING_REFORMATTED))
    assert second is first
    assert len(calls) == 1
    info = compiler.PLAN_CACHE.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 1, 1)


def test_get_plan_recompiles_a_changed_definition():
    data = load(ONBOARDING)
    first = compiler.get_plan(data)
    data["nodes"][0]["retry"]["maxAttempts"] = 5
    second = compiler.get_plan(data)
    assert second.checksum != first.checksum
    assert second.workflow.node("fetch-items").retry.max_attempts == 5


def test_plan_cache_drops_the_least_recently_used():
    lru = cache.LruCache(maxsize=2)
    plan = compiled()
    lru.put(("a", 1), plan)
    lru.put(("b", 1), plan)
    assert lru.get(("a", 1)) is plan
    lru.put(("c", 1), plan)
    assert lru.get(("b", 1)) is None
    assert lru.get(("a", 1)) is plan
    assert lru.cache_info() == cache.CacheInfo(hits=2, misses=1, maxsize=2, currsize=2)


def test_get_plan_refuses_a_malformed_document():
    with pytest.raises(errors.PlanError, match="malformed"):
        compiler.get_plan({"id": "x", "nodes": "not a list"})
