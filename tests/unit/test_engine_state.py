"""The execution state machine: routing, joins, fail-fast, the failure path, stops and restore."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.engine.state import ExecutionState, NodeStatus, Step
from runner.errors import ConditionError
from runner.plan.compiler import Plan, Route, compile_plan

S, F = "Succeeded", "Failed"
PENDING, RUNNING = NodeStatus.PENDING, NodeStatus.RUNNING
SUCCEEDED, FAILED = NodeStatus.SUCCEEDED, NodeStatus.FAILED
SKIPPED, CANCELLED = NodeStatus.SKIPPED, NodeStatus.CANCELLED


def node(node_id: str, *edges: str | dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A core.echo node; an edge is a target id or an edge mapping without `targetNode` spelled."""
    data: dict[str, Any] = {"id": node_id, "actionType": "core.echo", **extra}
    if edges:
        data["edges"] = [
            {"targetNode": e} if isinstance(e, str) else {"targetNode": e["to"], **_rest(e)}
            for e in edges
        ]
    return data


def _rest(edge: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in edge.items() if k != "to"}


def plan_of(*nodes: dict[str, Any], start: str = "a", **top: Any) -> Plan:
    document = {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": "w",
        "startNode": start,
        "nodes": list(nodes),
        **top,
    }
    return compile_plan(document)


def evaluate(route: Route) -> bool:
    """Conditions in these documents say what they evaluate to: "true", "false" or "throw"."""
    if route.condition == "throw":
        raise ConditionError(f"edge {route.source} -> {route.target}: boom")
    return route.condition == "true"


@dataclass
class Snapshot:
    """What a driver has recorded at one point of a run, and the state it had then."""

    finished: dict[str, NodeStatus]
    decisions: list[tuple[str, int, bool]]
    stop: tuple[str, str | None] | None
    statuses: dict[str, NodeStatus]
    ready: frozenset[str]
    running: frozenset[str]
    unhandled: str | None
    in_flight: list[str]
    queue: list[str]


@dataclass
class Driver:
    """A simulated conductor: runs ready nodes with scripted outcomes, one transition at a time.

    Running nodes end in `priority` order (default: topological); `stubborn` nodes finish with
    their result even when asked to cancel; `stop_after` calls fail()/cancel() after a node ends.
    """

    state: ExecutionState
    outcomes: Mapping[str, str] = field(default_factory=dict)
    priority: Mapping[str, int] = field(default_factory=dict)
    stop_after: Mapping[str, str] = field(default_factory=dict)
    stubborn: frozenset[str] = frozenset()
    limit: int = 1000
    results: dict[str, NodeStatus] = field(default_factory=dict)
    stop: tuple[str, str | None] | None = None
    running: list[str] = field(default_factory=list)
    queue: list[str] = field(default_factory=list)
    to_cancel: list[str] = field(default_factory=list)
    decisions: list[tuple[str, int, bool]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)

    def apply(self, step: Step) -> None:
        named = [*step.start, *step.skipped, *step.cancel]
        assert len(named) == len(set(named)), step
        order = self.state.plan.topological_order
        for part in (step.start, step.skipped, step.cancel):
            assert list(part) == sorted(part, key=order.index)
        assert (step.outcome is not None) == self.state.is_over
        self.steps.append(step)
        self.decisions.extend(step.decisions)
        for node_id in step.skipped:
            assert node_id not in self.results
            self.results[node_id] = SKIPPED
        self.to_cancel.extend(step.cancel)
        self.queue.extend(step.start)

    def snapshot(self) -> None:
        in_flight = {n: RUNNING for n in self.running}
        self.snapshots.append(
            Snapshot(
                finished={**self.results, **in_flight},
                decisions=list(self.decisions),
                stop=self.stop,
                statuses=dict(self.state.statuses),
                ready=self.state.ready,
                running=self.state.running,
                unhandled=self.state.unhandled,
                in_flight=list(self.running),
                queue=list(self.queue),
            )
        )

    def call_stop(self, kind: str, reason: str | None = None) -> None:
        if self.stop is None:
            self.stop = (kind, reason)
        self.apply(self.state.fail(reason or "") if kind == "fail" else self.state.cancel())

    def run(self, max_transitions: int = 10_000) -> ExecutionState:
        self.apply(self.state.begin())
        return self.go_on(max_transitions)

    def resume(self, step: Step, first: list[str], max_transitions: int = 10_000) -> ExecutionState:
        """Go on after a restore, starting again first what was in flight, then what was queued."""
        self.apply(step)
        self.queue.sort(key=lambda n: first.index(n) if n in first else len(first))
        return self.go_on(max_transitions)

    def go_on(self, max_transitions: int) -> ExecutionState:
        self.snapshot()
        for _ in range(max_transitions):
            if self.state.is_over:
                break
            self.transition()
            self.snapshot()
        assert self.state.is_over
        assert not self.running and not self.state.running
        assert tuple(self.decisions) == self.state.route_decisions
        return self.state

    def transition(self) -> None:
        while self.queue and len(self.running) < self.limit:
            node_id = self.queue.pop(0)
            if self.state.is_ready(node_id):  # fail-fast may have dropped a queued node
                self.state.node_started(node_id)
                self.running.append(node_id)
                return
        while self.to_cancel:
            node_id = self.to_cancel.pop(0)
            if node_id not in self.stubborn and node_id in self.running:
                self.running.remove(node_id)
                self.results[node_id] = CANCELLED
                self.apply(self.state.node_cancelled(node_id))
                return
        assert self.running, "nothing runs but the execution is not over"
        order = self.state.plan.topological_order
        node_id = min(self.running, key=lambda n: (self.priority.get(n, 0), order.index(n)))
        self.running.remove(node_id)
        outcome = self.outcomes.get(node_id, S)
        try:
            step = self.state.node_finished(node_id, outcome, evaluate)  # type: ignore[arg-type]
        except ConditionError as exc:
            self.call_stop("fail", str(exc))
            step = self.state.node_finished(node_id, outcome, evaluate)  # type: ignore[arg-type]
        self.results[node_id] = NodeStatus(outcome)
        self.apply(step)
        if node_id in self.stop_after and not self.state.is_over:
            self.call_stop(self.stop_after[node_id], f"stop after {node_id}")

    @property
    def started(self) -> list[str]:
        return [n for step in self.steps for n in step.start]


