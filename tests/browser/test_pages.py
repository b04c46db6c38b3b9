"""The web UI's pages in headless Chromium against a real runner: each loads with no console
error and shows what it is for; filters narrow the executions; paging follows the API's cursor;
dates read in the viewer's zone with UTC on hover; the keyboard moves through lists; a strict
server asks for a token, then shows its data."""

from __future__ import annotations

import re
import uuid
from datetime import UTC
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Page, expect

from runner.store import executions
from tests.browser.conftest import Console, Served
from tests.browser.scenes import NIGHTLY, flow, ran, seed_missed_fire, seed_sync_run

pytestmark = pytest.mark.anyio


async def test_each_page_loads_and_shows_what_it_is_for(ui: Served, page: Page) -> None:
    await ui.register(flow("nightly-report", triggers=[NIGHTLY]))
    await ui.register(flow("broken", fail=True))
    (good,) = await ran(ui, "nightly-report")
    (bad,) = await ran(ui, "broken")
    await seed_sync_run(ui)
    await seed_missed_fire(ui, "nightly-report", "late: the scheduler was not running")

    await page.goto(f"{ui.url}/ui")
    rows = page.locator("table.list tbody tr")
    await expect(rows).to_have_count(2)
    report = rows.filter(has_text="nightly-report")
    await expect(report.locator(".status-active")).to_have_text("✓ Active")
    await expect(report).to_contain_text("test.yaml")  # its source path
    await expect(report).to_contain_text("nightly (schedule) next")
    await expect(report.locator(f'a[href="#/executions/{good}"] .status-succeeded')).to_be_visible()
    broken = rows.filter(has_text="broken")
    await expect(broken.locator(f'a[href="#/executions/{bad}"] .status-failed')).to_contain_text(
        "✕"
    )

    await report.get_by_role("link", name="nightly-report").click()
    await expect(page.get_by_role("heading", name="nightly-report")).to_be_visible()
    await expect(page.locator("main")).to_contain_text("Current version")
    await expect(page.locator("main time")).not_to_have_count(0)

    await page.get_by_role("link", name="nightly", exact=True).click()
    await expect(page.get_by_role("heading", name="Trigger nightly")).to_be_visible()
    log = page.locator("table.list tbody tr")
    await expect(log).to_have_count(1)
    await expect(log).to_contain_text("missed")
    await expect(log).to_contain_text("late: the scheduler was not running")

    await page.get_by_role("link", name="Executions").click()
    await expect(page.locator("table.list tbody tr")).to_have_count(2)

    await page.get_by_role("link", name="Sync").click()
    run = page.locator("details.sync-run")
    await expect(run).to_contain_text("1 file with diagnostics")
    await expect(run.locator(".diagnostics")).to_contain_text(
        "7:5 error DWF101: startNode 'x' is not a node"
    )
    await expect(run.locator(".status-failed")).to_contain_text("invalid")

    await page.goto(f"{ui.url}/ui/#/nowhere")
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()


async def test_status_workflow_and_time_filters_narrow_the_executions(
    ui: Served, page: Page
) -> None:
    await ui.register(flow("good"))
    await ui.register(flow("broken", fail=True))
    await ran(ui, "good", 2)
    await ran(ui, "broken")
    await page.goto(f"{ui.url}/ui/#/executions")
    rows = page.locator("table.list tbody tr")
    await expect(rows).to_have_count(3)

    await page.get_by_label("Status").select_option("Failed")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("broken")
    assert "status=Failed" in page.url

    await page.get_by_label("Status").select_option("")
    await expect(rows).to_have_count(3)
    await page.get_by_label("Workflow").select_option("good")
    await expect(rows).to_have_count(2)
    assert await rows.filter(has_text="broken").count() == 0

    # A range that ends before anything ran leaves nothing; one around now keeps them.
    await page.get_by_label("Workflow").select_option("")
    await expect(rows).to_have_count(3)
    await page.get_by_label("To", exact=True).fill("2020-01-01T00:00:00")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("main")).to_contain_text("No execution matches these filters.")
    await expect(page.get_by_label("To", exact=True)).to_have_value("2020-01-01T00:00")
    await page.get_by_label("From").fill("2020-01-01T00:00:00")
    await page.get_by_label("To", exact=True).fill("2100-01-01T00:00:00")
    await page.get_by_label("To", exact=True).press("Enter")
    await expect(rows).to_have_count(3)
    assert "from=2020-01-01T05%3A00%3A00.000Z" in page.url  # New York's midnight, in UTC


