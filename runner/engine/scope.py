"""The expression scope of one execution (SPEC §4), and rendering and conditions within it.

    scope = ExecutionScope(row, settings, secrets)
    params = scope.render(node.parameters, f"node `{node.id}`", "parameters")
    taken = scope.holds(entry, route)          # an edge condition, with `result` = entry

The same names reach Jinja templates and JavaScript conditions: `trigger`, `event`, `vars`,
`nodes` (finished nodes' {status, outputs, error, attempts}) and `execution`; templates of a
node's `parameters` also see `secrets` (placed whole, never transformed: docs/security.md),
conditions `result`. Secrets never reach vars, outputs, idempotency keys or conditions: those
are stored, returned or decide routes. Limits come from the settings: the rendered size, and a
condition's time and memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.actions.services import TemplateSecrets
from runner.engine import conditions, templates
from runner.plan.compiler import Route
from runner.settings import Settings
from runner.store.executions import ExecutionRow

#: The only rendered value whose templates read secrets: what an action receives (stored masked).
SECRETS_PATH = "parameters"


class ExecutionScope:
    """What expressions of one execution see, updated as its nodes finish."""

    def __init__(self, row: ExecutionRow, settings: Settings, secrets: TemplateSecrets) -> None:
        self.settings, self.secrets = settings, secrets
        #: Finished nodes' entries, and the `execution` document, updated in place.
        self.nodes: dict[str, dict[str, Any]] = {}
        self.execution: dict[str, Any] = row.document(
            "workflow_id", "workflow_version", "request_id", "correlation_id", "principal",
            "tenant", "started_at", id="execution_id",
        ) | {"error": None}  # fmt: skip
        self._names: dict[str, Any] = {
            "trigger": row.trigger_payload,
            "event": row.event,
            "vars": row.vars if row.vars is not None else {},
            "nodes": self.nodes,
            "execution": self.execution,
        }

    def names(self) -> dict[str, Any]:
        """The scope as a mapping of names (a copy: callers add `result`)."""
        return dict(self._names)

    def render(
        self, value: Any, where: str, path: str, names: Mapping[str, Any] | None = None
    ) -> Any:
        """Render templates in `value` (in `names`, default the whole scope) under the size
        cap; TemplateRenderError names `where` and the `path` inside it. Only `parameters`
        read `{{ secrets.NAME }}`; anywhere else a template naming secrets is refused."""
        return templates.render_value(
            value,
            self.names() if names is None else names,
            where=where,
            path=path,
            max_bytes=self.settings.max_rendered_bytes,
            secrets=self.secrets if path == SECRETS_PATH else None,
        )

    def render_vars(self, variables: Any) -> Any:
        """The workflow's `vars`, rendered once at start (they see trigger, event, execution)."""
        names = {k: self._names[k] for k in ("trigger", "event", "execution")}
        self._names["vars"] = self.render(variables, "workflow vars", "vars", names)
        return self._names["vars"]

    def restore(self, entries: Mapping[str, dict[str, Any]]) -> None:
        """The finished nodes' entries of a resumed execution."""
        self.nodes.clear()
        self.nodes.update(entries)

    def holds(self, entry: Mapping[str, Any], route: Route) -> bool:
        """Whether a route's condition holds for the entry of the node it leaves."""
        assert route.condition is not None
        names = self.names()
        names["result"] = entry
        return conditions.evaluate(
            route.condition,
            names,
            where=f"edge {route.source} -> {route.target}",
            time_limit=self.settings.condition_time_limit,
            memory_limit=self.settings.condition_memory_limit,
        )
