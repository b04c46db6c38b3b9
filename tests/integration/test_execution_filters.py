"""`GET /api/v1/executions` by time of creation (`createdAfter`, `createdBefore`): the web UI's
time range filter. The range is a filter like the others: keyset pages within it stay exact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from runner.daemon import Daemon
from tests.integration.test_api import register, workflow

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    # No worker: the executions stay Pending, which is all a listing needs.
    app: FastAPI = daemon.app()
    async with app.router.lifespan_context(app):
        await register(app, workflow("w"))
        await register(app, workflow("other"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


async def started(client: httpx.AsyncClient, workflow_id: str, count: int) -> None:
    for _ in range(count):
        response = await client.post(f"/api/v1/workflows/{workflow_id}/execute", json={})
        assert response.status_code == 202, response.text


async def listing(client: httpx.AsyncClient, **query: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/executions", params=query)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def test_a_time_range_keeps_those_created_from_its_start_up_to_before_its_end(
    client: httpx.AsyncClient,
) -> None:
    await started(client, "w", 5)
    oldest_first = list(reversed((await listing(client))["items"]))
    start, end = oldest_first[1]["createdAt"], oldest_first[4]["createdAt"]

    within = await listing(client, createdAfter=start, createdBefore=end)

    # The start is included, the end is not.
    expected = [x["executionId"] for x in reversed(oldest_first[1:4])]
    assert [x["executionId"] for x in within["items"]] == expected
    assert within["nextCursor"] is None
    after = await listing(client, createdAfter=oldest_first[3]["createdAt"])
    assert len(after["items"]) == 2
    before = await listing(client, createdBefore=oldest_first[1]["createdAt"])
    assert [x["executionId"] for x in before["items"]] == [oldest_first[0]["executionId"]]


async def test_pages_within_a_range_and_a_workflow_list_each_execution_once(
    client: httpx.AsyncClient,
) -> None:
    await started(client, "w", 2)
    await started(client, "other", 1)
    await started(client, "w", 5)
    newest_first = (await listing(client, workflowId="w"))["items"]
    start, end = newest_first[5]["createdAt"], newest_first[0]["createdAt"]
    wanted = [x["executionId"] for x in newest_first[1:6]]

    seen: list[str] = []
    query = {"workflowId": "w", "createdAfter": start, "createdBefore": end, "limit": 2}
    page = await listing(client, **query)
    while True:
        assert len(page["items"]) <= 2
        seen += [x["executionId"] for x in page["items"]]
        if page["nextCursor"] is None:
            break
        page = await listing(client, **query, cursor=page["nextCursor"])

    assert seen == wanted


@pytest.mark.parametrize(
    ("name", "value"),
    [("createdAfter", "2025-01-31T09:00:00"), ("createdBefore", "yesterday")],
)
async def test_a_time_without_a_zone_or_not_a_time_is_refused_naming_the_parameter(
    client: httpx.AsyncClient, name: str, value: str
) -> None:
    response = await client.get("/api/v1/executions", params={name: value})

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [f"query.{name}"]