def run(plan: Plan, **script: Any) -> Driver:
    driver = Driver(ExecutionState(plan), **script)
    driver.run()
    return driver


def statuses(state: ExecutionState) -> dict[str, str]:
    return {k: v.value for k, v in state.statuses.items()}


# -- routing --------------------------------------------------------------------------------


def test_a_linear_chain_runs_in_order_and_succeeds():
    plan = plan_of(node("a", "b"), node("b", "c"), node("c"))
    driver = run(plan)
    assert driver.started == ["a", "b", "c"]
    assert driver.state.outcome == "Succeeded"
    assert set(statuses(driver.state).values()) == {"Succeeded"}
    assert driver.state.route_decisions == (("a", 0, True), ("b", 0, True))


def test_a_diamond_join_waits_for_both_branches():
    plan = plan_of(node("a", "b", "c"), node("b", "d"), node("c", "d"), node("d"))
    state = ExecutionState(plan)
    assert state.begin().start == ("a",)
    state.node_started("a")
    step = state.node_finished("a", S, evaluate)
    assert step.start == ("b", "c")
    state.node_started("b")
    state.node_started("c")
    assert state.node_finished("c", S, evaluate) == Step(decisions=(("c", 0, True),))
    assert state.statuses["d"] is PENDING and not state.is_ready("d")
    assert state.node_finished("b", S, evaluate).start == ("d",)
    state.node_started("d")
    assert state.node_finished("d", S, evaluate).outcome == "Succeeded"


def test_a_join_after_a_skipped_branch_still_runs():
    plan = plan_of(
        node("a", {"to": "b", "condition": "false"}, "c"), node("b", "d"), node("c", "d"), node("d")
    )
    driver = run(plan)
    assert driver.steps[1] == Step(
        start=("c",), skipped=("b",), decisions=(("a", 0, False), ("a", 1, True), ("b", 0, False))
    )
    assert statuses(driver.state) == {"a": S, "b": "Skipped", "c": S, "d": S}
    assert driver.state.outcome == "Succeeded"


