"""The decision core of one execution: which nodes are ready, which routes are taken (SPEC §4).

A pure state machine over a compiled plan: no I/O, no clock, no asyncio. A driver reports what
happened (`node_started`, `node_finished`, `node_cancelled`, `fail`, `cancel`) and gets back a
`Step` saying what to do (start, record as skipped, cancel, record the outcome). Routing is
dead-path elimination over the superset graph: every route of a finished node is resolved as taken
or skipped, a join waits until all its incoming routes are resolved, and a node none of whose
incoming routes was taken is Skipped, which skips its own routes in turn.

Driver protocol: start `Step.start` nodes only while `is_ready` (fail-fast drops queued ones);
record each node result together with its `Step.decisions` (one transaction), since `restore`
replays those instead of re-evaluating conditions. When `node_finished` raises (a condition
error) the state is unchanged: call `fail`, whose Step lists that node in `cancel`, then report
its result again; after a stop results are recorded without routing.

Decisions the spec leaves open:

- Fail-fast leaves ready nodes that were not started `Pending` (never run); running ones are
  cancelled. The failed node's own routes are still resolved (its dead paths are recorded
  Skipped), but nodes finishing after fail-fast, `fail` or `cancel` route nothing.
- A route from a main-path node into the failure path is decided and recorded like any other,
  but it is inert: it never makes its target ready and never handles a failure, so a failure
  "handled" only by such a route is unhandled and the failure path runs as a whole.
- An unhandled failure inside the failure path stops it fast (no second failure path);
  `unhandled` keeps the main-path node that started it.
- Nodes other than the start node with no incoming route (unreachable; lint refuses them) are
  Skipped by `begin`, so a join they feed is not held up. An unused failure path is Skipped in
  the Step that says Succeeded.
- `fail` and `cancel`: the first one wins, a later call is a no-op. A node cancelled without
  being asked (its own timeout) is a driver error: report it as Failed.
- `restore` re-attempts attempts lost with the crash; when the execution was already stopping
  they are listed in `cancel` (no live attempt: record them Cancelled, call `node_cancelled`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from runner.plan.compiler import Plan, Route

Outcome = Literal["Succeeded", "Failed", "Cancelled"]
NodeOutcome = Literal["Succeeded", "Failed"]
#: One resolved route: (source node, route order, taken).
RouteDecision = tuple[str, int, bool]


class NodeStatus(StrEnum):
    """Where a node stands in one execution."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    CANCELLED = "Cancelled"


@dataclass(frozen=True, slots=True)
class Step:
    """What the driver must do after a transition; node lists are in topological order."""

    start: tuple[str, ...] = ()
    """Nodes that became ready: start them (at most `maxParallelActions` at once)."""
    skipped: tuple[str, ...] = ()
    """Nodes newly decided Skipped: record them."""
    cancel: tuple[str, ...] = ()
    """Running nodes to cancel now; report each with `node_cancelled` (or `node_finished`)."""
    outcome: Outcome | None = None
    """The execution's outcome, set once it is over."""
    decisions: tuple[RouteDecision, ...] = ()
    """Routes resolved by this transition: record them with the node result, for `restore`."""


_NOTHING = Step()

# Phases of an execution. Only _MAIN and _FAILURE_PATH route finished nodes; in the others a
# result is recorded and nothing new starts.
_NEW = "new"
_MAIN = "main"
_FAILING = "failing"  # an unhandled failure: waiting for running nodes, then the failure path
_FAILURE_PATH = "failure-path"
_ABORTING = "aborting"  # fail(), or an unhandled failure on the failure path: stop, then Failed
_CANCELLING = "cancelling"
_OVER = "over"
_ROUTING = frozenset({_MAIN, _FAILURE_PATH})

_RESULTS = {"Succeeded": NodeStatus.SUCCEEDED, "Failed": NodeStatus.FAILED}
_MATCHING_WHEN = {NodeStatus.SUCCEEDED: "success", NodeStatus.FAILED: "failure"}


