"""The web UI's files at `/ui`: served from the package with the right types and caching,
public even in strict mode (they hold no data), and nothing outside its folder."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from runner.api import ui
from runner.daemon import Daemon
from runner.settings import Settings
from runner.store.database import Database
from tests.jwt_keys import strict

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with Daemon(strict(settings), database=db) as daemon:
        app = daemon.app()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ui.test") as http:
                yield http


async def test_the_entry_page_is_never_cached_and_names_its_assets_by_version(
    client: httpx.AsyncClient,
) -> None:
    moved = await client.get("/ui")
    assert moved.status_code == 307 and moved.headers["location"] == "ui/"

    page = await client.get("/ui/")

    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    versioned = re.findall(r'(?:src|href)="([a-z]+\.(?:js|css))\?v=([^"]+)"', page.text)
    assert sorted(name for name, _ in versioned) == ["app.js", "style.css"]
    assert {v for _, v in versioned} == {ui.version()}


async def test_assets_have_their_types_and_a_versioned_one_is_cached_for_a_year(
    client: httpx.AsyncClient,
) -> None:
    script = await client.get(f"/ui/app.js?v={ui.version()}")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert script.headers["x-content-type-options"] == "nosniff"

    page_module = await client.get("/ui/pages/executions.js")  # imported without a version
    assert page_module.status_code == 200 and page_module.headers["cache-control"] == "no-cache"
    stale = await client.get("/ui/style.css?v=0.0.0-old")
    assert stale.headers["content-type"] == "text/css; charset=utf-8"
    assert stale.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    ["/ui/nothing.js", "/ui/../pyproject.toml", "/ui/%2e%2e/api/ui.py", "/ui/.hidden.js",
     "/ui/pages", "/ui/pages//workflows.js"],
)  # fmt: skip
async def test_nothing_but_the_uis_files_is_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_files_need_no_token_in_strict_mode_but_the_data_does(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/ui/api.js")).status_code == 200
    assert (await client.get("/api/v1/workflows")).status_code == 401
