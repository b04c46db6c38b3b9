"""The document data of a typed workflow: the inverse of `Workflow.from_data`.

A plan stores the definition it was compiled from. When a caller has only the typed workflow,
this rebuilds equivalent document data: `Workflow.from_data(workflow_to_data(w)) == w`.
Defaults are left out, durations are written in their shortest form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.spec import durations, model


def _put(out: dict[str, Any], key: str, value: Any, default: Any = None) -> None:
    # Leaving defaults out keeps the data close to what an author writes; from_data fills them in.
    if value != default:
        out[key] = model.thaw(value) if isinstance(value, Mapping | tuple) else value


def _put_duration(
    out: dict[str, Any], key: str, seconds: float | None, default: Any = None
) -> None:
    if seconds is not None and seconds != default:
        out[key] = durations.format_duration(seconds)


def _edge_data(edge: model.Edge) -> dict[str, Any]:
    out: dict[str, Any] = {"targetNode": edge.target_node}
    _put(out, "when", edge.when, "success")
    _put(out, "condition", edge.condition)
    return out


def _retry_data(retry: model.RetryPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _put(out, "maxAttempts", retry.max_attempts, 1)
    _put(out, "backoff", retry.backoff, "exponential")
    _put_duration(
        out, "initialDelay", retry.initial_delay, model.DEFAULT_RETRY_INITIAL_DELAY_SECONDS
    )
    _put_duration(out, "maxDelay", retry.max_delay, model.DEFAULT_RETRY_MAX_DELAY_SECONDS)
    _put(out, "multiplier", retry.multiplier, 2.0)
    _put(out, "rerenderOnRetry", retry.rerender_on_retry, False)
    return out


def _node_data(node: model.Node) -> dict[str, Any]:
    out: dict[str, Any] = {"id": node.id}
    _put(out, "nodeType", node.node_type, "action")
    _put(out, "actionType", node.action_type)
    _put(out, "workflowId", node.workflow_id)
    _put(out, "version", node.version)
    _put(out, "waitForCompletion", node.wait_for_completion, True)
    _put(out, "description", node.description)
    _put(out, "parameters", node.parameters, {})
    if node.retry != model.NO_RETRY:
        out["retry"] = _retry_data(node.retry)
    _put_duration(out, "timeout", node.timeout)
    _put(out, "idempotencyKey", node.idempotency_key)
    _put(out, "routePolicy", node.route_policy)
    if node.edges:
        out["edges"] = [_edge_data(edge) for edge in node.edges]
    _put(out, "onFailure", node.on_failure)
    return out


def _options_data(options: model.Options) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _put(out, "maxParallelActions", options.max_parallel_actions)
    _put_duration(out, "timeout", options.timeout)
    _put_duration(out, "defaultActionTimeout", options.default_action_timeout)
    _put(out, "routePolicy", options.route_policy, "parallel")
    _put(out, "maxNestingDepth", options.max_nesting_depth, model.DEFAULT_MAX_NESTING_DEPTH)
    return out


def _trigger_data(trigger: model.Trigger) -> dict[str, Any]:
    out: dict[str, Any] = {"id": trigger.id, "type": trigger.type}
    if isinstance(trigger, model.ScheduleTrigger):
        out["cron"] = trigger.cron
        _put(out, "timezone", trigger.timezone, "UTC")
        _put(out, "payload", trigger.payload, {})
        _put(out, "overlap", trigger.overlap, "skip")
        _put(out, "catchup", trigger.catchup, "latest")
        _put_duration(
            out, "catchupWindow", trigger.catchup_window, model.DEFAULT_CATCHUP_WINDOW_SECONDS
        )
        _put_duration(out, "misfireGraceTime", trigger.misfire_grace_time)
    elif isinstance(trigger, model.WebhookTrigger):
        out["path"] = trigger.path
        _put(out, "secretRef", trigger.secret_ref)
        _put(out, "signature", trigger.signature)
        _put(out, "signatureHeader", trigger.signature_header)
        _put(out, "requestIdHeader", trigger.request_id_header)
        _put(out, "activationCondition", trigger.activation_condition)
    else:
        _put(out, "payload", trigger.payload, {})
    _put(out, "enabled", trigger.enabled, True)
    return out


def workflow_to_data(workflow: model.Workflow) -> dict[str, Any]:
    """Plain document data that `Workflow.from_data` turns back into an equal workflow."""
    out: dict[str, Any] = {
        "apiVersion": workflow.api_version,
        "kind": workflow.kind,
        "id": workflow.id,
    }
    _put(out, "displayName", workflow.display_name)
    _put(out, "description", workflow.description)
    _put(out, "status", workflow.status, "draft")
    out["startNode"] = workflow.start_node
    _put(out, "vars", workflow.vars, {})
    options = _options_data(workflow.options)
    if options:
        out["options"] = options
    _put(out, "onFailure", workflow.on_failure)
    _put(out, "outputs", workflow.outputs, {})
    if workflow.triggers:
        out["triggers"] = [_trigger_data(trigger) for trigger in workflow.triggers]
    out["nodes"] = [_node_data(node) for node in workflow.nodes]
    return out
