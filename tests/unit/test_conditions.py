"""Evaluating conditions at run time (runner/engine/conditions.py) in fresh QuickJS contexts."""

from __future__ import annotations

import copy
import threading
import time
from types import MappingProxyType
from typing import Any

import pytest

from runner.engine import conditions
from runner.errors import ConditionError

WHERE = "edge fetch -> post (nodes[0].edges[0])"


def scope() -> dict[str, Any]:
    return {
        "trigger": {"kind": "client", "boardId": 42, "name": "Zoë — 計画 🚀", "min": 2},
        "event": {"type": "webhook", "headers": {"x-id": "h"}},
        "vars": {"region": "eu", "limits": {"max": [1, 2, {"deep": True}]}},
        "nodes": {
            "a": {"status": "Succeeded", "outputs": {"count": 3}, "error": None, "attempts": 1},
        },
        "execution": {"id": "e-1", "workflowId": "wf"},
        "result": {"status": "Succeeded", "outputs": {"count": 3, "items": []}},
    }


def evaluate(source: str, data: Any = None, **limits: Any) -> bool:
    return conditions.evaluate(source, scope() if data is None else data, where=WHERE, **limits)


def failure(source: str, data: Any = None, **limits: Any) -> str:
    with pytest.raises(ConditionError) as info:
        evaluate(source, data, **limits)
    message = str(info.value)
    assert message.startswith(f"condition on {WHERE} "), message
    return message


# --- results --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("true", True),
        ("false", False),
        ("result.outputs.count > 0", True),
        ("result.outputs.count > trigger.min + 5", False),
        ("nodes['a'].status === 'Succeeded'", True),
        ("trigger.kind === 'client'", True),
        ("event.type === 'webhook' && execution.workflowId === 'wf'", True),
        ("vars.limits.max[2].deep === true", True),
        ("trigger.name === 'Zoë — 計画 🚀' && [...trigger.name].length === 10", True),
        ("result.outputs.items.length === 0", True),
        ("nodes.missing === undefined", True),
    ],
)
def test_conditions_read_the_scope(source: str, expected: bool) -> None:
    assert evaluate(source) is expected


def test_missing_scope_names_are_null_and_model_mappings_are_accepted() -> None:
    data = {"trigger": MappingProxyType({"tags": ("a", "b")})}
    assert evaluate("trigger.tags[1] === 'b' && result === null && nodes === null", data)


def test_the_scope_is_not_changed() -> None:
    data = scope()
    before = copy.deepcopy(data)
    assert evaluate("(trigger.kind = 'x', delete result.outputs, nodes.a.status = 0, true)", data)
    assert data == before


@pytest.mark.parametrize(
    ("source", "described"),
    [
        ("3", "the number 3"),
        ("result.outputs.count", "the number 3"),
        ("1.5", "the number 1.5"),
        ("'yes'", 'the string "yes"'),
        ("undefined", "null or undefined"),
        ("null", "null or undefined"),
        ("result.outputs.nope", "null or undefined"),
        ("[true]", "an array"),
        ("({ok: true})", "an object"),
        ("() => true", "a function"),
        ("10n", "a BigInt or another non-JSON value"),
    ],
)
def test_anything_but_a_boolean_is_an_error(source: str, described: str) -> None:
    message = failure(source)
    assert f"must return true or false; it returned {described}" in message


# --- failures -----------------------------------------------------------------------------------


def test_a_throw_is_an_error_with_its_message() -> None:
    assert "threw Error: boom" in failure("(() => { throw new Error('boom') })()")
    assert "threw TypeError" in failure("result.outputs.nope.deeper")
    assert "threw 3" in failure("(() => { throw 3 })()")


def test_a_syntax_error_is_an_error() -> None:
    assert "does not compile" in failure("result.outputs.count >")


def test_a_runaway_loop_times_out_at_about_the_limit() -> None:
    started = time.perf_counter()
    message = failure("(() => { while (true) {} })()")
    assert "took longer than 50 ms" in message
    assert time.perf_counter() - started < 2


def test_the_time_limit_is_configurable() -> None:
    message = failure("(() => { while (true) {} })()", time_limit=0.01)
    assert "took longer than 10 ms" in message


