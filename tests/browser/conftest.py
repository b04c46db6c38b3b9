"""The browser-test harness: the runner served on 127.0.0.1 under uvicorn (in the test's own
event loop, beside the Daemon and its pool) and headless Chromium driven by Playwright.

    async def test_x(ui: Served, page: Page) -> None:
        await ui.register(definition); execution_id = await ui.start("w")
        await page.goto(ui.url + "/ui/#/executions")

`page` fails the test on any console error or page error (`console.allow(text)` for one the
test provokes on purpose, such as the 401 a strict server answers without a token). The folder
is skipped when Debian's Chromium or the playwright package is missing (CI installs both).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import os
import socket
import uuid
from collections.abc import AsyncIterator, Collection, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from fastapi import FastAPI

from runner.api import app as api
from runner.auth.tokens import mint
from runner.daemon import Daemon
from runner.engine.requests import StartRequest
from runner.settings import Settings
from runner.store import executions
from runner.store.database import Database
from tests.jwt_keys import strict
from tests.waiting import until

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page

CHROMIUM = Path(os.environ.get("DWF_TEST_CHROMIUM", "/usr/bin/chromium"))
HERE = Path(__file__).parent
TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled"})


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this folder's tests, saying why, when the browser or its driver is missing."""
    reason = _missing()
    if reason is None:
        return
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.skip(reason=reason))


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the test runner owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing."""
        yield


@dataclasses.dataclass
class Served:
    """A runner serving the API and the UI on `url`, with a worker, and ways to give it work."""

    url: str
    daemon: Daemon
    settings: Settings

    async def register(self, definition: Mapping[str, Any], path: str = "test.yaml") -> None:
        """Record `definition` as its workflow's current version (its `status` says which)."""
        await self.daemon.versions.record(
            dict(definition), tenant=self.settings.tenant, source_kind="local", source_path=path
        )

    async def start(self, workflow_id: str, trigger: Mapping[str, Any] | None = None) -> str:
        """Start an execution of the workflow; its id."""
        row, _ = await self.daemon.starts.start(
            StartRequest(
                workflow_id=workflow_id,
                trigger=dict(trigger or {}),
                principal="browser-test",
                tenant=self.settings.tenant,
            )
        )
        return str(row.execution_id)

    async def wait(
        self, execution_id: str, statuses: Collection[str] = TERMINAL, timeout: float = 10.0
    ) -> str:
        """Wait until the execution's status is one of `statuses`; that status."""

        async def reached() -> str:
            async with self.daemon.db.connection() as conn:
                row = await executions.get(conn, self.settings.tenant, uuid.UUID(execution_id))
            return row.status if row is not None and row.status in statuses else ""

        return await until(reached, timeout, f"execution {execution_id} in {sorted(statuses)}")

    def token(self, role: str = "viewer", subject: str = "ann") -> str:
        """A token for this server (strict mode), as `dwf token` mints it."""
        return mint(
            self.settings, subject=subject, roles=[role], tenant=self.settings.tenant, ttl=600
        )


@contextlib.asynccontextmanager
async def serving(settings: Settings, db: Database) -> AsyncIterator[Served]:
    """A Daemon on `db` serving its app (API, UI, a worker) on a free port of 127.0.0.1."""
    async with Daemon(settings, database=db) as daemon:
        application: FastAPI = daemon.app({"worker"})
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        config = uvicorn.Config(application, log_config=None, lifespan="on", log_level="warning")
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[listener]), name="ui-server")

        async def started() -> bool:
            if task.done():
                task.result()  # raise what stopped it
            return bool(server.started)

        try:
            await until(started, 10, "the UI server to start")
            yield Served(url=f"http://127.0.0.1:{port}", daemon=daemon, settings=settings)
        finally:
            server.should_exit = True
            api.request_stop(application)
            await task
            listener.close()


@pytest.fixture
async def ui(settings: Settings, db: Database) -> AsyncIterator[Served]:
    """The runner in loose mode (no token needed), serving on 127.0.0.1."""
    async with serving(settings, db) as served:
        yield served


@pytest.fixture
async def strict_ui(settings: Settings, db: Database) -> AsyncIterator[Served]:
    """The runner in strict mode (a bearer token on every API call), serving on 127.0.0.1."""
    async with serving(strict(settings), db) as served:
        yield served


@dataclasses.dataclass
class Console:
    """What the page logged as errors, and the ones a test expects (by a piece of their text)."""

    errors: list[str] = dataclasses.field(default_factory=list)
    allowed: list[str] = dataclasses.field(default_factory=list)

    def allow(self, text: str) -> None:
        """Accept console errors containing `text` (one the test provokes on purpose)."""
        self.allowed.append(text)

    def unexpected(self) -> list[str]:
        """The errors not allowed."""
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


@pytest.fixture
def console() -> Console:
    """The page's console errors (see `page`)."""
    return Console()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium, driven by Playwright (never a downloaded browser)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        launched = await driver.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, console: Console) -> AsyncIterator[Page]:
    """A 1280x800 page in New York's time zone (not UTC, so local and UTC dates differ) that
    fails the test on any console error or uncaught page error not allowed by `console`."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 800}, timezone_id="America/New_York", locale="en-US"
    )
    opened = await context.new_page()
    opened.set_default_timeout(5000)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console.errors.append(f"console: {message.text} ({message.location.get('url')})")

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: console.errors.append(f"page error: {error}"))
    try:
        yield opened
    finally:
        await context.close()
    assert console.unexpected() == [], "the page logged errors"
