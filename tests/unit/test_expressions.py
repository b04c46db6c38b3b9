"""Lint rules over Jinja templates and JavaScript conditions (runner/spec/expressions.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.spec import conditions, expressions
from runner.spec.diagnostics import Finding
from runner.spec.model import Workflow


def workflow(**overrides: Any) -> Workflow:
    """fetch -> post -> done, plus `alert` as the workflow's onFailure node."""
    doc: dict[str, Any] = {
        "id": "wf",
        "startNode": "fetch",
        "onFailure": "alert",
        "nodes": [
            {"id": "fetch", "actionType": "core.echo", "edges": [{"targetNode": "post"}]},
            {"id": "post", "actionType": "core.echo", "edges": [{"targetNode": "done"}]},
            {"id": "done", "actionType": "core.echo"},
            {"id": "alert", "actionType": "core.echo"},
        ],
    }
    doc.update(overrides)
    return Workflow.from_data(doc)


def with_node(index: int, **fields: Any) -> Workflow:
    """The base workflow with extra fields on one node."""
    base = workflow()
    nodes = [
        {
            "id": n.id,
            "actionType": "core.echo",
            "edges": [{"targetNode": e.target_node} for e in n.edges],
        }
        for n in base.nodes
    ]
    nodes[index].update(fields)
    return workflow(nodes=nodes)


def only(findings: list[Finding], rule: str) -> Finding:
    matching = [f for f in findings if f.rule == rule]
    assert len(matching) == 1, findings
    return matching[0]


# --- template-syntax ----------------------------------------------------------------------------


def test_valid_templates_have_no_findings() -> None:
    wf = with_node(
        1,
        parameters={
            "text": "{{ nodes['fetch'].outputs.count }} items for {{ trigger.board | upper }}",
            "list": ["{% for x in trigger.items %}{{ loop.index }}{{ x }}{% endfor %}"],
            "n": "{{ range(3) | list | length }} {{ secrets.token }} {{ execution.id }}{{ event }}",
        },
        idempotencyKey="{{ trigger.board }}-{{ execution.requestId }}",
    )
    assert expressions.check(wf) == []


def test_template_syntax_error_points_at_the_value() -> None:
    wf = with_node(1, parameters={"msg": {"text": "{{ trigger.x "}})
    finding = only(expressions.check(wf), "template-syntax")
    assert finding.path == ("nodes", 1, "parameters", "msg", "text")
    assert "node `post` parameter `msg.text`" in finding.message
    assert "template does not parse" in finding.message
    assert "line" not in finding.message


def test_template_syntax_error_in_multiline_template_names_the_line() -> None:
    wf = with_node(1, parameters={"text": "first line\nsecond {% if %}"})
    finding = only(expressions.check(wf), "template-syntax")
    assert "(line 2 of the template)" in finding.message


def test_template_syntax_in_list_items_has_the_index_in_the_path() -> None:
    wf = with_node(1, parameters={"items": ["ok", "{{ }}"]})
    finding = only(expressions.check(wf), "template-syntax")
    assert finding.path == ("nodes", 1, "parameters", "items", 1)
    assert "`items[1]`" in finding.message


def test_unknown_filter_suggests_the_closest_one() -> None:
    wf = with_node(1, parameters={"text": "{{ trigger.name | upperr }}"})
    finding = only(expressions.check(wf), "template-syntax")
    assert "unknown filter `upperr`; did you mean `upper`?" in finding.message
    assert finding.path == ("nodes", 1, "parameters", "text")


def test_unknown_test_is_reported() -> None:
    wf = with_node(1, parameters={"text": "{{ trigger.n is oddd }}"})
    finding = only(expressions.check(wf), "template-syntax")
    assert "unknown test `oddd`; did you mean `odd`?" in finding.message


def test_unknown_filter_in_a_filter_block() -> None:
    wf = with_node(1, parameters={"text": "{% filter shout %}hi{% endfilter %}"})
    assert "unknown filter `shout`" in only(expressions.check(wf), "template-syntax").message