def test_a_catastrophic_regex_is_interrupted() -> None:
    started = time.perf_counter()
    assert "took longer than" in failure("/(a+)+$/.test('a'.repeat(40) + 'b')")
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    "source",
    [
        "'a'.repeat(2 ** 28).length > 0",
        "(() => { const a = []; while (true) a.push(new Array(100000).fill(1)); })()",
        "(() => { let s = 'ab'; while (true) s = s + s + '!'; })()",
    ],
)
def test_a_memory_bomb_is_refused(source: str) -> None:
    started = time.perf_counter()
    message = failure(source)
    refusals = ("ran out of memory (limit 32 MiB)", "string too long", "took longer than")
    assert any(refusal in message for refusal in refusals), message
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    "source",
    [
        # QuickJS has no memory left to make its error: it throws null (or nothing at all).
        "[...'a'.repeat(1e7)].length > 0",
        "JSON.stringify('a'.repeat(1e7).split('')).length > 0",
        "new Map(Array(1e6).fill(0).map((x, i) => [i, i])).size > 0",
        "'a'.repeat(5e6).normalize('NFD').length > 0",
    ],
)
def test_running_out_of_memory_says_so_however_quickjs_reports_it(source: str) -> None:
    message = failure(source, time_limit=5.0)  # only the memory limit may stop it
    assert message.endswith("ran out of memory (limit 32 MiB) and was stopped"), message
    assert "null" not in message and "uninitialized" not in message


def test_a_condition_that_throws_null_itself_is_told_apart() -> None:
    message = failure("(() => { throw null })()")
    assert "threw null" in message and "limit 32 MiB" in message


def test_the_memory_limit_is_configurable() -> None:
    assert evaluate("'a'.repeat(2 ** 20).length > 0")
    message = failure("'a'.repeat(2 ** 20).length > 0", memory_limit=512 * 1024)
    assert "ran out of memory (limit 512 KiB)" in message


def test_deep_recursion_is_refused() -> None:
    message = failure("(function f(n) { return f(n + 1) })(0)")
    assert "recursed too deeply" in message


@pytest.mark.parametrize(
    "source",
    [
        "1); while(true){}; (1",
        "}); globalThis.x=1; (function(){",
        "1)}}); globalThis.pwned = 1; (function(){ {\nreturn (1",
        "true; while (true) {}",
    ],
)
def test_breakout_attempts_are_errors_and_never_run(source: str) -> None:
    started = time.perf_counter()
    assert "does not compile" in failure(source, time_limit=5.0)
    # Had any of it run, it would have looped until the 5 s time limit.
    assert time.perf_counter() - started < 1


def test_each_evaluation_gets_a_fresh_context() -> None:
    assert evaluate("(globalThis.leak = 1) === 1 && (Object.prototype.polluted = true)")
    assert evaluate("typeof globalThis.leak === 'undefined' && ({}).polluted === undefined")


def test_a_large_scope_goes_in_as_data() -> None:
    data = scope()
    data["trigger"]["rows"] = [{"id": i, "text": "</script>'\"\\`${x}"} for i in range(5000)]
    assert evaluate(
        "trigger.rows.length === 5000 && trigger.rows[4999].text.includes('${x}')", data
    )


def test_a_scope_that_is_not_json_is_an_error() -> None:
    assert "cannot be given its scope" in failure("true", {"trigger": {"x": object()}})
    assert "cannot be given its scope" in failure("true", {"trigger": {"x": float("nan")}})


def test_evaluations_run_concurrently_from_threads() -> None:
    results: list[bool] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        data = scope()
        data["trigger"]["min"] = index
        for _ in range(20):
            try:
                outcome = evaluate("trigger.min % 2 === 0", data)
            except ConditionError as exc:
                with lock:
                    errors.append(str(exc))
                return
            with lock:
                results.append(outcome == (index % 2 == 0))
        with pytest.raises(ConditionError):
            evaluate("(() => { while (true) {} })()", data)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 160 and all(results)


def test_one_evaluation_is_fast() -> None:
    data = scope()
    source = "result.outputs.count > 0 && trigger.kind === 'client'"
    evaluate(source, data)
    runs = 200
    started = time.perf_counter()
    for _ in range(runs):
        evaluate(source, data)
    elapsed = (time.perf_counter() - started) / runs
    assert elapsed < 0.005, f"{elapsed * 1e6:.0f} µs per evaluation"
