"""The workflow JSON Schema and the findings its validation reports."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML

from runner.spec import schema as schema_module
from runner.spec.durations import DURATION_PATTERN
from runner.spec.model import ScheduleTrigger, WebhookTrigger, Workflow
from runner.spec.rules import RULES
from runner.spec.schema import schema, schema_text, validate

ROOT = Path(__file__).resolve().parents[2]

# The example of SPEC §3 (two long flow mappings wrapped to fit the line length).
SPEC_EXAMPLE = """\
# yaml-language-server: $schema=https://…/workflow.schema.json
apiVersion: dataworkflows/v1
kind: Workflow
id: client-onboarding
displayName: Client onboarding
description: optional text
status: active
startNode: fetch-items
vars: {region: eu}
options:
  maxParallelActions: 10
  timeout: 1h
  defaultActionTimeout: 5m
  routePolicy: parallel
  maxNestingDepth: 5
onFailure: alert-ops
outputs:
  itemCount: "{{ nodes['fetch-items'].outputs.count }}"
triggers:
  - {id: weekday-9am, type: schedule, cron: "0 9 * * 1-5", timezone: Europe/London,
     overlap: skip, catchup: latest, payload: {source: schedule}}
  - {id: new-client, type: webhook, path: clients/new, secretRef: client-hook,
     signature: github, requestIdHeader: X-GitHub-Delivery,
     activationCondition: "trigger.kind === 'client'"}
  - {id: by-hand, type: manual}
nodes:
  - id: fetch-items
    actionType: monday.get-items
    parameters: {boardId: "{{ trigger.boardId }}", filter: {status: Working on it}}
    retry: {maxAttempts: 3, backoff: exponential, initialDelay: 1s, maxDelay: 30s,
            rerenderOnRetry: false}
    timeout: 30s
    edges:
      - {targetNode: post-summary, when: success, condition: "result.outputs.count > 0"}
      - {targetNode: notify-failure, when: failure}
  - id: post-summary
    actionType: slack.post-message
    idempotencyKey: "{{ trigger.boardId }}-{{ execution.requestId }}"
    parameters: {channel: "#ops", text: "{{ nodes['fetch-items'].outputs.count }} items"}
  - id: child
    nodeType: subworkflow
    workflowId: send-welcome
    waitForCompletion: true
    parameters: {clientId: "{{ trigger.clientId }}"}
  - {id: notify-failure, actionType: core.echo,
     parameters: {message: "fetch failed: {{ nodes['fetch-items'].error.message }}"}}
  - {id: alert-ops, actionType: slack.post-message,
     parameters: {channel: "#ops",
                  text: "{{ execution.workflowId }} failed: {{ execution.error.message }}"}}