def test_idempotency_key_is_a_template() -> None:
    wf = with_node(1, idempotencyKey="{{ trigger.id")
    finding = only(expressions.check(wf), "template-syntax")
    assert finding.path == ("nodes", 1, "idempotencyKey")
    assert "node `post` idempotencyKey" in finding.message


def test_outputs_are_templates() -> None:
    wf = workflow(outputs={"count": "{{ nodes['fetch'].outputs.count | nope }}"})
    finding = only(expressions.check(wf), "template-syntax")
    assert finding.path == ("outputs", "count")
    assert "output `count`" in finding.message


def test_trigger_payloads_are_data_not_templates() -> None:
    wf = workflow(
        triggers=[{"id": "t", "type": "manual", "payload": {"x": "{{ broken", "y": "{{ nope }}"}}]
    )
    assert expressions.check(wf) == []


def test_strings_without_markup_never_reach_jinja(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(text: str) -> None:
        raise AssertionError(f"parsed {text!r}")

    monkeypatch.setattr(expressions, "analyse_template", fail)
    wf = with_node(1, parameters={"channel": "#ops", "n": 3, "nested": {"a": ["b}", "{c"]}})
    assert expressions.check(wf) == []


def test_deeply_nested_template_is_a_syntax_finding_not_a_crash() -> None:
    text = "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"
    wf = with_node(1, parameters={"text": text})
    assert "nests too deeply" in only(expressions.check(wf), "template-syntax").message


# --- template-unknown-name ----------------------------------------------------------------------


def test_unknown_name_lists_the_valid_names() -> None:
    wf = with_node(1, parameters={"a": {"b": "{{ trigerr.id }}"}})
    finding = only(expressions.check(wf), "template-unknown-name")
    assert finding.path == ("nodes", 1, "parameters", "a", "b")
    assert "node `post` parameter `a.b` reads `trigerr`" in finding.message
    assert "did you mean `trigger`?" in finding.message
    assert "trigger, event, vars, nodes, execution, secrets" in finding.message


def test_result_in_a_template_explains_where_it_exists() -> None:
    wf = with_node(1, parameters={"text": "{{ result.outputs }}"})
    finding = only(expressions.check(wf), "template-unknown-name")
    assert "only in edge conditions" in finding.message


def test_names_the_template_assigns_and_jinja_globals_are_in_scope() -> None:
    text = (
        "{% set total = 1 %}{{ total }}{% for i in range(2) %}{{ i }}{{ loop.index }}{% endfor %}"
        "{% macro m(a) %}{{ a }}{{ varargs }}{% endmacro %}{{ m(1) }}{{ dict(a=1) }}"
        "{% set ns = namespace(x=1) %}{{ ns.x }}"
    )
    assert expressions.check(with_node(1, parameters={"text": text})) == []


def test_vars_may_not_read_nodes_and_say_why() -> None:
    wf = workflow(vars={"region": "{{ nodes['fetch'].outputs.region }}"})
    findings = expressions.check(wf)
    finding = only(findings, "template-unknown-name")
    assert finding.path == ("vars", "region")
    assert "vars `region` reads `nodes`" in finding.message
    assert "before any node has run" in finding.message
    assert "trigger, event, execution" in finding.message
    assert not [f for f in findings if f.rule in ("unknown-node-reference", "node-not-upstream")]


def test_vars_may_not_read_vars() -> None:
    wf = workflow(vars={"a": "eu", "b": "{{ vars.a }}-x"})
    finding = only(expressions.check(wf), "template-unknown-name")
    assert finding.path == ("vars", "b")
    assert "cannot read each other" in finding.message


def test_vars_may_read_trigger_event_and_execution() -> None:
    wf = workflow(
        vars={"a": "{{ trigger.x }}{{ event.type }}{{ execution.id }}"},
        outputs={"a": "{{ vars.a }}"},
    )
    assert expressions.check(wf) == []
    # Secrets are placed in node parameters only (tests/unit/test_secret_placement.py).
    with_secret = workflow(vars={"a": "{{ secrets.k }}"}, outputs={"a": "{{ vars.a }}"})
    assert [f.rule for f in expressions.check(with_secret)] == ["template-unknown-name"]


# --- condition-syntax ---------------------------------------------------------------------------


def edge_condition(condition: str) -> Workflow:
    return with_node(0, edges=[{"targetNode": "post", "condition": condition}])


def test_valid_condition_has_no_findings() -> None:
    wf = edge_condition("result.outputs.count > 0 && trigger.kind === 'client'")
    assert expressions.check(wf) == []


def test_condition_syntax_error_has_quickjs_message_and_path() -> None:
    finding = only(expressions.check(edge_condition("result.outputs.count >")), "condition-syntax")
    assert finding.path == ("nodes", 0, "edges", 0, "condition")
    assert "node `fetch` edge 0 (to `post`) condition" in finding.message
    assert "SyntaxError" in finding.message
    assert "at the end of the condition" in finding.message


def test_condition_error_position_is_relative_to_the_condition() -> None:
    finding = only(expressions.check(edge_condition("a &&\nb c")), "condition-syntax")
    assert "SyntaxError" in finding.message
    assert "at line 2, column 3 of the condition" in finding.message


@pytest.mark.parametrize("condition", ["", "   ", "\n\t"])
def test_empty_condition_is_an_error(condition: str) -> None:
    finding = only(expressions.check(edge_condition(condition)), "condition-syntax")
    assert "empty" in finding.message


@pytest.mark.parametrize(
    "condition", ["1; 2", "a = 1; b", "}", "if (x) { y }", "let x = 1", "x)", "return 1"]
)
def test_statements_and_stray_brackets_are_syntax_errors(condition: str) -> None:
    finding = only(expressions.check(edge_condition(condition)), "condition-syntax")
    assert "SyntaxError" in finding.message


def test_activation_condition_is_checked() -> None:
    wf = workflow(
        triggers=[{"id": "hook", "type": "webhook", "path": "x", "activationCondition": "a ==="}]
    )
    finding = only(expressions.check(wf), "condition-syntax")
    assert finding.path == ("triggers", 0, "activationCondition")
    assert "trigger `hook` activationCondition" in finding.message


# The sandbox: a condition is compiled, never run, and cannot escape its wrapper.


def test_loop_breakout_is_a_syntax_error_reported_quickly() -> None:
    conditions.condition_error.cache_clear()
    started = time.perf_counter()
    finding = only(expressions.check(edge_condition("1); while(true){}; (1")), "condition-syntax")
    assert time.perf_counter() - started < 0.5
    assert "not a single JavaScript expression" in finding.message
    assert "SyntaxError" in finding.message


BREAKOUTS = [
    # Close the Function constructor's brackets, run code at construction, reopen a function.
    "1)}}); globalThis.pwned = 1; (function(){ {\nreturn (1",
    "1\n);\n}\n}); globalThis.pwned = 1; (function(){ {\nreturn (1",
    "1]}}); globalThis.pwned = 1; (function(){ {\nreturn [1",
    "1)}); globalThis.pwned = 1; (function(){ return (1",
    "}); globalThis.pwned = 1; (function(){",
]


@pytest.mark.parametrize("condition", BREAKOUTS)
def test_breakouts_are_syntax_errors_and_run_nothing(condition: str) -> None:
    finding = only(expressions.check(edge_condition(condition)), "condition-syntax")
    assert "SyntaxError" in finding.message or "closes the brackets" in finding.message
    assert conditions.condition_context().eval("typeof globalThis.pwned") == "undefined"


@pytest.mark.parametrize(
    "condition",
    [
        "globalThis.ran = 1",
        "(globalThis.ran = 1) && true",
        "(() => { globalThis.ran = 1; return true })()",
        "(function(){ while(true){} })()",
    ],
)
def test_valid_conditions_are_compiled_but_never_run(condition: str) -> None:
    conditions.condition_error.cache_clear()
    started = time.perf_counter()
    assert expressions.check(edge_condition(condition)) == []
    assert time.perf_counter() - started < 0.5
    assert conditions.condition_context().eval("typeof globalThis.ran") == "undefined"


def test_compiled_condition_is_a_function_of_the_scope() -> None:
    context = conditions.condition_context()
    function = conditions.compile_condition(context, "result.outputs.count > trigger.min")
    result = context.parse_json('{"outputs": {"count": 3}}')
    trigger = context.parse_json('{"min": 2}')
    assert function(trigger, None, None, None, None, result) is True


def test_condition_context_has_a_time_limit_as_defence() -> None:
    import quickjs

    started = time.perf_counter()
    with pytest.raises(quickjs.JSException, match="interrupted"):
        conditions.condition_context().eval("while (true) {}")
    assert time.perf_counter() - started < 1


def test_condition_context_is_cached_per_thread() -> None:
    here = conditions.condition_context()
    assert conditions.condition_context() is here
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(conditions.condition_context()))
    thread.start()
    thread.join()
    assert seen and seen[0] is not here


