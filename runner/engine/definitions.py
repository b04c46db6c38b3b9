"""Workflow versions and their plans, as the conductor needs them.

A version never changes once written, so each is read once per process (an LRU by tenant,
workflow and version). Plans come from this process's cache, then `workflow_plans`, then the
compiler, which stores what it compiled: a run never recompiles an unchanged definition.
"""

from __future__ import annotations

import structlog

from runner import versions
from runner.errors import PlanError
from runner.plan import cache, compiler
from runner.plan.compiler import Plan
from runner.store import workflows
from runner.store.database import Connection, Database
from runner.store.workflows import DefinitionRow

_log = structlog.get_logger(__name__)

#: Versions kept in memory per process.
DEFINITION_CACHE_SIZE = 1024


class Definitions:
    """Cached reads of workflow versions and their compiled plans."""

    def __init__(self, size: int = DEFINITION_CACHE_SIZE) -> None:
        self._versions: cache.LruCache[tuple[str, str, int], DefinitionRow] = cache.LruCache(size)

    def cached(self, tenant: str, workflow_id: str, version: int) -> DefinitionRow | None:
        """The version if this process has read it already (no database round trip)."""
        return self._versions.get((tenant, workflow_id, version))

    async def version(
        self, conn: Connection, tenant: str, workflow_id: str, version: int
    ) -> DefinitionRow:
        """One version of a workflow (NotFound when it does not exist)."""
        key = (tenant, workflow_id, version)
        found = self._versions.get(key)
        if found is None:
            found = await workflows.get_definition(conn, tenant, workflow_id, version)
            self._versions.put(key, found)
        return found

    async def plan(self, db: Database, definition: DefinitionRow) -> Plan:
        """The version's plan: cached, else stored, else compiled and stored. A stored plan that
        fails its load checks is recompiled and replaced, with a warning."""
        plan = compiler.cached_plan(definition.checksum)
        if plan is not None:
            return plan
        async with db.connection() as conn:
            stored = await workflows.get_plan(
                conn, definition.tenant, definition.checksum, compiler.COMPILER_VERSION
            )
            plan, damaged = None, False
            if stored is not None:
                try:
                    plan = compiler.Plan.from_json(stored)
                except PlanError as exc:
                    damaged = True
                    _log.warning(
                        "stored plan refused; recompiling it",
                        workflowId=definition.workflow_id,
                        version=definition.version,
                        reason=str(exc),
                    )
            if plan is None:
                plan = compiler.compile_plan(definition.definition)
                await versions.store_plan(conn, definition.tenant, plan, replace=damaged)
        compiler.remember(plan)
        return plan