def test_an_all_skipped_join_is_skipped_and_the_skip_propagates_in_one_step():
    plan = plan_of(
        node("a", {"to": "b", "condition": "false"}, {"to": "c", "condition": "false"}),
        node("b", "d"),
        node("c", "d"),
        node("d", "e", {"to": "f", "when": "always"}),
        node("e"),
        node("f"),
    )
    driver = run(plan)
    last = driver.steps[-1]
    assert last.skipped == ("b", "c", "d", "e", "f")
    assert last.outcome == "Succeeded"
    assert statuses(driver.state)["f"] == "Skipped"


def test_first_match_takes_the_first_true_route_in_document_order():
    seen: list[int] = []

    def spy(route: Route) -> bool:
        seen.append(route.order)
        return evaluate(route)

    plan = plan_of(
        node(
            "a",
            {"to": "b", "condition": "false"},
            {"to": "c", "condition": "true"},
            "d",
            {"to": "e", "condition": "true"},
            routePolicy="firstMatch",
        ),
        node("b"),
        node("c"),
        node("d"),
        node("e"),
    )
    state = ExecutionState(plan)
    state.begin()
    state.node_started("a")
    step = state.node_finished("a", S, spy)
    assert step.start == ("c",)
    assert step.skipped == ("b", "d", "e")
    assert seen == [0, 1]  # conditions after the first true one are never evaluated


def test_the_workflow_route_policy_applies_unless_the_node_sets_its_own():
    edges = ({"to": "b", "condition": "true"}, "c")
    plan = plan_of(
        node("a", *edges),
        node("b", "x", "y", routePolicy="parallel"),
        node("c"),
        node("x"),
        node("y"),
        options={"routePolicy": "firstMatch"},
    )
    driver = run(plan)
    assert statuses(driver.state) == {"a": S, "b": S, "c": "Skipped", "x": S, "y": S}


def test_always_routes_are_taken_on_success_and_on_failure():
    plan = plan_of(node("a", "b", {"to": "c", "when": "always"}), node("b"), node("c"))
    assert statuses(run(plan).state) == {"a": S, "b": S, "c": S}
    driver = run(plan, outcomes={"a": F})
    assert statuses(driver.state) == {"a": F, "b": "Skipped", "c": S}
    assert driver.state.outcome == "Succeeded"  # `always` handles the failure
    assert driver.state.unhandled is None


def test_a_taken_failure_edge_handles_the_failure():
    plan = plan_of(node("a", "b", {"to": "h", "when": "failure"}), node("b"), node("h"))
    driver = run(plan, outcomes={"a": F})
    assert statuses(driver.state) == {"a": F, "b": "Skipped", "h": S}
    assert driver.state.outcome == "Succeeded"
    assert run(plan).state.statuses["h"] is SKIPPED


def test_a_failure_edge_whose_condition_is_false_leaves_the_failure_unhandled():
    plan = plan_of(node("a", {"to": "h", "when": "failure", "condition": "false"}), node("h"))
    driver = run(plan, outcomes={"a": F})
    assert driver.state.outcome == "Failed"
    assert driver.state.unhandled == "a"


def test_a_node_on_failure_route_is_taken_when_it_fails():
    plan = plan_of(node("a", "b", onFailure="h"), node("b"), node("h", "i"), node("i"))
    driver = run(plan, outcomes={"a": F})
    assert statuses(driver.state) == {"a": F, "b": "Skipped", "h": S, "i": S}
    assert driver.state.outcome == "Succeeded"
    assert statuses(run(plan).state) == {"a": S, "b": S, "h": "Skipped", "i": "Skipped"}


def test_under_first_match_a_listed_failure_edge_wins_over_on_failure():
    plan = plan_of(
        node("a", {"to": "x", "when": "failure"}, onFailure="h", routePolicy="firstMatch"),
        node("x"),
        node("h"),
    )
    driver = run(plan, outcomes={"a": F})
    assert statuses(driver.state) == {"a": F, "x": S, "h": "Skipped"}


def test_unreachable_nodes_are_skipped_at_begin_and_do_not_hold_a_join():
    plan = plan_of(node("a", "j"), node("lost", "j"), node("j"))
    state = ExecutionState(plan)
    assert state.begin() == Step(start=("a",), skipped=("lost",), decisions=(("lost", 0, False),))
    state.node_started("a")
    assert state.node_finished("a", S, evaluate).start == ("j",)