def test_deeply_nested_condition_is_a_syntax_finding() -> None:
    finding = only(expressions.check(edge_condition("(" * 20000)), "condition-syntax")
    assert finding.path == ("nodes", 0, "edges", 0, "condition")


# --- unknown-node-reference and node-not-upstream -----------------------------------------------


@pytest.mark.parametrize(
    "text", ["{{ nodes['fetchh'].outputs }}", '{{ nodes["fetchh"].outputs }}', "{{ nodes.fetchh }}"]
)
def test_template_reading_an_unknown_node(text: str) -> None:
    finding = only(
        expressions.check(with_node(1, parameters={"t": text})), "unknown-node-reference"
    )
    assert finding.path == ("nodes", 1, "parameters", "t")
    assert "reads nodes['fetchh'], but the workflow has no node `fetchh`" in finding.message
    assert "did you mean `fetch`?" in finding.message
    assert "(nodes: alert, done, fetch, post)" in finding.message


def test_dashed_id_read_as_attribute_gets_a_hint() -> None:
    nodes = [
        {"id": "fetch-items", "actionType": "core.echo", "edges": [{"targetNode": "post"}]},
        {"id": "post", "actionType": "core.echo", "parameters": {"t": "{{ nodes.fetch }}"}},
    ]
    wf = Workflow.from_data({"id": "wf", "startNode": "fetch-items", "nodes": nodes})
    finding = only(expressions.check(wf), "unknown-node-reference")
    assert "did you mean `fetch-items`?" in finding.message
    assert "nodes['id']" in finding.message