class _Layout:
    """What every execution of one plan needs, derived once per plan."""

    __slots__ = (
        "entry",
        "failure_entry",
        "first_match",
        "handles",
        "incoming",
        "index",
        "links",
        "no_routes",
        "order",
        "routes",
        "unreachable",
    )

    def __init__(self, plan: Plan) -> None:
        failure_path = plan.failure_path
        policy = plan.workflow.options.route_policy
        self.order = plan.topological_order
        self.index = {node_id: i for i, node_id in enumerate(self.order)}
        self.entry = plan.entry_node
        self.failure_entry = plan.failure_entry
        self.routes: dict[str, tuple[Route, ...]] = {}
        # (route order, target), target None for an inert main-to-failure-path route.
        self.links: dict[str, tuple[tuple[int, str | None], ...]] = {}
        self.handles: dict[str, tuple[bool, ...]] = {}
        self.no_routes: dict[str, tuple[bool, ...]] = {}
        self.first_match: dict[str, bool] = {}
        self.incoming = dict.fromkeys(self.order, 0)
        for node_id in self.order:
            routes = plan.outgoing(node_id)
            inside = node_id in failure_path
            live = [inside or route.target not in failure_path for route in routes]
            self.routes[node_id] = routes
            self.links[node_id] = tuple(
                (route.order, route.target if counted else None)
                for route, counted in zip(routes, live, strict=True)
            )
            self.handles[node_id] = tuple(
                counted and route.when != "success"
                for route, counted in zip(routes, live, strict=True)
            )
            self.no_routes[node_id] = (False,) * len(routes)
            node_policy = plan.node(node_id).route_policy
            self.first_match[node_id] = (node_policy or policy) == "firstMatch"
            for route, counted in zip(routes, live, strict=True):
                if counted:
                    self.incoming[route.target] += 1
        self.unreachable = tuple(
            node_id
            for node_id in self.order
            if self.incoming[node_id] == 0 and node_id != self.entry and node_id not in failure_path
        )


# Plans are immutable and compare by identity, so one layout per plan object is safe to share.
_LAYOUTS: weakref.WeakKeyDictionary[Plan, _Layout] = weakref.WeakKeyDictionary()


def _layout(plan: Plan) -> _Layout:
    layout = _LAYOUTS.get(plan)
    if layout is None:
        layout = _LAYOUTS[plan] = _Layout(plan)
    return layout


