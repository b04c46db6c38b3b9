"""Rendering templates at run time (runner/engine/templates.py) in the bounded sandbox."""

from __future__ import annotations

import copy
import os
import subprocess
import time
from types import MappingProxyType
from typing import Any

import pytest

from runner.engine import templates
from runner.errors import TemplateRenderError
from runner.spec import expressions

WHERE = "node `post-summary`"


def scope() -> dict[str, Any]:
    return {
        "trigger": {
            "kind": "client",
            "boardId": 42,
            "labels": ["a", "b"],
            "payload": "{{ 7*7 }}",
            "note": "{% for i in range(3) %}x{% endfor %}",
            "items": [1, 2],
        },
        "event": {"type": "webhook", "headers": {"x-id": "h"}},
        "vars": {"region": "eu", "channel": "#ops"},
        "nodes": {
            "fetch": {"status": "Succeeded", "outputs": {"count": 3, "rows": [{"id": 1}]}},
        },
        "execution": {"id": "e-1", "requestId": "r-1"},
        "secrets": {},
    }


def render(value: Any, **kwargs: Any) -> Any:
    data = kwargs.pop("scope", None) or scope()
    return templates.render_value(value, data, where=WHERE, path="parameters", **kwargs)


def render_error(value: Any, **kwargs: Any) -> str:
    with pytest.raises(TemplateRenderError) as info:
        render(value, **kwargs)
    return str(info.value)


# --- native types and strings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ trigger.labels }}", ["a", "b"]),
        ("{{ trigger.boardId }}", 42),
        ("{{ nodes.fetch.outputs }}", {"count": 3, "rows": [{"id": 1}]}),
        ("{{ true }}", True),
        ("{{ none }}", None),
        ("{{ 1.5 }}", 1.5),
        ("{{trigger.kind}}", "client"),
        ("{{- trigger.kind -}}", "client"),
        ("{{ trigger.labels | map('upper') }}", ["A", "B"]),
        ("{{ range(3) }}", [0, 1, 2]),
        ("{{ {'a': (1, 2)} }}", {"a": [1, 2]}),
        ("{{ '}}' }}", "}}"),
    ],
)
def test_a_lone_expression_keeps_its_native_type(text: str, expected: Any) -> None:
    assert render(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ trigger.kind }}-{{ vars.region }}", "client-eu"),
        ("{{ trigger.boardId }} ", "42 "),
        ("n={{ trigger.boardId }}", "n=42"),
        ("{% if true %}{{ trigger.boardId }}{% endif %}", "42"),
        ("{{ trigger.labels | join(',') }}{# note #}", "a,b"),
    ],
)
def test_anything_else_renders_to_a_string(text: str, expected: str) -> None:
    assert render(text) == expected


def test_nested_structures_are_rendered_and_become_plain_data() -> None:
    value = MappingProxyType(
        {
            "channel": "{{ vars.channel }}",
            "blocks": (
                MappingProxyType({"type": "section", "text": "*{{ trigger.kind }}*"}),
                {"count": "{{ nodes['fetch'].outputs.count }}", "n": 7, "ok": False},
            ),
            "{{ keys are not rendered }}": None,
        }
    )
    assert render(value) == {
        "channel": "#ops",
        "blocks": [
            {"type": "section", "text": "*client*"},
            {"count": 3, "n": 7, "ok": False},
        ],
        "{{ keys are not rendered }}": None,
    }


def test_native_values_are_copies_not_the_scope() -> None:
    data = scope()
    rendered = render("{{ trigger.labels }}", scope=data)
    rendered.append("c")
    assert data["trigger"]["labels"] == ["a", "b"]


def test_plain_strings_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "no markup here: { } % #"
    monkeypatch.setattr(templates, "_compiled", lambda _: pytest.fail("Jinja was used"))
    rendered = render({"a": text, "b": ["x", 1, None]})
    assert rendered == {"a": text, "b": ["x", 1, None]}
    assert rendered["a"] is text