def test_dict_methods_are_not_node_references() -> None:
    wf = with_node(1, parameters={"t": "{{ nodes.items() | list }} {{ nodes.get('fetch') }}"})
    assert expressions.check(wf) == []


@pytest.mark.parametrize("name", ["get", "items", "keys", "values", "update", "pop"])
@pytest.mark.parametrize("text", ["{{ nodes.NAME.outputs.count }}", "n={{ nodes.NAME.status }}!"])
def test_a_node_named_like_a_dict_method_is_a_node_reference(name: str, text: str) -> None:
    text = text.replace("NAME", name)
    wf = Workflow.from_data(
        {"id": "wf", "startNode": name,
         "nodes": [{"id": name, "actionType": "core.echo", "edges": [{"targetNode": "use"}]},
                   {"id": "use", "actionType": "core.echo", "parameters": {"t": text}}]}
    )  # fmt: skip
    assert expressions.check(wf) == []
    # Read before it ran: the key wins at run time, so lint says what it says of any node.
    wf = Workflow.from_data(
        {"id": "wf", "startNode": "use",
         "nodes": [{"id": "use", "actionType": "core.echo", "parameters": {"t": text},
                    "edges": [{"targetNode": name}]},
                   {"id": name, "actionType": "core.echo"}]}
    )  # fmt: skip
    finding = only(expressions.check(wf), "node-not-upstream")
    assert f"reads nodes['{name}']" in finding.message