# -- failures -------------------------------------------------------------------------------

FAIL_FAST = plan_of(
    node("a", "b", "c", "d"),
    node("b", "e"),
    node("c"),
    node("d"),
    node("e"),
    node("alert", "page"),
    node("page"),
    onFailure="alert",
)


def test_an_unhandled_failure_fails_fast_then_runs_the_failure_path():
    state = ExecutionState(FAIL_FAST)
    state.begin()
    state.node_started("a")
    assert state.node_finished("a", S, evaluate).start == ("b", "c", "d")
    state.node_started("b")
    state.node_started("c")  # d waits for a free slot
    step = state.node_finished("b", F, evaluate)
    assert step == Step(skipped=("e",), cancel=("c",), decisions=(("b", 0, False),))
    assert state.unhandled == "b" and not state.is_over
    with pytest.raises(ValueError, match="'d' is not ready"):
        state.node_started("d")
    assert state.node_cancelled("c") == Step(start=("alert",))
    state.node_started("alert")
    assert state.node_finished("alert", S, evaluate).start == ("page",)
    state.node_started("page")
    assert state.node_finished("page", S, evaluate).outcome == "Failed"
    assert statuses(state) == {
        "a": S,
        "b": F,
        "c": "Cancelled",
        "d": "Pending",  # ready but never started: it never ran
        "e": "Skipped",
        "alert": S,
        "page": S,
    }


def test_a_node_finishing_after_fail_fast_is_recorded_and_routes_nothing():
    driver = run(FAIL_FAST, outcomes={"b": F}, stubborn=frozenset({"c", "d"}), limit=3)
    assert statuses(driver.state) == {
        "a": S,
        "b": F,
        "c": S,
        "d": S,
        "e": "Skipped",
        "alert": S,
        "page": S,
    }
    assert driver.state.outcome == "Failed"
    assert not any(source in "cd" for source, _, _ in driver.state.route_decisions)


def test_an_unhandled_failure_without_a_failure_path_fails_once_nothing_runs():
    plan = plan_of(node("a", "b", "c"), node("b"), node("c"))
    driver = run(plan, outcomes={"b": F})
    assert statuses(driver.state) == {"a": S, "b": F, "c": "Cancelled"}
    assert driver.state.outcome == "Failed"


def test_the_failure_path_is_skipped_when_the_main_graph_succeeds():
    driver = run(FAIL_FAST)
    assert driver.steps[-1].skipped == ("alert", "page")
    assert driver.steps[-1].outcome == "Succeeded"
    assert statuses(driver.state)["alert"] == "Skipped"


def test_an_unhandled_failure_on_the_failure_path_stops_it():
    plan = plan_of(
        node("a"),
        node("alert", "p1", "p2"),
        node("p1", "p3"),
        node("p2"),
        node("p3"),
        onFailure="alert",
    )
    driver = run(plan, outcomes={"a": F, "p1": F})
    assert statuses(driver.state) == {
        "a": F,
        "alert": S,
        "p1": F,
        "p2": "Cancelled",
        "p3": "Skipped",
    }
    assert driver.state.outcome == "Failed" and driver.state.unhandled == "a"


def test_a_route_into_the_failure_path_is_inert_and_does_not_handle_a_failure():
    plan = plan_of(
        node("a", "b", {"to": "alert", "when": "failure"}),
        node("b", "page"),
        node("alert", "page"),
        node("page"),
        onFailure="alert",
    )
    driver = run(plan, outcomes={"a": F})
    assert driver.state.unhandled == "a"  # so the failure path runs as a whole
    assert driver.state.outcome == "Failed"
    assert statuses(driver.state) == {"a": F, "b": "Skipped", "alert": S, "page": S}
    driver = run(plan)
    assert statuses(driver.state) == {"a": S, "b": S, "alert": "Skipped", "page": "Skipped"}


def test_a_failure_path_that_starts_at_the_start_node_does_not_crash():
    plan = plan_of(node("a", "b"), node("b"), onFailure="a")
    assert run(plan).state.outcome == "Succeeded"
    assert run(plan, outcomes={"b": F}).state.outcome == "Failed"


# -- conditions, fail, cancel ---------------------------------------------------------------


