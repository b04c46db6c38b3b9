"""The web UI's screenshots in docs/ui/: `python bench/ui_screenshots.py [--database-url URL]`.

Serves a runner on a scratch database (on the server of `--database-url`, default
`DWF_TEST_DATABASE_URL`; else an embedded pgserver) with a few workflows, runs, a sync run with
an invalid file and a missed fire, then saves 1280x800 PNGs of the workflows, executions, sync
and fire log pages, and of an execution with a retry, a skipped branch and a failure, from
Debian's headless Chromium (as the browser tests drive it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

# bench/ is on sys.path when run as a script
from engine_bench import bench_settings
from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.daemon import Daemon
from runner.settings import Settings
from runner.store.database import Database
from tests.browser.conftest import CHROMIUM, serving
from tests.browser.scenes import NIGHTLY, flow, ran, seed_missed_fire, seed_sync_run

ROOT = Path(__file__).resolve().parents[1]


def _echo(node_id: str, **more: Any) -> dict[str, Any]:
    return {"id": node_id, "actionType": "core.echo", "parameters": {"message": node_id}} | more


#: fetch (retried once) -> a branch not taken, and one that fails, so what follows is skipped.
BRANCHES = {
    "apiVersion": "dataworkflows/v1",
    "kind": "Workflow",
    "id": "invoice-run",
    "status": "active",
    "startNode": "fetch",
    "nodes": [
        {"id": "fetch", "actionType": "core.echo",
         "parameters": {"message": "fetch", "failTimes": 1, "failMode": "transient"},
         "retry": {"maxAttempts": 2, "initialDelay": "10ms"},
         "edges": [{"targetNode": "remind", "condition": "result.outputs.echo === 'none'"},
                   {"targetNode": "bill"}]},
        _echo("remind"),
        {"id": "bill", "actionType": "core.echo",
         "parameters": {"message": "bill", "failTimes": 1, "failMode": "permanent"},
         "edges": [{"targetNode": "notify"}]},
        _echo("notify"),
    ],
}  # fmt: skip
PAGES = {
    "workflows.png": "#/workflows",
    "executions.png": "#/executions",
    "sync.png": "#/sync",
    "fires.png": "#/workflows/nightly-report/triggers/nightly",
}


async def shoot(settings: Settings, out: Path) -> None:
    """Fill a runner with a little of everything, then save each page's screenshot."""
    async with Daemon(settings):  # migrates the scratch database
        pass
    async with Database.open(settings) as db, serving(settings, db) as ui:
        hourly = {"id": "hourly", "type": "schedule", "cron": "15 * * * *", "timezone": "UTC"}
        await ui.register(flow("nightly-report", triggers=[NIGHTLY]), "workflows/nightly.yaml")
        await ui.register(flow("sync-crm", triggers=[hourly]), "workflows/crm.yaml")
        await ui.register(flow("invoice-reminders", fail=True), "workflows/invoices.yaml")
        await ui.register(flow("onboarding"), "workflows/onboarding.yaml")
        await ui.register(BRANCHES, "workflows/invoice-run.yaml")
        for workflow_id, count in (("sync-crm", 4), ("invoice-reminders", 2), ("onboarding", 3)):
            await ran(ui, workflow_id, count)
        await ran(ui, "nightly-report", 2)
        await seed_sync_run(ui)
        await seed_missed_fire(ui, "nightly-report", "late: the scheduler was not running")
        branches = await ui.start("invoice-run")
        assert await ui.wait(branches) == "Failed"
        pages = PAGES | {"execution.png": f"#/executions/{branches}"}
        async with async_playwright() as driver:
            browser = await driver.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox"]
            )
            context = await browser.new_context(
                viewport={"width": 1280, "height": 800}, timezone_id="Europe/Berlin"
            )
            page = await context.new_page()
            for name, route in pages.items():
                await page.goto(f"{ui.url}/ui/{route}")
                await page.wait_for_selector("main .page > :not(.loading)")
                await page.wait_for_load_state("networkidle")
                await page.screenshot(path=str(out / name))
                print(f"{out / name}: {(out / name).stat().st_size // 1024} KiB")
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DWF_TEST_DATABASE_URL"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ui")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from runner import logs

    logs.configure("json", "warning")
    started = time.monotonic()
    with bench_settings(args.database_url) as settings:
        asyncio.run(shoot(settings, args.out))
    print(f"took {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