def test_a_condition_reading_a_node_named_constructor_is_a_node_reference() -> None:
    wf = Workflow.from_data(
        {"id": "wf", "startNode": "a",
         "nodes": [{"id": "a", "actionType": "core.echo",
                    "edges": [{"targetNode": "b",
                               "condition": "nodes.constructor.status == 'x'"}]},
                   {"id": "b", "actionType": "core.echo"},
                   {"id": "constructor", "actionType": "core.echo"}]}
    )  # fmt: skip
    assert {f.rule for f in expressions.check(wf)} >= {"node-not-upstream"}


def test_a_var_named_like_a_dict_method_is_a_read_of_that_var() -> None:
    wf = Workflow.from_data(
        {"id": "wf", "startNode": "n", "vars": {"get": 1, "unused": 2},
         "nodes": [{"id": "n", "actionType": "core.echo", "parameters": {"t": "{{ vars.get }}"}}]}
    )  # fmt: skip
    finding = only(expressions.check(wf), "unused-var")
    assert finding.path == ("vars", "unused")


@pytest.mark.parametrize(
    "condition",
    ["nodes['nope'].status === 'ok'", 'nodes["nope"].outputs', "nodes.nope.outputs", "nodes?.nope"],
)
def test_condition_reading_an_unknown_node(condition: str) -> None:
    finding = only(expressions.check(edge_condition(condition)), "unknown-node-reference")
    assert finding.path == ("nodes", 0, "edges", 0, "condition")
    assert "no node `nope`" in finding.message


def test_condition_strings_and_comments_are_not_references() -> None:
    condition = "trigger.msg === 'nodes.ghost' && \"vars.x\" /* nodes['ghost'] */ // nodes.y"
    assert expressions.check(edge_condition(condition)) == []


def test_condition_member_named_nodes_is_not_a_reference() -> None:
    assert expressions.check(edge_condition("result.nodes.nope && trigger.nodes['x']")) == []


def test_template_reading_a_downstream_node_warns() -> None:
    wf = with_node(1, parameters={"t": "{{ nodes['done'].outputs }}"})
    finding = only(expressions.check(wf), "node-not-upstream")
    assert finding.path == ("nodes", 1, "parameters", "t")
    assert "`done` is not upstream of `post`" in finding.message
    assert "readable: fetch" in finding.message


def test_template_reading_an_upstream_node_is_fine() -> None:
    wf = with_node(2, parameters={"t": "{{ nodes['fetch'].outputs }} {{ nodes.post.outputs }}"})
    assert expressions.check(wf) == []


def test_node_reading_its_own_entry_warns() -> None:
    wf = with_node(1, idempotencyKey="{{ nodes['post'].outputs.id }}")
    finding = only(expressions.check(wf), "node-not-upstream")
    assert finding.path == ("nodes", 1, "idempotencyKey")
    assert "own entry" in finding.message


def test_edge_condition_may_read_its_source_node_and_upstream() -> None:
    wf = with_node(
        1,
        edges=[
            {"targetNode": "done", "condition": "nodes.post.outputs.n > nodes['fetch'].outputs.n"}
        ],
    )
    assert expressions.check(wf) == []


def test_edge_condition_reading_a_downstream_node_warns() -> None:
    wf = with_node(1, edges=[{"targetNode": "done", "condition": "nodes['done'].status"}])
    finding = only(expressions.check(wf), "node-not-upstream")
    assert finding.path == ("nodes", 1, "edges", 0, "condition")
    assert "readable: fetch, post" in finding.message


