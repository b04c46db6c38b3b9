"""Property tests: whatever a file holds, the linter answers with diagnostics, never a traceback."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.lint import linter

KEYS = [
    "apiVersion", "kind", "id", "startNode", "nodes", "edges", "targetNode", "when", "condition",
    "actionType", "parameters", "retry", "maxAttempts", "triggers", "type", "cron", "timezone",
    "path", "vars", "outputs", "options", "onFailure", "nodeType", "workflowId", "message",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "a",
            "core.echo",
            "{{ nodes.a.outputs }}",
            "{{ x",
            "1 +",
            "* * * * *",
            "Mars/Olympus",
            "success",
            "schedule",
            "webhook",
        ]
    ),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=30,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_diagnosed(raw: bytes) -> list:
    result = linter.lint_source("fuzz.yaml", raw)
    internal = [d for d in result.diagnostics if d.rule == "internal-error"]
    assert not internal, internal[0].message
    for d in result.diagnostics:
        assert d.line >= 1 and d.column >= 1 and d.end_line >= d.line
    return list(result.diagnostics)


@FUZZ
@given(st.text(max_size=300))
def test_any_text_gets_diagnostics_not_an_exception(text):
    assert_diagnosed(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_get_diagnostics_not_an_exception(raw):
    assert_diagnosed(raw)


@FUZZ
@given(JSON_VALUES)
def test_any_json_document_gets_diagnostics_not_an_exception(value):
    # JSON is YAML 1.2, so every JSON document is a file the linter must answer. (Written with
    # ensure_ascii=False: libyaml refuses the surrogate-pair escapes JSON uses for astral chars.)
    diagnostics = assert_diagnosed(json.dumps(value, ensure_ascii=False).encode())
    if not isinstance(value, dict):
        # YAML refuses some characters JSON allows (DEL, C1 controls): that is a syntax error;
        # text holding a NUL the runner could not store is refused as such (issue 13).
        rules = [d.rule for d in diagnostics]
        assert rules in (["not-a-mapping"], ["yaml-syntax"], ["yaml-unsupported-value"])


@FUZZ
@given(
    st.fixed_dictionaries(
        {
            "apiVersion": st.just("dataworkflows/v1"),
            "kind": st.just("Workflow"),
            "id": st.sampled_from(["w", "W!", ""]),
            "startNode": st.sampled_from(["a", "b", "zz"]),
            "nodes": st.lists(
                st.fixed_dictionaries(
                    {
                        "id": st.sampled_from(["a", "b", "c"]),
                        "actionType": st.sampled_from(["core.echo", "core.delay", "x.y"]),
                    },
                    optional={
                        "parameters": st.dictionaries(
                            st.sampled_from(["message", "duration", "failTimes", "bogus"]),
                            SCALARS,
                            max_size=3,
                        ),
                        "edges": st.lists(
                            st.fixed_dictionaries(
                                {"targetNode": st.sampled_from(["a", "b", "c", "q"])},
                                optional={
                                    "when": st.sampled_from(
                                        ["success", "failure", "always", "sometimes"]
                                    ),
                                    "condition": SCALARS,
                                },
                            ),
                            max_size=3,
                        ),
                        "onFailure": st.sampled_from(["a", "b", "nope"]),
                        "retry": st.dictionaries(
                            st.sampled_from(["maxAttempts", "backoff", "initialDelay"]),
                            SCALARS,
                            max_size=2,
                        ),
                    },
                ),
                max_size=4,
            ),
        },
        optional={
            "triggers": st.lists(
                st.dictionaries(
                    st.sampled_from(["id", "type", "cron", "timezone", "path"]), SCALARS, max_size=4
                ),
                max_size=3,
            ),
            "vars": JSON_VALUES,
            "outputs": JSON_VALUES,
        },
    )
)
def test_workflow_shaped_documents_reach_every_rule_without_an_exception(document):
    assert_diagnosed(json.dumps(document).encode())
