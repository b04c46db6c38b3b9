"""Graph rules: ids, targets, cycles (with their path) and reachability."""

from __future__ import annotations

from runner.spec import structure
from runner.spec.model import Workflow


def wf(nodes, start="a", on_failure=None):
    data = {"id": "w", "startNode": start, "nodes": nodes}
    if on_failure:
        data["onFailure"] = on_failure
    return Workflow.from_data(data)


def node(node_id, *targets, on_failure=None, when="success"):
    data = {"id": node_id, "actionType": "core.echo", "parameters": {"message": node_id}}
    data["edges"] = [{"targetNode": t, "when": when} for t in targets]
    if on_failure:
        data["onFailure"] = on_failure
    return data


def rules(findings):
    return [(f.rule, f.path) for f in findings]


def test_a_clean_dag_has_no_findings():
    assert (
        structure.check(wf([node("a", "b", "c"), node("b", "d"), node("c", "d"), node("d")])) == []
    )


def test_duplicate_id_points_at_the_second_node():
    findings = structure.check(wf([node("a", "b"), node("b"), node("b")]))
    assert rules(findings) == [("duplicate-node-id", ("nodes", 2, "id"))]
    assert "nodes[1]" in findings[0].message


def test_unknown_targets_name_the_known_nodes():
    findings = structure.check(wf([node("a", "zz", on_failure="yy")], on_failure="xx"))
    assert ("unknown-edge-target", ("nodes", 0, "edges", 0, "targetNode")) in rules(findings)
    assert ("unknown-on-failure-target", ("nodes", 0, "onFailure")) in rules(findings)
    assert ("unknown-on-failure-target", ("onFailure",)) in rules(findings)
    assert "nodes: a" in findings[0].message


def test_unknown_start_node():
    assert rules(structure.check(wf([node("a")], start="nope"))) == [
        ("unknown-start-node", ("startNode",))
    ]


def test_cycle_names_its_path_at_the_closing_edge():
    findings = structure.check(wf([node("a", "b"), node("b", "c"), node("c", "a")]))
    assert rules(findings) == [("cycle", ("nodes", 2, "edges", 0, "targetNode"))]
    assert "a -> b -> c -> a" in findings[0].message


def test_independent_cycles_are_each_reported():
    findings = structure.check(
        wf([node("a", "b", "d"), node("b", "a"), node("d", "e"), node("e", "d")])
    )
    assert [f.rule for f in findings] == ["cycle", "cycle"]


def test_unreachable_node_but_failure_path_counts_as_reachable():
    findings = structure.check(
        wf([node("a"), node("alert", "page"), node("page"), node("orphan")], on_failure="alert")
    )
    assert rules(findings) == [("unreachable-node", ("nodes", 3, "id"))]


def test_ancestors_and_failure_path():
    workflow = wf(
        [node("a", "b", "c"), node("b", "d"), node("c", "d"), node("d"), node("x", "y"), node("y")],
        on_failure="x",
    )
    assert structure.ancestors(workflow)["d"] == {"a", "b", "c"}
    assert structure.failure_path(workflow) == {"x", "y"}