def test_failure_path_nodes_and_outputs_may_read_any_node() -> None:
    nodes = [
        {"id": "fetch", "actionType": "core.echo", "edges": [{"targetNode": "post"}]},
        {"id": "post", "actionType": "core.echo"},
        {"id": "alert", "actionType": "core.echo", "edges": [{"targetNode": "page"}],
         "parameters": {"t": "{{ nodes['post'].error.message }}"}},
        {"id": "page", "actionType": "core.echo", "parameters": {"t": "{{ nodes.fetch.status }}"}},
    ]  # fmt: skip
    wf = workflow(nodes=nodes, outputs={"post": "{{ nodes['post'].outputs }}"})
    assert expressions.check(wf) == []


def test_unknown_node_is_reported_on_the_failure_path_and_in_outputs() -> None:
    wf = workflow(
        outputs={"x": "{{ nodes['ghost'].outputs }}"},
        nodes=[
            {"id": "fetch", "actionType": "core.echo"},
            {"id": "alert", "actionType": "core.echo", "parameters": {"t": "{{ nodes.ghost }}"}},
        ],
    )
    findings = expressions.check(wf)
    assert [(f.rule, f.path) for f in findings] == [
        ("unknown-node-reference", ("nodes", 1, "parameters", "t")),
        ("unknown-node-reference", ("outputs", "x")),
    ]


def test_activation_condition_reading_a_node_warns() -> None:
    wf = workflow(
        triggers=[
            {"id": "hook", "type": "webhook", "path": "x", "activationCondition": "nodes.fetch.ok"}
        ]
    )
    finding = only(expressions.check(wf), "node-not-upstream")
    assert finding.path == ("triggers", 0, "activationCondition")
    assert "before the execution starts" in finding.message


# --- unused-var ---------------------------------------------------------------------------------


def test_unused_var_points_at_its_key() -> None:
    wf = workflow(vars={"region": "eu", "used": 1, "also": 2, "cond": 3},
                  outputs={"u": "{{ vars.used }} {{ vars['also'] }}"},
                  nodes=[{"id": "fetch", "actionType": "core.echo",
                          "edges": [{"targetNode": "alert", "condition": "vars.cond > 1"}]},
                         {"id": "alert", "actionType": "core.echo"}])  # fmt: skip
    finding = only(expressions.check(wf), "unused-var")
    assert finding.path == ("vars", "region")
    assert finding.at_key
    assert "vars `region` is never read" in finding.message
    assert "{{ vars.region }}" in finding.message


@pytest.mark.parametrize(
    "parameters",
    [
        {"all": "{{ vars | tojson }}"},
        {"all": "{{ vars.items() | list }}"},
        {"all": "{{ vars[trigger.key] }}"},
    ],
)
def test_reading_vars_as_a_whole_reports_no_unused_var(parameters: dict[str, str]) -> None:
    wf = Workflow.from_data(
        {"id": "wf", "startNode": "n", "vars": {"a": 1, "b": 2},
         "nodes": [{"id": "n", "actionType": "core.echo", "parameters": parameters}]}
    )  # fmt: skip
    assert expressions.check(wf) == []


def test_condition_reading_vars_as_a_whole_reports_no_unused_var() -> None:
    wf = workflow(
        vars={"a": 1},
        nodes=[
            {"id": "fetch", "actionType": "core.echo",
             "edges": [{"targetNode": "alert", "condition": "Object.keys(vars).length > 0"}]},
            {"id": "alert", "actionType": "core.echo"},
        ],
    )  # fmt: skip
    assert expressions.check(wf) == []


# --- the shared environment and performance -----------------------------------------------------