def test_a_condition_that_raises_propagates_and_leaves_the_state_unchanged():
    plan = plan_of(
        node("a", "b", {"to": "c", "condition": "throw"}),
        node("b"),
        node("c"),
        node("alert"),
        onFailure="alert",
    )
    state = ExecutionState(plan)
    state.begin()
    state.node_started("a")
    before = (dict(state.statuses), state.route_decisions, state.ready, state.running)
    with pytest.raises(ConditionError, match="boom"):
        state.node_finished("a", S, evaluate)
    assert (dict(state.statuses), state.route_decisions, state.ready, state.running) == before
    assert state.fail("condition error") == Step(cancel=("a",))
    step = state.node_finished("a", S, evaluate)  # recorded, routes nothing, no failure path
    assert step == Step(outcome="Failed")
    assert statuses(state) == {"a": S, "b": "Pending", "c": "Pending", "alert": "Pending"}
    assert state.reason == "condition error" and state.unhandled is None


def test_fail_cancels_running_nodes_and_fails_once_none_runs():
    plan = plan_of(node("a", "b", "c", "d"), node("b", "e"), node("c"), node("d"), node("e"))
    state = ExecutionState(plan)
    state.begin()
    state.node_started("a")
    state.node_finished("a", S, evaluate)
    state.node_started("b")
    state.node_started("c")
    assert state.fail("execution timeout") == Step(cancel=("b", "c"))
    assert state.fail("again") == Step() and state.cancel() == Step()  # the first stop wins
    assert state.node_cancelled("b") == Step()
    assert state.node_finished("c", S, evaluate) == Step(outcome="Failed")
    assert statuses(state) == {"a": S, "b": "Cancelled", "c": S, "d": "Pending", "e": "Pending"}
    assert state.reason == "execution timeout"


def test_fail_with_nothing_running_fails_at_once():
    state = ExecutionState(FAIL_FAST)
    state.begin()
    assert state.fail("timeout") == Step(outcome="Failed")
    assert state.statuses["a"] is PENDING


def test_cancel_while_nodes_run_ends_cancelled_and_starts_nothing():
    plan = plan_of(node("a", "b", "c"), node("b", "d"), node("c", "d"), node("d"))
    driver = run(plan, stop_after={"a": "cancel"})  # b and c were ready, not started
    assert statuses(driver.state) == {"a": S, "b": "Pending", "c": "Pending", "d": "Pending"}
    assert driver.state.outcome == "Cancelled"
    state = ExecutionState(plan)
    state.begin()
    state.node_started("a")
    state.node_finished("a", S, evaluate)
    state.node_started("b")
    state.node_started("c")
    assert state.cancel() == Step(cancel=("b", "c"))
    assert state.node_finished("b", F, evaluate) == Step()  # recorded; no failure handling
    assert state.node_cancelled("c") == Step(outcome="Cancelled")
    assert statuses(state) == {"a": S, "b": F, "c": "Cancelled", "d": "Pending"}


def test_cancel_during_the_failure_path_ends_cancelled():
    driver = run(FAIL_FAST, outcomes={"a": F}, stop_after={"alert": "cancel"})
    assert driver.state.outcome == "Cancelled"
    assert statuses(driver.state)["page"] == "Pending"


def test_transitions_are_refused_out_of_turn():
    plan = plan_of(node("a", "b"), node("b"))
    state = ExecutionState(plan)
    with pytest.raises(ValueError, match="not running"):
        state.node_finished("a", S, evaluate)
    state.begin()
    with pytest.raises(ValueError, match="already begun"):
        state.begin()
    with pytest.raises(ValueError, match="'b' is not ready"):
        state.node_started("b")
    with pytest.raises(ValueError, match="not a node"):
        state.node_started("zz")
    state.node_started("a")
    with pytest.raises(ValueError, match="not asked to cancel"):
        state.node_cancelled("a")
    with pytest.raises(ValueError, match="'Succeeded' or 'Failed'"):
        state.node_finished("a", "Cancelled", evaluate)  # type: ignore[arg-type]
    state.node_finished("a", S, evaluate)
    state.node_started("b")
    assert state.node_finished("b", S, evaluate).outcome == "Succeeded"
    assert state.is_over
    for late in (state.fail, lambda _: state.cancel(), state.node_started):
        with pytest.raises(ValueError):
            late("b")
    with pytest.raises(ValueError, match="over"):
        state.node_finished("b", S, evaluate)


