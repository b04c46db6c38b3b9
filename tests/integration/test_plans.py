"""SPEC §6 plans: a run compiles a definition once, stores the plan, and later runs load it."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from runner.daemon import Daemon
from runner.engine.requests import StartRequest
from runner.plan import compiler
from runner.store import workflows
from runner.store.workflows import DefinitionRow

pytestmark = pytest.mark.anyio

DEFINITION: dict[str, Any] = {
    "apiVersion": "dataworkflows/v1",
    "kind": "Workflow",
    "id": "planned",
    "status": "active",
    "startNode": "a",
    "nodes": [
        {"id": "a", "actionType": "core.echo", "parameters": {"message": "a"},
         "edges": [{"targetNode": "b"}]},
        {"id": "b", "actionType": "core.echo", "parameters": {"message": "b"}},
    ],
}  # fmt: skip


@pytest.fixture
def compiles(monkeypatch) -> list[str]:
    """The workflow ids the compiler compiles from here on (the in-memory cache starts empty)."""
    compiled: list[str] = []
    real = compiler.compile_plan

    def counting(definition, **kwargs):
        compiled.append(definition["id"])
        return real(definition, **kwargs)

    compiler.PLAN_CACHE.clear()
    monkeypatch.setattr(compiler, "compile_plan", counting)
    return compiled


async def run_once(db, settings, request_id: str) -> str:
    """Run the workflow to its end in a new process (a Daemon of its own: caches empty)."""
    async with Daemon(settings, database=db) as daemon:
        row = await daemon.execute(StartRequest(workflow_id="planned", request_id=request_id))
    return row.status


async def register(db, settings) -> DefinitionRow:
    """Record DEFINITION as the API does; its version."""
    async with Daemon(settings, database=db) as daemon:
        version, _ = await daemon.versions.record(
            DEFINITION, tenant=settings.tenant, source_kind="api"
        )
    return version


async def stored_plan(db, checksum: str) -> dict[str, Any] | None:
    async with db.connection() as conn:
        return await workflows.get_plan(conn, "default", checksum, compiler.COMPILER_VERSION)


async def test_registering_stores_the_plan_and_a_new_process_loads_it_without_compiling(
    db, settings, compiles
):
    version = await register(db, settings)
    assert compiles == ["planned"]
    stored = await stored_plan(db, version.checksum)
    assert stored is not None and stored["checksum"] == version.checksum
    assert stored["topologicalOrder"] == ["a", "b"]

    # A new process (an empty in-memory cache) loads the stored plan: nothing is recompiled.
    compiler.PLAN_CACHE.clear()
    assert await run_once(db, settings, "first") == "Succeeded"
    assert await run_once(db, settings, "second") == "Succeeded"
    assert compiles == ["planned"]


async def test_a_version_without_a_stored_plan_is_compiled_once_and_stored(db, settings, compiles):
    version = await register(db, settings)
    async with db.connection() as conn:
        await conn.execute("DELETE FROM workflow_plans")
    compiler.PLAN_CACHE.clear()
    compiles.clear()
    assert await run_once(db, settings, "first") == "Succeeded"
    assert compiles == ["planned"]
    assert await stored_plan(db, version.checksum) is not None


async def test_a_damaged_stored_plan_is_recompiled_replaced_and_reported(db, settings, compiles):
    version = await register(db, settings)
    assert await run_once(db, settings, "first") == "Succeeded"
    damaged = await stored_plan(db, version.checksum)
    assert damaged is not None
    damaged["topologicalOrder"] = ["b", "a"]  # an order that runs b before a
    async with db.connection() as conn:
        await workflows.put_plan(conn, "default", version.checksum, 1, damaged, replace=True)
    compiler.PLAN_CACHE.clear()
    compiles.clear()

    with capture_logs() as logs:
        assert await run_once(db, settings, "second") == "Succeeded"
    refused = [e for e in logs if e["event"] == "stored plan refused; recompiling it"]
    assert len(refused) == 1 and refused[0]["workflowId"] == "planned"
    assert "does not match its definition" in refused[0]["reason"]
    assert compiles == ["planned"]
    repaired = await stored_plan(db, version.checksum)
    assert repaired is not None and repaired["topologicalOrder"] == ["a", "b"]