def test_compiled_templates_are_cached_by_source() -> None:
    templates._compiled.cache_clear()
    for _ in range(3):
        render("cached {{ trigger.kind }}")
    info = templates._compiled.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_data_from_the_scope_is_never_rendered_as_a_template() -> None:
    assert render("{{ trigger.payload }}") == "{{ 7*7 }}"
    assert render("payload: {{ trigger.payload }}") == "payload: {{ 7*7 }}"
    assert render("{{ trigger.note }}") == "{% for i in range(3) %}x{% endfor %}"
    assert render({"p": ["{{ trigger }}"]})["p"][0]["payload"] == "{{ 7*7 }}"


# --- errors name the node, the path and the cause -----------------------------------------------


def test_undefined_attribute_names_node_path_and_expression() -> None:
    message = render_error({"channel": "{{ trigger.boardIdx }}"})
    assert message.startswith("node `post-summary` at `parameters.channel`: ")
    assert "`trigger.boardIdx` is undefined" in message


def test_undefined_in_a_nested_string_names_the_full_path() -> None:
    message = render_error({"blocks": [{}, {}, {"text": "see {{ nodes['fetch'].outputs.nope }}"}]})
    assert "`parameters.blocks[2].text`" in message
    assert "`nodes['fetch'].outputs.nope` is undefined" in message


@pytest.mark.parametrize("name", ["request", "config", "secret_key", "url_for"])
def test_undefined_names_are_errors(name: str) -> None:
    assert f"`{name}` is undefined" in render_error(f"{{{{ {name} }}}}")


@pytest.mark.parametrize("name", ["get", "items", "keys", "values", "update", "pop", "copy"])
def test_a_key_named_like_a_dict_method_wins_over_the_method(name: str) -> None:
    data = scope()
    data["nodes"][name] = {"status": "Succeeded", "outputs": {"count": 7}}
    data["trigger"][name] = [1, 2]
    assert render(f"{{{{ nodes.{name}.outputs.count }}}}", scope=data) == 7
    assert render(f"n={{{{ nodes.{name}.outputs.count }}}}", scope=data) == "n=7"
    assert render(f"{{{{ trigger.{name} | length }}}}", scope=data) == 2
    assert render(f"{{{{ trigger['{name}'] }}}}", scope=data) == [1, 2]


def test_dict_methods_still_work_where_no_key_has_their_name() -> None:
    assert render("{{ nodes.keys() | list }}") == ["fetch"]
    assert render("{% for k, v in vars.items() %}{{ k }}={{ v }};{% endfor %}") == (
        "region=eu;channel=#ops;"
    )
    assert render("{{ vars.get('region') }}") == "eu"


def test_a_method_printed_where_a_key_was_meant_says_there_is_no_such_key() -> None:
    for text in ("{{ vars.items }}", "n={{ vars.items }}"):
        assert "the object has no key `items`" in render_error(text)


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("{{ cycler }}", "not JSON data"),
        ("{{ lipsum }}", "not JSON data"),
        ("{{ self }}", "not JSON data"),
        ("{{ 1e308 * 10 }}", "not a JSON number"),
        ("{{ {1: 'a'} }}", "is not a string"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ trigger.kind", "does not parse"),
        ("{% include 'x.j2' %}", "not available"),
    ],
)
def test_values_that_are_not_json_and_runtime_errors_are_named(text: str, cause: str) -> None:
    message = render_error({"p": text})
    assert message.startswith("node `post-summary` at `parameters.p`: ")
    assert cause in message


# --- the sandbox --------------------------------------------------------------------------------