def test_statuses_are_a_read_only_view():
    state = ExecutionState(plan_of(node("a")))
    with pytest.raises(TypeError):
        state.statuses["a"] = SUCCEEDED  # type: ignore[index]


# -- restore --------------------------------------------------------------------------------


def restore_from(plan: Plan, snap: Snapshot) -> tuple[ExecutionState, Step]:
    kind, reason = snap.stop or (None, None)
    return ExecutionState.restore(
        plan,
        snap.finished,
        snap.decisions,
        failed=(reason or "") if kind == "fail" else None,
        cancelled=kind == "cancel",
    )


def check_restores(plan: Plan, **script: Any) -> Driver:
    """Restoring from what was recorded at every point of a run and going on ends the same."""
    original = run(plan, **script)
    for snap in original.snapshots:
        state, step = restore_from(plan, snap)
        assert list(state.route_decisions) == snap.decisions
        assert not step.decisions and not step.skipped  # everything was recorded already
        relaunched = snap.running - state.running
        assert state.ready == snap.ready | relaunched
        assert state.running <= snap.running
        expected = {n: PENDING if n in relaunched else s for n, s in snap.statuses.items()}
        assert dict(state.statuses) == expected
        if snap.stop is None:
            assert state.unhandled == snap.unhandled
        recorded = {n: s for n, s in snap.finished.items() if s is not RUNNING}
        resumed = Driver(state, **script, results=recorded, stop=snap.stop)
        resumed.running = list(step.cancel)
        resumed.decisions = list(snap.decisions)
        resumed.resume(step, snap.in_flight + snap.queue)
        assert dict(state.statuses) == dict(original.state.statuses)
        assert resumed.results == original.results
        assert state.outcome == original.state.outcome
        if original.stop is None:
            assert state.unhandled == original.state.unhandled
    return original


DIAMOND_WITH_FAILURE_PATH = plan_of(
    node("a", "b", {"to": "c", "condition": "true"}, {"to": "x", "condition": "false"}),
    node("b", "d", {"to": "h", "when": "failure"}),
    node("c", "d", onFailure="h2"),
    node("x", "d"),
    node("d", {"to": "e", "when": "always"}),
    node("e"),
    node("h"),
    node("h2", "d2"),
    node("d2"),
    node("alert", "page", {"to": "log", "when": "always"}),
    node("page"),
    node("log"),
    onFailure="alert",
)


@pytest.mark.parametrize(
    "script",
    [
        {},
        {"outcomes": {"b": F}},
        {"outcomes": {"c": F}},
        {"outcomes": {"d": F}, "priority": {"d": -1}},
        {"outcomes": {"c": F, "h2": F}},
        {"outcomes": {"c": F, "h2": F, "alert": F}, "limit": 1},
        {"outcomes": {"c": F, "h2": F}, "stubborn": frozenset({"b"}), "priority": {"b": 5}},
        {"stop_after": {"b": "cancel"}},
        {"stop_after": {"c": "fail"}, "stubborn": frozenset({"b"}), "priority": {"b": 5}},
        {"outcomes": {"e": F}, "stop_after": {"alert": "fail"}},
    ],
)
def test_restoring_at_any_point_ends_like_the_uninterrupted_run(script):
    check_restores(DIAMOND_WITH_FAILURE_PATH, **script)


def test_restoring_a_condition_error_ends_like_the_uninterrupted_run():
    plan = plan_of(
        node("a", "b", "c"), node("b", {"to": "d", "condition": "throw"}), node("c"), node("d")
    )
    original = check_restores(plan)
    assert original.state.outcome == "Failed" and original.stop is not None


def test_restoring_nothing_is_beginning():
    state, step = ExecutionState.restore(FAIL_FAST, {}, [])
    assert step == Step(start=("a",))
    assert state.ready == {"a"}


