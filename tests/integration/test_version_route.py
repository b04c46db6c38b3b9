"""`GET /api/v1/workflows/{id}/versions/{version}`: an old version's definition, as the web UI
reads it to draw what an execution ran; viewer role, scoped to the caller's tenant. Strict mode,
in process over ASGI, on a real Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from runner.settings import Settings
from runner.store.database import Database
from tests.jwt_keys import Served, bearer, serving, strict, token

pytestmark = pytest.mark.anyio

PROBLEM_JSON = "application/problem+json"


def flow(message: str, *, edge_to: str | None = None) -> dict[str, Any]:
    """Workflow `w`: node `a` echoing `message`, with an edge to a second node when asked."""
    a: dict[str, Any] = {"id": "a", "actionType": "core.echo", "parameters": {"message": message}}
    nodes = [a]
    if edge_to is not None:
        a["edges"] = [{"targetNode": edge_to, "condition": "result.outputs.echo != ''"}]
        nodes.append({"id": edge_to, "actionType": "core.echo", "parameters": {"message": "b"}})
    return {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": "w",
        "status": "active",
        "startNode": "a",
        "nodes": nodes,
    }


@pytest.fixture
async def served(settings: Settings, db: Database) -> AsyncIterator[Served]:
    async with serving(strict(settings), db) as running:
        admin = bearer(token("ann", roles=["admin"]))
        for definition in (flow("first"), flow("second", edge_to="b")):
            body = {"definition": definition, "autoActivate": True}
            response = await running.http.post("/api/v1/workflows", json=body, headers=admin)
            assert response.status_code == 201, response.text
        yield running


async def test_a_viewer_reads_an_old_version_with_the_definition_it_had(served: Served) -> None:
    viewer = bearer(token("vic", roles=["viewer"]))
    old = await served.http.get("/api/v1/workflows/w/versions/1", headers=viewer)
    assert old.status_code == 200, old.text
    document = old.json()
    assert document["version"] == 1
    assert document["current"] is False
    assert document["sourceKind"] == "api"
    assert [n["id"] for n in document["definition"]["nodes"]] == ["a"]
    assert document["definition"]["nodes"][0]["parameters"] == {"message": "first"}

    new = await served.http.get("/api/v1/workflows/w/versions/2", headers=viewer)
    assert new.status_code == 200, new.text
    assert new.json()["current"] is True
    edges = new.json()["definition"]["nodes"][0]["edges"]
    assert edges == [{"targetNode": "b", "condition": "result.outputs.echo != ''"}]
    assert new.json()["checksum"] != document["checksum"]


async def test_a_version_that_does_not_exist_is_404_naming_it(served: Served) -> None:
    viewer = bearer(token("vic", roles=["viewer"]))
    missing = await served.http.get("/api/v1/workflows/w/versions/3", headers=viewer)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM_JSON
    assert "version 3" in missing.json()["detail"]
    unknown = await served.http.get("/api/v1/workflows/nope/versions/1", headers=viewer)
    assert unknown.status_code == 404
    for bad in ("0", "x", str(2**31)):
        refused = await served.http.get(f"/api/v1/workflows/w/versions/{bad}", headers=viewer)
        assert refused.status_code == 422, (bad, refused.text)


async def test_another_tenants_version_is_404_and_shows_nothing_of_it(served: Served) -> None:
    other = bearer(token("gus", roles=["admin"], tenant="globex"))
    response = await served.http.get("/api/v1/workflows/w/versions/1", headers=other)
    assert response.status_code == 404
    assert "first" not in response.text
    assert "globex" in response.json()["detail"]


async def test_without_a_token_it_is_401(served: Served) -> None:
    response = await served.http.get("/api/v1/workflows/w/versions/1")
    assert response.status_code == 401