"""


def load(text: str) -> dict:
    return YAML(typ="safe").load(text)


def minimal(**extra) -> dict:
    doc = {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": "demo",
        "startNode": "a",
        "nodes": [{"id": "a", "actionType": "core.echo"}],
    }
    doc.update(extra)
    return doc


def only(findings, rule=None):
    assert len(findings) == 1, findings
    if rule is not None:
        assert findings[0].rule == rule
    return findings[0]


# --- the schema itself ------------------------------------------------------------------------


def test_schema_is_a_valid_2020_12_schema_with_its_published_id():
    document = schema()
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == "https://dataworkflows.dev/schemas/workflow.schema.json"
    assert document["title"] and document["description"]


def test_every_property_has_a_description():
    missing = []

    def walk(node, where):
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")
        elif isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                # An `if` only selects a branch; editors show the branch's properties instead.
                if not where.endswith(".if") and not (
                    isinstance(sub, dict) and sub.get("description")
                ):
                    missing.append(f"{where}.properties.{name}")
            for key, value in node.items():
                walk(value, f"{where}.{key}")

    walk(schema(), "#")
    assert missing == []


def test_the_package_serves_the_repository_schema_file():
    on_disk = (ROOT / "schemas" / "workflow.schema.json").read_text(encoding="utf-8")
    assert schema_text() == on_disk
    assert schema() == json.loads(on_disk)
    link = ROOT / "runner" / "spec" / "workflow.schema.json"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()


def test_durations_use_the_parser_grammar():
    assert schema()["$defs"]["duration"]["pattern"] == DURATION_PATTERN


def test_valid_documents_take_the_fast_path():
    # Without the compiled checker every lint of a valid file pays jsonschema's ~3 ms.
    assert schema_module._fast_check() is not None


# --- valid documents --------------------------------------------------------------------------


def test_the_spec_example_validates_and_builds_a_workflow():
    doc = load(SPEC_EXAMPLE)
    assert validate(doc) == []
    workflow = Workflow.from_data(doc)
    assert workflow.status == "active"
    assert [t.type for t in workflow.triggers] == ["schedule", "webhook", "manual"]
    assert isinstance(workflow.triggers[0], ScheduleTrigger)
    assert workflow.triggers[0].timezone == "Europe/London"
    assert isinstance(workflow.triggers[1], WebhookTrigger)
    assert workflow.triggers[1].signature == "github"
    assert workflow.node("fetch-items").retry.max_delay == 30.0
    child = workflow.node("child")
    assert (child.node_type, child.workflow_id, child.action_type) == (
        "subworkflow",
        "send-welcome",
        None,
    )


def test_a_minimal_document_validates_and_builds():
    doc = minimal()
    assert validate(doc) == []
    assert Workflow.from_data(doc).nodes[0].action_type == "core.echo"


def test_hmac_webhook_with_its_header_and_secret_validates():
    hook = {
        "id": "h",
        "type": "webhook",
        "path": "hooks/deploy.v2",
        "secretRef": "deploy-key",
        "signature": "hmac-sha256",
        "signatureHeader": "X-Signature",
    }
    assert validate(minimal(triggers=[hook])) == []


# --- the four rules ---------------------------------------------------------------------------


def test_misspelt_key_is_reported_once_with_a_suggestion():
    doc = minimal()
    doc["nodes"][0]["edges"] = [{"targetNod": "a"}]
    finding = only(validate(doc), "schema-unknown-key")
    assert finding.path == ("nodes", 0, "edges", 0, "targetNod")
    assert finding.at_key is True
    assert finding.message == (
        "unknown key `targetNod` in nodes[0].edges[0]; did you mean `targetNode`? "
        "(allowed: targetNode, when, condition)"
    )


def test_unknown_top_level_key_suggests_the_right_one():
    finding = only(validate(minimal(trigers=[])), "schema-unknown-key")
    assert finding.path == ("trigers",)
    assert "unknown key `trigers` at the top level; did you mean `triggers`?" in finding.message


def test_unknown_key_without_a_close_match_lists_the_allowed_keys():
    doc = minimal()
    doc["nodes"][0]["retry"] = {"zzz": 1}
    finding = only(validate(doc), "schema-unknown-key")
    assert "did you mean" not in finding.message
    allowed = "maxAttempts, backoff, initialDelay, maxDelay, multiplier, rerenderOnRetry"
    assert f"(allowed: {allowed})" in finding.message


def test_enum_value_typo_gets_a_suggestion():
    doc = minimal()
    doc["nodes"][0]["edges"] = [{"targetNode": "a", "when": "sucess"}]
    finding = only(validate(doc), "schema-value")
    assert finding.path == ("nodes", 0, "edges", 0, "when")
    assert finding.message == (
        "`nodes[0].edges[0].when` must be one of success, failure, always; got `sucess`"
        " — did you mean `success`?"
    )


def test_missing_required_key_names_the_object_and_the_key():
    doc = minimal()
    doc["nodes"].append({"id": "b"})
    finding = only(validate(doc), "schema-missing-key")
    assert finding.path == ("nodes", 1)
    assert finding.message == "nodes[1] is missing the required key `actionType`"


def test_missing_top_level_keys_are_each_reported():
    findings = validate({"apiVersion": "dataworkflows/v1", "kind": "Workflow"})
    assert [f.message for f in findings] == [
        "the document is missing the required key `id`",
        "the document is missing the required key `startNode`",
        "the document is missing the required key `nodes`",
    ]
    assert all(f.path == () for f in findings)


def test_wrong_type_says_what_was_expected_and_what_was_found():
    doc = minimal()
    doc["nodes"][0]["retry"] = {"maxAttempts": "3"}
    finding = only(validate(doc), "schema-type")
    assert finding.path == ("nodes", 0, "retry", "maxAttempts")
    assert finding.message == "`nodes[0].retry.maxAttempts` must be an integer, not a string"


def test_a_float_is_not_an_integer():
    # The model would otherwise receive 3.0 where it builds an int.
    doc = minimal(options={"maxParallelActions": 3.0})
    finding = only(validate(doc), "schema-type")
    assert finding.message.endswith("must be an integer, not a decimal number")


def test_a_document_that_is_not_a_mapping():
    finding = only(validate(["nodes"]), "schema-type")
    assert finding.path == ()
    assert finding.message == "the document must be a mapping, not a list"


@pytest.mark.parametrize(
    ("changes", "path", "text"),
    [
        ({"apiVersion": "dataworkflows/v2"}, ("apiVersion",), "must be `dataworkflows/v1`"),
        ({"id": "Client_Onboarding"}, ("id",), "must be lowercase letters, digits"),
        ({"id": "deploy\n"}, ("id",), "must be lowercase letters, digits"),
        (
            {"options": {"maxNestingDepth": 99}},
            ("options", "maxNestingDepth"),
            "at most 50; got `99`",
        ),
        ({"options": {"maxParallelActions": 0}}, ("options", "maxParallelActions"), "at least 1"),
        ({"options": {"timeout": "1 hour"}}, ("options", "timeout"), "write e.g. 30s, 5m, 1h30m"),
        ({"nodes": []}, ("nodes",), "`nodes` must have at least one entry"),
        ({"status": "enabled"}, ("status",), "one of draft, active, archived; got `enabled`"),
    ],
)
def test_value_problems_say_what_would_be_valid(changes, path, text):
    finding = only(validate(minimal(**changes)), "schema-value")
    assert finding.path == path
    assert text in finding.message


def test_action_type_must_be_dotted():
    doc = minimal()
    doc["nodes"][0]["actionType"] = "echo"
    finding = only(validate(doc), "schema-value")
    assert finding.message == (
        "`nodes[0].actionType` must be a dotted action type like `slack.post-message`; got `echo`"
    )


# --- discriminated kinds: triggers by `type`, nodes by `nodeType` ------------------------------


def test_trigger_without_type_says_so_and_nothing_else():
    doc = minimal(triggers=[{"id": "t", "cron": "0 9 * * *", "foo": 1}])
    finding = only(validate(doc), "schema-missing-key")
    assert finding.path == ("triggers", 0)
    assert finding.message == "trigger triggers[0] needs `type`: one of schedule, webhook, manual"


def test_trigger_with_an_unknown_type_suggests_one():
    doc = minimal(triggers=[{"id": "t", "type": "schedul", "cron": "0 9 * * *"}])
    finding = only(validate(doc), "schema-value")
    assert finding.path == ("triggers", 0, "type")
    assert finding.message == (
        "`triggers[0].type` must be one of schedule, webhook, manual; got `schedul`"
        " — did you mean `schedule`?"
    )


def test_trigger_errors_come_from_its_own_kind_only():
    hook = {"id": "h", "type": "webhook", "path": "x", "cron": "0 9 * * *", "enabeld": True}
    findings = validate(minimal(triggers=[hook]))
    assert [(f.rule, f.path) for f in findings] == [
        ("schema-unknown-key", ("triggers", 0, "cron")),
        ("schema-unknown-key", ("triggers", 0, "enabeld")),
    ]
    assert findings[0].message == (
        "`cron` is not allowed in triggers[0], a webhook trigger;"
        " it belongs to schedule triggers (`type: schedule`)"
    )
    assert "did you mean `enabled`?" in findings[1].message
    assert "allowed: id, type, path, secretRef, signature" in findings[1].message


def test_schedule_trigger_needs_cron():
    finding = only(validate(minimal(triggers=[{"id": "s", "type": "schedule"}])))
    assert finding.message == "triggers[0] is missing the required key `cron`"


def test_webhook_signature_needs_a_secret_and_hmac_needs_a_header():
    hook = {"id": "h", "type": "webhook", "path": "x", "signature": "hmac-sha256"}
    messages = [f.message for f in validate(minimal(triggers=[hook]))]
    assert messages == [
        "triggers[0] is missing the required key `secretRef` (needed with `signature`)",
        "triggers[0] is missing the required key `signatureHeader`"
        " (needed with `signature: hmac-sha256`)",
    ]


def test_webhook_path_must_not_start_with_a_slash():
    hook = {"id": "h", "type": "webhook", "path": "/clients/new"}
    finding = only(validate(minimal(triggers=[hook])), "schema-value")
    assert finding.path == ("triggers", 0, "path")
    assert "not starting with `/`; got `/clients/new`" in finding.message


def test_subworkflow_keys_on_an_action_node_point_at_nodetype():
    doc = minimal()
    doc["nodes"][0] = {"id": "a", "actionType": "core.echo", "workflowId": "other"}
    finding = only(validate(doc), "schema-unknown-key")
    assert finding.path == ("nodes", 0, "workflowId")
    assert finding.message == (
        "`workflowId` is not allowed in nodes[0], an action node;"
        " it belongs to subworkflow nodes (`nodeType: subworkflow`)"
    )


def test_subworkflow_node_needs_workflow_id_and_refuses_action_type():
    doc = minimal()
    doc["nodes"][0] = {"id": "a", "nodeType": "subworkflow", "actionType": "core.echo"}
    findings = validate(doc)
    assert [(f.rule, f.message) for f in findings] == [
        ("schema-missing-key", "nodes[0] is missing the required key `workflowId`"),
        (
            "schema-unknown-key",
            "`actionType` is not allowed in nodes[0], a subworkflow node;"
            " it belongs to action nodes (`nodeType: action`)",
        ),
    ]


def test_unknown_node_type_is_the_only_finding_for_that_node():
    doc = minimal()
    doc["nodes"][0] = {"id": "a", "nodeType": "subflow", "workflowId": "x", "bogus": 1}
    finding = only(validate(doc), "schema-value")
    assert finding.path == ("nodes", 0, "nodeType")
    assert "did you mean `subworkflow`?" in finding.message


def test_a_node_that_is_not_a_mapping_is_one_type_finding():
    doc = minimal()
    doc["nodes"].append("b")
    finding = only(validate(doc), "schema-type")
    assert finding.message == "`nodes[1]` must be a mapping, not a string"


# --- several problems -------------------------------------------------------------------------


def test_independent_problems_are_all_reported_in_document_order():
    doc = {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": "demo",
        "status": "live",
        "startNode": "a",
        "triggers": [{"id": "t", "type": "manual", "payload": []}],
        "nodes": [
            {"id": "a", "actionType": "core.echo", "timeout": "5 minutes"},
            {"id": "b", "actionType": "core.echo", "edges": [{"targetNode": "a", "when": 1}]},
            {"id": "c"},
        ],
    }
    findings = validate(doc)
    assert [(f.rule, f.path) for f in findings] == [
        ("schema-value", ("status",)),
        ("schema-type", ("triggers", 0, "payload")),
        ("schema-value", ("nodes", 0, "timeout")),
        ("schema-value", ("nodes", 1, "edges", 0, "when")),
        ("schema-missing-key", ("nodes", 2)),
    ]
    assert len({(f.rule, f.path, f.message) for f in findings}) == len(findings)


# --- the fast checker and jsonschema agree; whatever passes builds ------------------------------

BASE = load(SPEC_EXAMPLE)
BASE["triggers"].append(
    {
        "id": "signed",
        "type": "webhook",
        "path": "a/b",
        "secretRef": "k",
        "signature": "hmac-sha256",
        "signatureHeader": "X-Sig",
    }
)
_KEYS = sorted(
    {name for node in schema_module._walk(schema()) for name in node.get("properties", {})}
)
_VALUES = st.one_of(
    st.sampled_from(
        [
            "30s",
            "1h30m",
            "30 s",
            "core.echo",
            "Core",
            "a",
            "",
            "x\n",
            "/x",
            "a/b",
            "X-Sig",
            "action",
            "subworkflow",
            "schedule",
            "webhook",
            "manual",
            "hmac-sha256",
            "github",
            "failure",
            "firstMatch",
            "dataworkflows/v1",
            {},
            [],
            {"targetNode": "a"},
            {"id": "t", "type": "manual"},
            {"id": "n", "nodeType": "subworkflow", "workflowId": "w"},
            {"maxAttempts": 2},
        ]
    ),
    st.integers(-1, 120),
    st.floats(-2, 60, allow_nan=False),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
)


def _containers(node, path=()):
    if isinstance(node, dict | list):
        yield path, node
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            yield from _containers(value, (*path, key))


@st.composite
def mutated_documents(draw):
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        _, target = draw(st.sampled_from(list(_containers(doc))))
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if isinstance(target, dict):
            keys = list(target)
            if action == "delete" and keys:
                del target[draw(st.sampled_from(keys))]
            elif action == "set" and keys:
                target[draw(st.sampled_from(keys))] = copy.deepcopy(draw(_VALUES))
            else:
                key = draw(st.sampled_from(_KEYS) | st.text(min_size=1, max_size=5))
                target[key] = copy.deepcopy(draw(_VALUES))
        elif action == "delete" and target:
            del target[draw(st.integers(0, len(target) - 1))]
        elif action == "set" and target:
            target[draw(st.integers(0, len(target) - 1))] = copy.deepcopy(draw(_VALUES))
        else:
            target.append(copy.deepcopy(draw(_VALUES)))
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_fast_checker_agrees_with_jsonschema_and_accepted_documents_build(doc):
    verdict = schema_module._validator().is_valid(doc)
    assert schema_module._fast_check()(doc) == verdict
    findings = validate(doc)
    assert (findings == []) == verdict
    assert all(f.rule in RULES and f.rule.startswith("schema-") for f in findings)
    if verdict:
        Workflow.from_data(doc)