def test_template_environment_is_shared_sandboxed_and_strict() -> None:
    from jinja2 import StrictUndefined
    from jinja2.exceptions import SecurityError, UndefinedError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = expressions.template_environment()
    assert env is expressions.template_environment()
    assert isinstance(env, ImmutableSandboxedEnvironment)
    assert env.undefined is StrictUndefined
    assert not env.autoescape
    with pytest.raises(UndefinedError):
        env.from_string("{{ nope }}").render()
    with pytest.raises(SecurityError):
        env.from_string("{{ x.append(1) }}").render(x=[])
    assert env.from_string("{{ '<b>' }}").render() == "<b>"


def big_workflow() -> Workflow:
    """20 nodes in a chain, two templates each (40), an edge condition on half of them (10)."""
    nodes = []
    for i in range(20):
        upstream = f"nodes['step-{i - 1}'].outputs.count" if i else "trigger.count"
        node: dict[str, Any] = {
            "id": f"step-{i}",
            "actionType": "core.echo",
            "parameters": {
                "text": f"{{{{ {upstream} }}}} for {{{{ trigger.id }}}}",
                "meta": {"channel": "#ops", "key": f"{{{{ vars.region }}}}-{i}"},
            },
        }
        if i < 19:
            edge: dict[str, Any] = {"targetNode": f"step-{i + 1}"}
            if i % 2 == 0:
                edge["condition"] = f"result.outputs.count > {i} && trigger.kind === 'c'"
            node["edges"] = [edge]
        nodes.append(node)
    return Workflow.from_data(
        {"id": "big", "startNode": "step-0", "vars": {"region": "eu"}, "nodes": nodes}
    )


def test_check_is_fast_when_warm() -> None:
    wf = big_workflow()
    assert expressions.check(wf) == []
    runs = 200
    elapsed = min(timeit_once(lambda: expressions.check(wf), runs) for _ in range(3))
    assert elapsed < 0.001, f"{elapsed * 1e6:.0f} µs per check"


def timeit_once(function: Any, runs: int) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        function()
    return (time.perf_counter() - started) / runs


# --- the fast path for plain output templates agrees with Jinja ---------------------------------

_space = st.sampled_from(["", " ", "  ", "\n", "\t"])
_name = st.sampled_from(
    ["nodes", "vars", "trigger", "x1", "_y", "range", "true", "None", "not", "items", "get", "é"]
)
_access = st.one_of(
    st.tuples(_space, st.just("."), _space, _name).map("".join),
    st.sampled_from(["['a']", '["b-c"]', "['']", "[0]", "['a\\'b']", "['{{']", "[ 'k' ]"]),
    st.sampled_from(["|upper", " | tojson", "()", ".0", " + 1", " -", "."]),
)
_output = st.tuples(
    st.sampled_from(["{{", "{{-", "{{+", "{{{"]),
    _space,
    _name,
    st.lists(_access, max_size=4).map("".join),
    _space,
    st.sampled_from(["}}", "-}}", "}}}", "}", " }} }}"]),
).map("".join)
_text = st.text(alphabet="ab -{}%#\n", max_size=6)
_template = st.lists(st.one_of(_output, _text), min_size=1, max_size=5).map("".join)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_template)
def test_fast_path_agrees_with_jinja(text: str) -> None:
    fast = expressions._simple_template(text)
    if fast is not None:
        assert fast == expressions._parse_template(text), text


@pytest.mark.parametrize(
    "text",
    [
        "{{ trigger.boardId }}",
        "{{ nodes['fetch-items'].outputs.count }} items",
        "{{ trigger.a }}-{{ execution.requestId }}",
        '{{- vars["region"] -}} and {{ vars.items }}',
        "a } b {{ nodes . x . y }} }}",
    ],
)
def test_plain_output_templates_take_the_fast_path(text: str) -> None:
    fast = expressions._simple_template(text)
    assert fast is not None
    assert fast == expressions._parse_template(text)


def test_fast_path_globals_match_the_environment() -> None:
    assert set(expressions.template_environment().globals) == expressions._JINJA_GLOBALS