class ExecutionState:
    """The routing state of one execution of a plan; every transition returns a `Step`."""

    __slots__ = (
        "_cancelling",
        "_layout",
        "_log",
        "_outcome",
        "_phase",
        "_plan",
        "_ready",
        "_reason",
        "_running",
        "_status",
        "_statuses",
        "_taken",
        "_unhandled",
        "_waiting",
    )

    def __init__(self, plan: Plan) -> None:
        layout = _layout(plan)
        self._plan = plan
        self._layout = layout
        self._status = dict.fromkeys(layout.order, NodeStatus.PENDING)
        self._statuses = MappingProxyType(self._status)
        self._waiting = dict(layout.incoming)
        self._taken = dict.fromkeys(layout.order, 0)
        self._ready: set[str] = set()
        self._running: set[str] = set()
        self._cancelling: set[str] = set()
        self._log: list[RouteDecision] = []
        self._phase = _NEW
        self._unhandled: str | None = None
        self._reason: str | None = None
        self._outcome: Outcome | None = None

    # -- what the driver reads ------------------------------------------------------------

    @property
    def plan(self) -> Plan:
        """The plan this execution runs."""
        return self._plan

    @property
    def statuses(self) -> Mapping[str, NodeStatus]:
        """Every node's status (a read-only live view); ready nodes are still Pending."""
        return self._statuses

    @property
    def route_decisions(self) -> tuple[RouteDecision, ...]:
        """Every resolved route so far, in the order resolved: what `restore` replays."""
        return tuple(self._log)

    @property
    def ready(self) -> frozenset[str]:
        """Nodes returned in `Step.start` and not started yet."""
        return frozenset(self._ready)

    @property
    def running(self) -> frozenset[str]:
        """Nodes started and not finished yet."""
        return frozenset(self._running)

    def is_ready(self, node_id: str) -> bool:
        """Whether `node_started(node_id)` is allowed now (a queued node may have been dropped)."""
        return node_id in self._ready

    @property
    def unhandled(self) -> str | None:
        """The node whose unhandled failure failed the execution, if one did."""
        return self._unhandled

    @property
    def reason(self) -> str | None:
        """The reason given to `fail`, if it was called."""
        return self._reason

    @property
    def outcome(self) -> Outcome | None:
        """The execution's outcome once it is over."""
        return self._outcome

    @property
    def is_over(self) -> bool:
        """Whether the execution has its outcome; every transition then raises ValueError."""
        return self._phase is _OVER

    # -- transitions ----------------------------------------------------------------------

    def begin(self) -> Step:
        """Start the execution: the entry node is ready, unreachable nodes are Skipped."""
        if self._phase is not _NEW:
            raise ValueError("the execution has already begun")
        self._phase = _MAIN
        entry = self._layout.entry
        self._ready.add(entry)
        start, skipped = [entry], []
        for node_id in self._layout.unreachable:
            self._status[node_id] = NodeStatus.SKIPPED
            skipped.append(node_id)
            self._resolve(node_id, self._layout.no_routes[node_id], start, skipped)
        return self._step(0, start, skipped, ())

    def node_started(self, node_id: str) -> None:
        """A ready node was started; ValueError if it is not ready (any more)."""
        if node_id not in self._ready:
            raise ValueError(f"node {node_id!r} is not ready (it is {self._describe(node_id)})")
        self._ready.remove(node_id)
        self._running.add(node_id)
        self._status[node_id] = NodeStatus.RUNNING

    def node_finished(
        self, node_id: str, outcome: NodeOutcome, evaluate: Callable[[Route], bool]
    ) -> Step:
        """A running node ended: resolve its routes, asking `evaluate` only for matching conditions.

        An exception from `evaluate` propagates and leaves the state unchanged (see the module).
        """
        self._check_running(node_id)
        try:
            status = _RESULTS[outcome]
        except KeyError:
            raise ValueError(f"a node ends 'Succeeded' or 'Failed', not {outcome!r}") from None
        mark = len(self._log)
        if self._phase not in _ROUTING or node_id in self._cancelling:
            self._running.remove(node_id)
            self._cancelling.discard(node_id)
            self._status[node_id] = status
            return self._step(mark, [], [], ())
        taken = self._decide(node_id, status, evaluate)  # may raise: nothing has changed yet
        self._running.remove(node_id)
        self._status[node_id] = status
        start: list[str] = []
        skipped: list[str] = []
        self._resolve(node_id, taken, start, skipped)
        cancel: list[str] = []
        if status is NodeStatus.FAILED and not any(
            t and h for t, h in zip(taken, self._layout.handles[node_id], strict=True)
        ):
            if self._phase is _MAIN:
                self._phase = _FAILING
                self._unhandled = node_id
            else:
                self._phase = _ABORTING
            start = []
            self._ready.clear()
            cancel = self._request_cancel()
        return self._step(mark, start, skipped, cancel)

    def node_cancelled(self, node_id: str) -> Step:
        """A node listed in a `Step.cancel` stopped; it is recorded Cancelled and routes nothing."""
        self._check_running(node_id)
        if node_id not in self._cancelling:
            raise ValueError(
                f"node {node_id!r} was not asked to cancel; report an attempt that stopped on "
                "its own (its timeout) as Failed"
            )
        self._running.remove(node_id)
        self._cancelling.remove(node_id)
        self._status[node_id] = NodeStatus.CANCELLED
        return self._step(len(self._log), [], [], ())

    def fail(self, reason: str) -> Step:
        """Fail the execution (condition error, execution timeout): stop fast, no failure path."""
        if self._phase is _OVER:
            raise ValueError(f"the execution is over ({self._outcome})")
        if self._phase in (_ABORTING, _CANCELLING):
            return _NOTHING
        self._phase = _ABORTING
        self._reason = reason
        self._ready.clear()
        return self._step(len(self._log), [], [], self._request_cancel())

    def cancel(self) -> Step:
        """Cancel the execution: cancel running nodes, start nothing; Cancelled once none runs."""
        if self._phase is _OVER:
            raise ValueError(f"the execution is over ({self._outcome})")
        if self._phase in (_ABORTING, _CANCELLING):
            return _NOTHING
        self._phase = _CANCELLING
        self._ready.clear()
        return self._step(len(self._log), [], [], self._request_cancel())

    # -- resuming -------------------------------------------------------------------------

    @classmethod
    def restore(
        cls,
        plan: Plan,
        finished: Mapping[str, NodeStatus | str],
        route_decisions: Iterable[RouteDecision],
        *,
        failed: str | None = None,
        cancelled: bool = False,
    ) -> tuple[ExecutionState, Step]:
        """Rebuild the state from recorded results (in recorded order) and route decisions.

        `failed`/`cancelled`: `fail(reason)`/`cancel()` had been called. ValueError for a record
        that contradicts the plan or itself; the Step says what to do now.
        """
        if failed is not None and cancelled:
            raise ValueError("an execution is either failed or cancelled, not both")
        state = cls(plan)
        recorded = list(route_decisions)
        by_source: dict[str, dict[int, bool]] = {}
        for source, order, taken in recorded:
            by_source.setdefault(source, {})[order] = taken
        attempted: set[str] = set()
        results: list[tuple[str, NodeStatus]] = []
        recorded_skipped: set[str] = set()
        for node_id, raw in finished.items():
            if node_id not in state._status:
                raise ValueError(f"workflow {plan.workflow.id!r} has no node {node_id!r}")
            status = NodeStatus(raw)
            if status is NodeStatus.SKIPPED:
                recorded_skipped.add(node_id)
            elif status is not NodeStatus.PENDING:
                attempted.add(node_id)
                if status is not NodeStatus.RUNNING:
                    results.append((node_id, status))
        # The record does not say when fail()/cancel() came, so it is replayed at the earliest
        # point the record allows: after the last result that routed (nothing routes after a
        # stop) and after the failure path started if it did. Results between that point and
        # the real stop come from running nodes either way, so statuses and outcome match.
        stop_pending = failed is not None or cancelled
        last_routed = max((i for i, (n, _) in enumerate(results) if n in by_source), default=-1)
        failure_entry = plan.failure_entry if plan.failure_entry in attempted else None
        state.begin()
        state._start(attempted)
        for index, (node_id, status) in enumerate(results):
            if state.is_over:
                raise ValueError(f"node {node_id!r} has a result recorded after the outcome")
            if (
                stop_pending
                and index > last_routed
                and (
                    failure_entry is None or state._status[failure_entry] is not NodeStatus.PENDING
                )
            ):
                stop_pending = False
                state._stop(failed)
            if status is NodeStatus.CANCELLED:
                state.node_cancelled(node_id)
            else:
                state._replay_finished(node_id, status, by_source.get(node_id))
            state._start(attempted)
        if stop_pending and not state.is_over:
            state._stop(failed)
        state._check_record(recorded, recorded_skipped)
        # Attempts lost with the crash: started again while routing (when stopping they are
        # all in `cancel`, which the driver records Cancelled and reports to node_cancelled).
        for node_id in state._running - state._cancelling:
            state._running.remove(node_id)
            state._status[node_id] = NodeStatus.PENDING
            state._ready.add(node_id)
        known = set(recorded)
        newly_skipped = [
            n
            for n, s in state._status.items()
            if s is NodeStatus.SKIPPED and n not in recorded_skipped
        ]
        key = state._layout.index.__getitem__
        step = Step(
            start=tuple(sorted(state._ready, key=key)),
            skipped=tuple(sorted(newly_skipped, key=key)),
            cancel=tuple(sorted(state._running, key=key)),
            outcome=state._outcome,
            decisions=tuple(d for d in state._log if d not in known),
        )
        return state, step

    def _stop(self, failed: str | None) -> None:
        if failed is not None:
            self.fail(failed)
        else:
            self.cancel()

    def _replay_finished(
        self, node_id: str, status: NodeStatus, decisions: Mapping[int, bool] | None
    ) -> None:
        if self._status[node_id] is not NodeStatus.RUNNING:
            raise ValueError(
                f"node {node_id!r} has a result but the recorded route decisions never made it "
                f"ready (it is {self._describe(node_id)})"
            )
        routes = self._layout.routes[node_id]
        routes_now = bool(routes) and self._phase in _ROUTING and node_id not in self._cancelling
        if routes_now and decisions is None:
            raise ValueError(f"no route decisions are recorded for node {node_id!r}")
        known = decisions or {}

        def recorded(route: Route) -> bool:
            try:
                return known[route.order]
            except KeyError:
                raise ValueError(
                    f"no decision is recorded for route {route.order} of node {node_id!r}"
                ) from None

        mark = len(self._log)
        # `restore` hands over only Succeeded and Failed results, the NodeOutcome values.
        self.node_finished(node_id, status.value, recorded)  # type: ignore[arg-type]  # see above
        produced = {order: taken for _, order, taken in self._log[mark : mark + len(routes)]}
        if routes_now and produced != known:
            raise ValueError(f"the recorded route decisions of node {node_id!r} contradict")

    def _check_record(self, recorded: list[RouteDecision], skipped: set[str]) -> None:
        missing = set(recorded) - set(self._log)
        if missing:
            source, order, taken = min(missing, key=recorded.index)
            raise ValueError(
                f"recorded route decision {order} of node {source!r} (taken={taken}) does not "
                "follow from the recorded results"
            )
        for node_id in skipped:
            if self._status[node_id] is not NodeStatus.SKIPPED:
                raise ValueError(f"node {node_id!r} is recorded Skipped but would not be skipped")

    # -- internals ------------------------------------------------------------------------

    def _start(self, attempted: set[str]) -> None:
        for node_id in sorted(self._ready & attempted, key=self._layout.index.__getitem__):
            self.node_started(node_id)

    def _check_running(self, node_id: str) -> None:
        if self._phase is _OVER:
            raise ValueError(f"the execution is over ({self._outcome})")
        if node_id not in self._running:
            raise ValueError(f"node {node_id!r} is not running (it is {self._describe(node_id)})")

    def _describe(self, node_id: str) -> str:
        status = self._status.get(node_id)
        if status is None:
            return f"not a node of workflow {self._plan.workflow.id!r}"
        return "ready" if node_id in self._ready else status.value

    def _decide(
        self, node_id: str, status: NodeStatus, evaluate: Callable[[Route], bool]
    ) -> tuple[bool, ...]:
        when = _MATCHING_WHEN[status]
        first_match = self._layout.first_match[node_id]
        found = False
        taken: list[bool] = []
        for route in self._layout.routes[node_id]:
            if found or route.when not in (when, "always"):
                taken.append(False)
                continue
            ok = route.condition is None or bool(evaluate(route))
            taken.append(ok)
            found = ok and first_match
        return tuple(taken)

    def _resolve(
        self, source: str, taken: tuple[bool, ...], start: list[str], skipped: list[str]
    ) -> None:
        # Skips propagate with an explicit stack: a long skipped chain must not recurse.
        layout, log, status = self._layout, self._log, self._status
        waiting, taken_in, ready = self._waiting, self._taken, self._ready
        stack = [(source, taken)]
        while stack:
            node_id, flags = stack.pop()
            for (order, target), flag in zip(layout.links[node_id], flags, strict=True):
                log.append((node_id, order, flag))
                if target is None:
                    continue
                if flag:
                    taken_in[target] += 1
                left = waiting[target] - 1
                waiting[target] = left
                if left or status[target] is not NodeStatus.PENDING or target in ready:
                    continue
                if taken_in[target]:
                    ready.add(target)
                    start.append(target)
                else:
                    status[target] = NodeStatus.SKIPPED
                    skipped.append(target)
                    stack.append((target, layout.no_routes[target]))

    def _request_cancel(self) -> list[str]:
        fresh = self._running - self._cancelling
        self._cancelling |= fresh
        return list(fresh)

    def _step(self, mark: int, start: list[str], skipped: list[str], cancel: Iterable[str]) -> Step:
        outcome: Outcome | None = None
        if not self._running and not self._ready:
            outcome = self._settle(start, skipped)
        key = self._layout.index.__getitem__
        return Step(
            start=tuple(sorted(start, key=key)) if len(start) > 1 else tuple(start),
            skipped=tuple(sorted(skipped, key=key)) if len(skipped) > 1 else tuple(skipped),
            cancel=tuple(sorted(cancel, key=key)),
            outcome=outcome,
            decisions=tuple(self._log[mark:]),
        )

    def _settle(self, start: list[str], skipped: list[str]) -> Outcome | None:
        # Nothing runs and nothing is ready: the phase is done.
        phase = self._phase
        outcome: Outcome
        if phase is _MAIN:
            # What is still Pending now is the unused failure path (or fed only by it).
            rest = [n for n in self._layout.order if self._status[n] is NodeStatus.PENDING]
            for node_id in rest:
                self._status[node_id] = NodeStatus.SKIPPED
            skipped.extend(rest)
            outcome = "Succeeded"
        elif phase is _FAILING:
            entry = self._layout.failure_entry
            if entry is not None and self._status[entry] is NodeStatus.PENDING:
                self._phase = _FAILURE_PATH
                self._ready.add(entry)
                start.append(entry)
                return None
            outcome = "Failed"
        elif phase is _CANCELLING:
            outcome = "Cancelled"
        else:
            outcome = "Failed"
        self._phase = _OVER
        self._outcome = outcome
        return outcome