def test_restore_starts_in_flight_nodes_again_and_records_what_was_not():
    plan = plan_of(
        node("a", "b", {"to": "c", "condition": "false"}), node("b"), node("c", "d"), node("d")
    )
    finished = {"a": SUCCEEDED, "b": RUNNING}
    state, step = ExecutionState.restore(plan, finished, [("a", 0, True), ("a", 1, False)])
    # The crash came after a's result and routes, before its dead branch was recorded.
    assert step == Step(start=("b",), skipped=("c", "d"), decisions=(("c", 0, False),))
    assert dict(state.statuses) == {"a": SUCCEEDED, "b": PENDING, "c": SKIPPED, "d": SKIPPED}


@pytest.mark.parametrize(
    ("finished", "decisions", "message"),
    [
        ({"b": SUCCEEDED}, [], "never made it ready"),
        ({"a": SUCCEEDED}, [], "no route decisions are recorded"),
        ({"a": SUCCEEDED}, [("a", 0, False), ("a", 1, False)], "contradict"),
        ({"a": SUCCEEDED}, [("a", 0, True)], "no decision is recorded for route 1"),
        ({"a": SUCCEEDED}, [("a", 0, True), ("a", 1, False), ("b", 0, True)], "does not follow"),
        ({"zz": SUCCEEDED}, [], "no node 'zz'"),
        ({"a": CANCELLED}, [], "not asked to cancel"),
        ({"c": SKIPPED}, [], "recorded Skipped"),
    ],
)
def test_restore_refuses_a_record_that_contradicts_itself(finished, decisions, message):
    plan = plan_of(node("a", "b", {"to": "c", "condition": "false"}), node("b"), node("c"))
    with pytest.raises(ValueError, match=message):
        ExecutionState.restore(plan, finished, decisions)


# -- properties over random workflows ---------------------------------------------------------


WHENS = st.sampled_from(["success", "success", "success", "failure", "always"])
CONDITIONS = st.sampled_from(
    [{}, {}, {}, {}, {"condition": "true"}, {"condition": "false"}] * 4 + [{"condition": "throw"}]
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Plan, dict[str, Any]]:
    """A random DAG (every node has a parent, plus extra edges), outcomes and a driver script."""
    size = draw(st.integers(2, 8))
    ids = [f"n{i}" for i in range(size)]
    edges: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in ids}
    for i in range(1, size):
        parent = draw(st.sampled_from(ids[:i]))
        edges[parent][ids[i]] = {"to": ids[i], "when": draw(WHENS), **draw(CONDITIONS)}
    for i, source in enumerate(ids[:-1]):
        for target in draw(st.lists(st.sampled_from(ids[i + 1 :]), unique=True, max_size=2)):
            edges[source][target] = {"to": target, "when": draw(WHENS), **draw(CONDITIONS)}
    nodes = []
    for i, node_id in enumerate(ids):
        extra: dict[str, Any] = {}
        if i < size - 1 and draw(st.integers(0, 3)) == 0:
            extra["onFailure"] = draw(st.sampled_from(ids[i + 1 :]))
        if draw(st.integers(0, 3)) == 0:
            extra["routePolicy"] = "firstMatch"
        nodes.append(node(node_id, *edges[node_id].values(), **extra))
    top: dict[str, Any] = {}
    if draw(st.booleans()):
        top["onFailure"] = draw(st.sampled_from(ids))
    plan = plan_of(*nodes, start="n0", **top)
    script: dict[str, Any] = {
        "outcomes": {n: F for n in ids if draw(st.integers(0, 3)) == 0},
        "priority": {n: draw(st.integers(0, 3)) for n in ids},
        "limit": draw(st.integers(1, 4)),
        "stubborn": frozenset(n for n in ids if draw(st.integers(0, 4)) == 0),
    }
    if draw(st.integers(0, 3)) == 0:
        script["stop_after"] = {
            draw(st.sampled_from(ids)): draw(st.sampled_from(["fail", "cancel"]))
        }
    return plan, script


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_workflows_end_and_restore_like_the_uninterrupted_run(scenario):
    plan, script = scenario
    original = check_restores(plan, **script)
    state = original.state
    assert RUNNING not in state.statuses.values()
    if state.outcome == "Succeeded":
        assert PENDING not in state.statuses.values()
        assert state.unhandled is None
    if state.unhandled is not None:
        assert state.statuses[state.unhandled] is FAILED
    started = original.started
    assert len(started) == len(set(started))
    assert {n for n, s in state.statuses.items() if s in (SUCCEEDED, FAILED)} <= set(started)
