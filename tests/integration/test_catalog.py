"""The action catalog in Postgres: written from the registry at start, plugins included."""

from __future__ import annotations

import sys

import pytest

from runner.actions import registry
from runner.store import catalog

pytestmark = pytest.mark.anyio

PLUGIN = """
from runner.actions.base import Action, ActionResult

class Ping(Action):
    type = "acme.ping"
    description = "Ping."
    parameters_schema = {"type": "object", "properties": {"host": {"type": "string"}}}

    async def execute(self, context, params):
        return ActionResult.ok({})
"""


@pytest.fixture
def acme(tmp_path, monkeypatch):
    """Install `acme-tools` 1.2 (a dist-info on sys.path) for this test."""
    (tmp_path / "acme_tools.py").write_text(PLUGIN)
    info = tmp_path / "acme_tools-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-tools\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[dataworkflows.actions]\nacme.ping = acme_tools:Ping\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.clear_cache()
    yield tmp_path
    monkeypatch.undo()
    sys.modules.pop("acme_tools", None)
    registry.clear_cache()


async def catalog_rows(db):
    async with db.connection() as conn:
        rows = {r["action_type"]: r for r in await catalog.read(conn)}
        cur = await conn.execute("SELECT connector, package FROM connectors ORDER BY 1, 2")
        connectors = [(r["connector"], r["package"]) for r in await cur.fetchall()]
    return rows, connectors


async def test_the_registry_is_published_with_schemas_and_packages(db, daemon, acme, monkeypatch):
    assert await daemon.publish_catalog() == len(registry.all_types())
    rows, connectors = await catalog_rows(db)
    assert {"core.echo", "core.http", "slack.post-message", "monday.get-items"} <= set(rows)
    ping = rows["acme.ping"]
    assert (ping["connector"], ping["package"], ping["package_version"]) == (
        "acme",
        "acme-tools",
        "1.2",
    )
    assert ping["parameters_schema"] == {
        "type": "object",
        "properties": {"host": {"type": "string"}},
    }
    assert ping["entry_point"] == "acme_tools:Ping"
    assert rows["slack.post-message"]["parameters_schema"]["required"] == ["channel"]
    assert ("acme", "acme-tools") in connectors and ("slack", "dataworkflows") in connectors

    # Uninstalled, then a runner starts again: its types and its connector leave the catalog.
    monkeypatch.undo()
    registry.clear_cache()
    await daemon.publish_catalog()
    rows, connectors = await catalog_rows(db)
    assert "acme.ping" not in rows and ("acme", "acme-tools") not in connectors
    assert "core.echo" in rows


async def test_a_broken_plugin_leaves_the_catalog_as_it_was(db, daemon, tmp_path, monkeypatch):
    await daemon.publish_catalog()
    before, _ = await catalog_rows(db)
    (tmp_path / "broken_tools.py").write_text("raise ImportError('no sdk')\n")
    info = tmp_path / "broken_tools-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-tools\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[dataworkflows.actions]\nx.y = broken_tools:Y\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.clear_cache()
    try:
        assert await daemon.publish_catalog() == 0
    finally:
        monkeypatch.undo()
        registry.clear_cache()
    after, _ = await catalog_rows(db)
    assert set(after) == set(before)