async def test_paging_follows_the_cursor_to_every_execution_once(ui: Served, page: Page) -> None:
    await ui.register(flow("good"))
    started = await ran(ui, "good", 5)
    await page.goto(f"{ui.url}/ui/#/executions?limit=2")

    seen: list[str] = []
    for expected in (2, 2, 1):
        rows = page.locator("table.list tbody tr")
        await expect(rows).to_have_count(expected)
        links = rows.locator('a[href^="#/executions/"]')
        seen += [str(await a.get_attribute("href")).rsplit("/", 1)[1] for a in await links.all()]
        following = page.locator('a[data-page="next"]')
        if expected == 1:
            await expect(following).to_have_count(0)
        else:
            await following.click()
            await expect(page.locator('a[data-page="first"]')).to_be_visible()

    assert seen == list(reversed(started))  # newest first, each once


async def test_dates_read_in_the_viewers_zone_with_utc_on_hover(ui: Served, page: Page) -> None:
    await ui.register(flow("good"))
    (execution_id,) = await ran(ui, "good")
    async with ui.daemon.db.connection() as conn:
        row = await executions.get(conn, ui.settings.tenant, uuid.UUID(execution_id))
    assert row is not None
    created = row.created_at
    await page.goto(f"{ui.url}/ui/#/executions")

    shown = page.locator("table.list tbody tr time").first
    utc = created.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    await expect(shown).to_have_attribute("title", re.compile(re.escape(utc[:19])))
    assert (await shown.get_attribute("title") or "").endswith("Z (UTC)")
    # The page's zone is New York's: the text shows New York's time and says so.
    there = created.astimezone(ZoneInfo("America/New_York"))
    text = await shown.inner_text()
    assert there.strftime("%I:%M:%S %p") in text and there.strftime("%Z") in text, text


async def test_the_keyboard_moves_through_a_list_and_opens_a_row(ui: Served, page: Page) -> None:
    await ui.register(flow("alpha"))
    await ui.register(flow("beta"))
    await page.goto(f"{ui.url}/ui/#/workflows")
    rows = page.locator("table.list tbody tr")
    await expect(rows).to_have_count(2)

    await page.keyboard.press("j")
    await expect(rows.nth(0)).to_be_focused()
    await page.keyboard.press("j")
    await expect(rows.nth(1)).to_be_focused()
    await page.keyboard.press("k")
    await page.keyboard.press("j")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="beta")).to_be_visible()
    await page.keyboard.press("g")
    await page.keyboard.press("e")
    await expect(page.get_by_role("heading", name="Executions")).to_be_visible()


async def test_a_strict_server_asks_for_a_token_then_shows_the_data(
    strict_ui: Served, page: Page, console: Console
) -> None:
    await strict_ui.register(flow("secured"))
    # The browser logs each refused request as an error: these are the point of this test.
    console.allow("status of 401")
    console.allow("status of 403")
    await page.goto(f"{strict_ui.url}/ui/#/workflows")
    notice = page.get_by_role("alert")
    await expect(notice).to_contain_text("A token is needed")
    await expect(notice).to_contain_text("strict mode")

    await page.get_by_label("Token").fill(strict_ui.token("viewer"))
    await page.get_by_role("button", name="Use").click()
    await expect(page.locator("table.list tbody tr")).to_have_count(1)
    await expect(page.locator("table.list")).to_contain_text("secured")

    # A viewer may not read sync runs: the page says which role it needs.
    await page.get_by_role("link", name="Sync").click()
    await expect(page.get_by_role("alert")).to_contain_text("Not allowed")
    await expect(page.get_by_role("alert")).to_contain_text("needs the admin role")

    # An admin may; the token stays for the tab (sessionStorage) across reloads.
    await page.get_by_label("Token").fill(strict_ui.token("admin"))
    await page.get_by_label("Token").press("Enter")
    await expect(page.get_by_role("heading", name="Sync runs")).to_be_visible()
    await page.reload()
    await expect(page.get_by_role("heading", name="Sync runs")).to_be_visible()
