"""Secrets are placed, never transformed (docs/security.md): every refused form is a lint error
at its position and a render error that quotes nothing derived from the value; every allowed
form renders the real value. Also the masker's quoted forms and masking before a cut."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import structlog

from runner.actions import http
from runner.actions.services import TemplateSecrets
from runner.credentials import CredentialProvider, masking
from runner.engine import templates
from runner.engine.scope import ExecutionScope
from runner.errors import TemplateRenderError
from runner.lint import linter
from runner.settings import Settings
from runner.spec import expressions, placement
from runner.spec.model import Workflow
from runner.store.executions import ExecutionRow

#: Mixed case, digits and `-`, as the e2e canary; unique per run.
VALUE = f"Qz{uuid.uuid4().hex[:6].upper()}-{uuid.uuid4().hex[:8]}-Wx9"
#: With what JSON and repr escape: a quote, a backslash, letters outside ASCII.
QUOTED = f'Ün"{uuid.uuid4().hex[:6]}\\Çø-{uuid.uuid4().hex[:4]}'

#: (template, what the message says is applied): each refused, by lint and at run time.
REFUSED = [
    ("{{ secrets.canary | upper }}", "the filter `upper`"),
    ("{{ secrets.canary | lower }}", "the filter `lower`"),
    ("{{ secrets.canary | title }}", "the filter `title`"),
    ("{{ secrets.canary | capitalize }}", "the filter `capitalize`"),
    ("{{ secrets.canary.swapcase() }}", "`.swapcase`"),
    ("{{ secrets.canary | reverse }}", "the filter `reverse`"),
    ("{{ secrets.canary[::-1] }}", "is sliced"),
    ("{{ secrets.canary[2:9] }}", "is sliced"),
    ("{{ secrets.canary[0] }}", "is indexed"),
    ("{{ secrets.canary | replace('-', ' ') }}", "the filter `replace`"),
    ("{{ secrets.canary | join(' ') }}", "the filter `join`"),
    ("{{ secrets.canary | list }}", "the filter `list`"),
    ("{{ secrets.canary | string }}", "the filter `string`"),
    ("{{ secrets.canary ~ '' }}", "joined with `~`"),
    ("{{ secrets.canary + '!' }}", "an operand of `+`"),
    ("{{ '%s!' % secrets.canary }}", "an operand of `%`"),
    ("{{ '%s' | format(secrets.canary) }}", "an argument of the filter `format`"),
    ("{{ '{}'.format(secrets.canary) }}", "an argument of a call"),
    ("{{ secrets.canary.encode().hex() }}", "`.encode`"),
    ("{{ secrets.canary | int }}", "the filter `int`"),
    ("{{ secrets.canary | length }}", "the filter `length`"),
    ("{{ secrets.canary | tojson }}", "the filter `tojson`"),
    ("{{ secrets.canary | urlencode }}", "the filter `urlencode`"),
    ("{{ secrets.canary | e }}", "the filter `e`"),
    ("{{ secrets.canary | escape }}", "the filter `escape`"),
    ("{{ secrets.canary | default('x') }}", "the filter `default`"),
    ("{{ secrets.canary is defined }}", "tested with `is defined`"),
    ("{{ secrets['canary'] | upper }}", "`secrets['canary']` has the filter `upper`"),
    ("{% for c in secrets.canary %}{{ c }} {% endfor %}", "looped over by `{% for %}`"),
    ("{% set t = secrets.canary %}{{ t }}", "stored by `{% set %}`"),
    ("{% if secrets.canary %}yes{% endif %}", "tested by `{% if %}`"),
    ("{{ 'yes' if secrets.canary else 'no' }}", "inline `if … else`"),
    ("{{ secrets.canary == 'guess' }}", "compared with `==`"),
    ("{{ secrets.canary > 'M' }}", "compared with `>`"),
    ("{{ 'Q' in secrets.canary }}", "compared with `in`"),
    ("{{ not secrets.canary }}", "an operand of `not`"),
    ("{{ [secrets.canary] }}", "a list, tuple or dict"),
    # Run, this one's error would quote the value: "dict object has no element 'Kq…'".
    ("{{ trigger[secrets.canary] }}", "is used as a key"),
    ("{{ secrets[trigger.name] }}", "names its secret with an expression"),
    ("{{ secrets }}", "the set of all secrets"),
    ("{{ secrets | list }}", "`secrets` has the filter `list`"),
    ("{% macro m(v) %}{{ v }}{% endmacro %}{{ m(secrets.canary) }}", "an argument of a call"),
    ("{% macro m() %}{{ secrets.canary }}{% endmacro %}{{ m() | upper }}", "a `{% macro %}`"),
    ("{% filter upper %}{{ secrets.canary }}{% endfilter %}", "a `{% filter %}` block"),
    ("{% set t %}{{ secrets.canary }}{% endset %}{{ t | upper }}", "a `{% set %}` block"),
    ("{% autoescape true %}{{ secrets.canary }}{% endautoescape %}", "`{% autoescape %}`"),
    ("{% for x in [[1]] recursive %}{{ secrets.canary }}{% endfor %}", "a recursive `{% for %}`"),
    ("{% set secrets = trigger %}{{ secrets.name }}", "`secrets` is assigned"),
]

#: (template, what it renders to, with VALUE as `canary`): placements, plain or among others.
ALLOWED = [
    ("{{ secrets.canary }}", VALUE),
    ("{{ secrets['canary'] }}", VALUE),
    ('{{ secrets["canary"] }}', VALUE),
    ("{{- secrets.canary -}}", VALUE),
    ("Bearer {{ secrets.canary }}", f"Bearer {VALUE}"),
    ("https://x/{{ secrets.canary }}/{{ trigger.name }}", f"https://x/{VALUE}/Ann"),
    ("{{ trigger.name | upper }}:{{ secrets.canary }}", f"ANN:{VALUE}"),
    ("{% if trigger.name %}{{ secrets.canary }}{% endif %}", VALUE),
    ("{% for i in range(2) %}{{ secrets.canary }};{% endfor %}", f"{VALUE};{VALUE};"),
    ("{% with n = trigger.name %}{{ n }}={{ secrets.canary }}{% endwith %}", f"Ann={VALUE}"),
    ("{{ trigger.secrets }} {{ secrets.canary }}", f"mine {VALUE}"),
]


def derived(value: str) -> list[str]:
    """Forms derived from a secret by the refused transforms (and its encodings)."""
    raw = value.encode()
    found = [
        value,
        value.upper(),
        value.lower(),
        value.title(),
        value.capitalize(),
        value.swapcase(),
        value[::-1],
        value[2:9],
        " ".join(value),
        value.replace("-", " "),
        raw.hex(),
        base64.b64encode(raw).decode(),
        quote(value, safe=""),
        quote_plus(value),
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
        str(list(value)),
    ]
    return [form for form in found if len(form) >= 4]


def provider() -> CredentialProvider:
    return CredentialProvider({"DWF_SECRET_CANARY": VALUE, "DWF_SECRET_QUOTED": QUOTED})


def workflow(parameters: dict[str, Any], **document: Any) -> Workflow:
    node = {"id": "a", "actionType": "core.echo", "parameters": parameters}
    return Workflow.from_data(
        {
            "apiVersion": "dataworkflows/v1",
            "kind": "Workflow",
            "id": "placement",
            "startNode": "a",
            "nodes": [node | document.pop("node", {})],
            **document,
        }
    )


def lint_text(yaml: str) -> list[tuple[str, int, int, str]]:
    result = linter.lint_source("placement.yaml", yaml.encode())
    return [(d.rule, d.line, d.column, d.message) for d in result.diagnostics]


def document_with(message: str) -> str:
    # The template at line 9, column 16 (JSON strings are YAML double-quoted scalars).
    return (
        "apiVersion: dataworkflows/v1\nkind: Workflow\nid: placement\nstartNode: a\nnodes:\n"
        "  - id: a\n    actionType: core.echo\n    parameters:\n"
        f"      message: {json.dumps(message)}\n"
    )


def render(template: Any, secrets: TemplateSecrets | None) -> Any:
    scope = {"trigger": {"name": "Ann", "secrets": "mine", "flag": True}}
    return templates.render_value(
        {"message": template}, scope, where="node `a`", path="parameters", secrets=secrets
    )


# --- refused ------------------------------------------------------------------------------------


def test_the_corpus_is_large_enough():
    assert len(REFUSED) >= 25 and len({t for t, _ in REFUSED}) == len(REFUSED)


@pytest.mark.parametrize(("template", "applied"), REFUSED, ids=[t for t, _ in REFUSED])
def test_lint_refuses_the_form_at_its_position(template: str, applied: str):
    findings = lint_text(document_with(template))
    assert [(rule, line, column) for rule, line, column, _ in findings] == [
        ("secret-transformed", 9, 16)
    ], findings
    message = findings[0][3]
    assert message.startswith("node `a` parameter `message`: "), message
    assert applied in message
    assert "may only be placed whole, as `{{ secrets.NAME }}`" in message


@pytest.mark.parametrize(("template", "applied"), REFUSED, ids=[t for t, _ in REFUSED])
def test_rendering_refuses_the_form_before_the_secret_is_read(template: str, applied: str):
    secrets = provider()
    with pytest.raises(TemplateRenderError) as info:
        render(template, TemplateSecrets(secrets))
    message = str(info.value)
    assert message.startswith("node `a` at `parameters.message`: "), message
    assert applied in message
    assert secrets.revealed == set()  # refused from the template's text: nothing was looked up
    for form in derived(VALUE):
        assert form not in message


@pytest.mark.parametrize(("template", "expected"), ALLOWED, ids=[t for t, _ in ALLOWED])
def test_a_placed_secret_lints_clean_and_renders_the_real_value(template: str, expected: str):
    assert lint_text(document_with(template)) == []
    assert render(template, TemplateSecrets(provider())) == {"message": expected}


def test_a_lone_placement_keeps_the_value_exact():
    rendered = render("{{ secrets.quoted }}", TemplateSecrets(provider()))
    assert rendered == {"message": QUOTED}


def test_each_refused_use_of_one_template_is_a_finding_of_its_own():
    text = "{{ secrets.canary }} {{ secrets.canary | upper }} {{ secrets.other[1:] }}"
    findings = expressions.check(workflow({"message": text}))
    assert [f.rule for f in findings] == ["secret-transformed", "secret-transformed"]
    assert "`secrets.canary` has the filter `upper`" in findings[0].message
    assert "`secrets.other` is sliced" in findings[1].message
    assert all(f.path == ("nodes", 0, "parameters", "message") for f in findings)


def test_a_missing_secret_names_the_name_only():
    secrets = provider()
    with pytest.raises(TemplateRenderError) as info:
        render("Bearer {{ secrets['absent-key'] }}", TemplateSecrets(secrets))
    message = str(info.value)
    assert "secret 'absent-key' is not configured" in message and "DWF_SECRET_ABSENT_KEY" in message
    assert all(form not in message for form in derived(VALUE))


# --- secrets never reach vars, outputs, idempotency keys or conditions --------------------------


@pytest.mark.parametrize(
    ("document", "path", "place"),
    [
        ({"vars": {"kept": "{{ secrets.canary }}"}}, ("vars", "kept"), "vars"),
        ({"outputs": {"leak": "x {{ secrets.canary }}"}}, ("outputs", "leak"), "workflow outputs"),
        (
            {"node": {"idempotencyKey": "{{ secrets['canary'] }}"}},
            ("nodes", 0, "idempotencyKey"),
            "idempotency keys",
        ),
        # A `secrets` the template assigns itself is refused the same: the engine would refuse it.
        (
            {"outputs": {"o": "{% set secrets = 1 %}{{ secrets }}"}},
            ("outputs", "o"),
            "workflow outputs",
        ),
    ],
)
def test_lint_keeps_secrets_out_of_stored_values(document: dict[str, Any], path, place: str):
    findings = expressions.check(workflow({"message": "hi"}, **document))
    assert [(f.rule, f.path) for f in findings if f.rule != "unused-var"] == [
        ("template-unknown-name", path)
    ]
    message = next(f.message for f in findings if f.rule == "template-unknown-name")
    assert f"secrets never reach {place}" in message
    assert "placed whole, as `{{ secrets.NAME }}`, in the parameters of the node" in message
    assert "secrets" not in message.split("valid names here:")[1]


@pytest.mark.parametrize(
    "condition",
    ["secrets.canary.length > 3", "result.outputs.echo === secrets['canary']", "!!secrets"],
)
def test_lint_refuses_a_condition_that_reads_secrets(condition: str):
    wf = workflow(
        {"message": "hi"},
        node={"edges": [{"targetNode": "a", "condition": condition}]},
        triggers=[
            {"id": "hook", "type": "webhook", "path": "p", "signature": "none"}
            | {"activationCondition": condition}
        ],
    )
    findings = [f for f in expressions.check(wf) if f.rule == "secret-transformed"]
    assert [f.path for f in findings] == [
        ("nodes", 0, "edges", 0, "condition"),
        ("triggers", 0, "activationCondition"),
    ]
    assert "reads `secrets`, but secrets never reach conditions" in findings[0].message


@pytest.mark.parametrize(
    "condition",
    ["trigger.secrets === 'x'", "result.outputs['secrets'] > 0", "'secrets' === event.type"],
)
def test_the_word_in_a_string_or_as_a_key_is_no_read(condition: str):
    assert not placement.condition_reads_secrets(condition)


def scope_of_an_execution() -> ExecutionScope:
    row = ExecutionRow(
        execution_id=uuid.uuid4(), tenant="default", workflow_id="w", workflow_version=1,
        status="Running", request_id="r", correlation_id="c", principal=None,
        trigger_type="manual", trigger_id=None, trigger_payload={"name": "Ann"}, event={},
        vars=None, outputs=None, error=None, parent_execution_id=None, parent_node_id=None,
        depth=0, created_at=datetime.now(UTC), started_at=None, finished_at=None,
        cancel_requested_at=None,
    )  # fmt: skip
    return ExecutionScope(row, Settings(), TemplateSecrets(provider()))


def test_the_engine_gives_secrets_to_parameters_only():
    scope = scope_of_an_execution()
    template = {"a": "{{ secrets.canary }}"}
    assert scope.render(template, "node `a`", "parameters") == {"a": VALUE}
    refusals = []
    for render_it in (
        lambda: scope.render_vars(template),
        lambda: scope.render(template, "workflow outputs", "outputs"),
        lambda: scope.render("{{ secrets.canary }}", "node `a`", "idempotencyKey"),
    ):
        with pytest.raises(TemplateRenderError) as info:
            render_it()
        refusals.append(str(info.value))
    assert [r.split(":")[0] for r in refusals] == [
        "workflow vars at `vars.a`",
        "workflow outputs at `outputs.a`",
        "node `a` at `idempotencyKey`",
    ]
    assert all("`secrets` cannot be read here" in r for r in refusals)


# --- cost: only templates that name secrets are analysed, once per text -------------------------


def test_templates_without_secrets_are_not_analysed_and_others_once(monkeypatch):
    calls = []
    analyse = placement.analyse

    def counting(ast: Any) -> Any:
        calls.append(ast)
        return analyse(ast)

    monkeypatch.setattr(placement, "analyse", counting)
    unique = uuid.uuid4().hex
    secrets = TemplateSecrets(provider())
    for _ in range(3):
        render(f"{{{{ trigger.name }}}} {unique}", secrets)
    assert calls == []
    for _ in range(3):
        render(f"{{{{ secrets.canary }}}} {unique}", secrets)
    assert len(calls) == 1


# --- the template's view of secrets ------------------------------------------------------------


def test_the_secrets_object_cannot_be_listed_searched_or_shown():
    secrets = TemplateSecrets(provider())
    with pytest.raises(TypeError):
        list(secrets)
    with pytest.raises(TypeError):
        _ = "canary" in secrets
    with pytest.raises(TypeError):
        secrets[0]
    assert repr(secrets) == "<secrets>"
    assert secrets["canary"] == VALUE


# --- the masker: quoted forms, and masking before a cut ----------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        json.dumps(QUOTED)[1:-1],  # jsonb text, a JSON log line, a JSON body (ASCII escapes)
        json.dumps(QUOTED, ensure_ascii=False)[1:-1],  # starlette's JSON bodies
        repr(QUOTED)[1:-1],  # an exception's message
        ascii(QUOTED)[1:-1],
        httpx.URL(f"http://h/{QUOTED}").raw_path.decode()[1:],  # httpx's errors and log lines
        httpx.URL(f"http://h/?{QUOTED}").query.decode(),
        QUOTED,
    ],
)
def test_the_quoted_forms_of_a_value_are_masked(form: str):
    masker = masking.Masker()
    masker.remember(QUOTED)
    assert masker.mask_text(f"error: '{form}' refused") == "error: '***' refused"


def test_text_is_masked_before_it_is_cut():
    masking.remember(VALUE)
    # Spaces around it: the process's masker also knows other tests' secrets (`x` * 32...).
    text = " " * 95 + VALUE + " tail"
    shown = masking.cut(text, 100)
    assert shown == " " * 95 + "*** t"
    assert VALUE[:5] not in shown  # cut first, the first five characters would be left


def test_an_http_error_quotes_a_masked_body_cut_after_masking():
    masking.remember(VALUE)
    body = json.dumps({"auth": "Bearer " + " " * 280 + VALUE}).encode()
    request = httpx.Request("GET", "http://127.0.0.1/echo")
    response = httpx.Response(500, content=body, headers={"content-type": "application/json"})
    result = http.judge(request, response, body, None)
    assert result.error is not None and result.error.message.endswith("***")
    assert all(VALUE[:n] not in result.error.message for n in range(4, len(VALUE)))


def test_a_log_line_masks_the_repr_of_objects_it_holds():
    masking.remember(VALUE)
    event = {"event": "failed", "error": ValueError(f"bad {VALUE}"), "n": 3, "url": VALUE}
    masked = masking.mask_log_event(None, "warning", event)
    assert masked == {"event": "failed", "error": "ValueError('bad ***')", "n": 3, "url": "***"}
    rendered = structlog.processors.JSONRenderer()(None, "warning", dict(masked))
    assert VALUE not in rendered
    assert binascii.hexlify(VALUE.encode()).decode() not in rendered