# Jinja's own sandbox tests and classic server-side template injection strings.
INJECTIONS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__.__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ ''['__class__'] }}",
    "{{ ''|attr('__class__') }}",
    "{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ cycler.__init__.__globals__.__builtins__.__import__('os').system('id') }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ lipsum.__globals__.os.popen('id').read() }}",
    "{{ range.__globals__ }}",
    "{{ dict.mro() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__dict__ }}",
    "{{ request }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ request.application.__globals__.__builtins__.__import__('os').popen('id').read() }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{{ '{0.__class__.__mro__}'.format(trigger) }}",
    "{{ '{x.__class__}'.format_map({'x': 1}) }}",
    "{{ '%s'|format(x.__class__) }}",
    "{{ '%s' % trigger.__class__ }}",
    "{{ ''.join.__self__ }}",
    "{{ trigger.__len__() }}",
    "{% for i in [1] %}{{ loop.__class__ }}{% endfor %}",
    "{{ (trigger.labels|map('upper')).gi_frame.f_globals }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ ''.__class__.__mro__[1].__subclasses__()[40]('/etc/passwd').read() }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}{{ os.popen('id') }}",
    "{% for i in range(10**9) %}{% endfor %}",
    "{{ 'a' * 10**9 }}",
    "{{ [1] * 10**9 }}",
    "{{ 9 ** (9 ** 9) }}",
    "{{ 10 ** 100000 }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '%*d' % (10**9, 1) }}",
    "{{ '%0999999999d'|format(1) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '{:>{}}'.format(1, 10**9) }}",
    "{{ 'a'|center(999999999) }}",
    "{{ 'a'|indent(999999999, true) }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ 'a'.zfill(10**9) }}",
    "{{ '\t'.expandtabs(10**9) }}",
    "{{ ('a' * 2000).replace('', 'b' * 1000) }}",
    "{{ range(100000)|join('x' * 1000) }}",
    "{{ ('x' * 1000).join(range(100000)|map('string')) }}",
    "{{ (10).to_bytes(10**9, 'big') }}",
    "{{ lipsum(100000) }}",
    "{{ [1]|batch(10**9, 0)|list }}",
    "{{ [1]|slice(10**9)|list }}",
    "{{ {'a': 1}|tojson(10**9) }}",
    "{% set x = [] %}{% for i in range(100000) %}{% do x.append(i) %}{% endfor %}",
    "{{ x.append(1) }}",
    "{{ trigger.labels.append(1) }}",
    "{{ trigger.pop('kind') }}",
    "{{ trigger.update({'kind': 'hacked'}) }}",
    "{{ trigger.labels.sort() }}",
]


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records any attempt to start a process or open a pipe (none must happen)."""
    started: list[str] = []

    def record(*args: Any, **kwargs: Any) -> None:
        started.append(repr(args))
        raise AssertionError("a template started a process")

    monkeypatch.setattr(os, "system", record)
    monkeypatch.setattr(os, "popen", record)
    monkeypatch.setattr(subprocess, "Popen", record)
    return started


@pytest.mark.parametrize("text", INJECTIONS)
def test_injections_are_refused_quickly_and_run_nothing(text: str, no_processes: list) -> None:
    data = scope()
    data["x"] = [1, 2]
    before = copy.deepcopy(data)
    started = time.perf_counter()
    with pytest.raises(TemplateRenderError) as info:
        render({"p": text}, scope=data)
    assert time.perf_counter() - started < 2
    assert str(info.value).startswith("node `post-summary` at `parameters.p`: ")
    assert no_processes == []
    assert data == before


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("{{ ''.__class__ }}", "unsafe access refused"),
        ("{{ x.append(1) }}", "unsafe access refused"),
        ("{{ 'a' * 10**9 }}", "larger than 1048576 bytes"),
        ("{{ 10 ** 100000 }}", "integer larger than"),
        ("{% do x.append(1) %}", "does not parse"),
        ("{% for i in range(10**9) %}{% endfor %}", "MAX_RANGE"),
    ],
)
def test_refusals_say_why(text: str, cause: str) -> None:
    data = scope()
    data["x"] = []
    assert cause in render_error(text, scope=data)


def test_the_environment_is_the_shared_bounded_sandbox() -> None:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = expressions.template_environment()
    assert isinstance(env, ImmutableSandboxedEnvironment)
    assert env.undefined is StrictUndefined
    assert not env.autoescape
    assert {"*", "**"} <= env.intercepted_binops


@pytest.mark.parametrize(
    "text",
    [
        "{{ 9 ** 9 ** 9 }}",
        "{{ 9 ** (9 ** 9) }}",
        "{{ '%0999999999d' % 1 }}",
        "{{ 'a'|center(999999999) }}",
        "{{ 'a' * 999999999 }}",
    ],
)
def test_compiling_never_computes_huge_constants(text: str) -> None:
    env = expressions.template_environment()
    started = time.perf_counter()
    env.from_string(text)
    env.compile_expression(text.strip("{} "))
    assert time.perf_counter() - started < 1


def test_power_is_left_associative_and_bounded() -> None:
    # Jinja reads `9 ** 9 ** 9` as (9 ** 9) ** 9 = 9 ** 81, a 78-digit number; the right-nested
    # power, 9 ** 387420489, is refused before it is computed.
    assert render("{{ 9 ** 9 ** 9 }}") == 9**81
    assert "`**` would make an integer larger than" in render_error("{{ 9 ** (9 ** 9) }}")


def test_small_arithmetic_and_formatting_still_work() -> None:
    assert render("{{ 'ab' * 3 }}") == "ababab"
    assert render("{{ [0] * 3 }}") == [0, 0, 0]
    assert render("{{ 2 ** 64 }}") == 2**64
    assert render("{{ 7 % 3 }}") == 1
    assert render("{{ '%s-%03d' % ('a', 7) }}") == "a-007"
    assert render("{{ '%05.1f'|format(3.14159) }}") == "003.1"
    assert render("{{ '{:>4}'.format(7) }}") == "   7"
    assert render("{{ 'a'|center(5) }}") == "  a  "
    assert render("{{ ','.join(trigger.labels) }}") == "a,b"
    assert render("{{ lipsum(2, false) | wordcount }}") >= 40


# --- size and time limits -----------------------------------------------------------------------


def test_total_rendered_size_is_capped() -> None:
    big = "{{ 'a' * 600000 }}"
    assert len(render({"one": big})["one"]) == 600000
    message = render_error({"one": big, "two": big})
    assert message.startswith("node `post-summary` at `parameters.two`: ")
    assert "rendered value larger than 1048576 bytes" in message


def test_size_cap_counts_plain_strings_and_native_values() -> None:
    assert "larger than 100 bytes" in render_error({"a": "x" * 101}, max_bytes=100)
    data = scope()
    data["trigger"]["rows"] = ["y" * 1000] * 200
    message = render_error("{{ trigger.rows }}", scope=data, max_bytes=100_000)
    assert "rendered value larger than 100000 bytes" in message


def test_output_is_measured_as_it_is_produced() -> None:
    started = time.perf_counter()
    message = render_error("{% for i in range(100000) %}{{ 'z' * 1000 }}{% endfor %}")
    assert "rendered value larger than" in message
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    "text",
    [
        "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s | length }}",
        "{% set ns = namespace(s=[1]) %}{% for i in range(80) %}{% set ns.s = [ns.s, ns.s] %}"
        "{% endfor %}{{ ns.s | length }}",
        "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% else %}{{ s }}{% endif %}"
        "{% endmacro %}{{ f('a', 40) | length }}",
        "{% set a = [trigger.labels] * 64 %}{% set b = [a] * 64 %}{% set c = [b] * 64 %}"
        "{% set d = [c] * 64 %}{{ d }}",
    ],
)
def test_values_that_double_in_a_loop_or_recursion_are_refused(text: str) -> None:
    started = time.perf_counter()
    assert "larger than 1048576 bytes" in render_error(text)
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    "text",
    [
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
    ],
)
def test_runaway_loops_and_recursion_stop_at_the_time_limit(text: str) -> None:
    started = time.perf_counter()
    assert "rendering took longer than 0.2 s" in render_error(text, time_limit=0.2)
    assert time.perf_counter() - started < 2


def test_a_lone_string_renders_to_its_native_value_and_names_its_path() -> None:
    data = scope()
    assert templates.render_value("{{ trigger.labels }}", data, where=WHERE) == ["a", "b"]
    with pytest.raises(TemplateRenderError, match=r"^node `post-summary` at `text`: "):
        templates.render_value("{{ nope }}", data, where=WHERE, path="text")
