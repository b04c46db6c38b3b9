"""The execution page (`#/executions/<id>`) in headless Chromium against a real runner: the graph
shows each node's state and each route's decision, updates live from the event stream, the
timeline shows retries, parameters are masked, and an operator can cancel (a viewer is told why
not)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import Console, Served
from tests.documents import workflow

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.anyio

SECRET = "hunter2-do-not-show-me"


def echo(node_id: str, message: str = "hi", **more: Any) -> dict[str, Any]:
    return {"id": node_id, "actionType": "core.echo", "parameters": {"message": message}} | more


def failing(node_id: str, mode: str, times: int, **more: Any) -> dict[str, Any]:
    node = echo(node_id, "trying")
    node["parameters"] |= {"failTimes": times, "failMode": mode}
    return node | more


async def open_execution(page: Page, ui: Served, execution_id: str) -> None:
    from playwright.async_api import expect

    await page.goto(f"{ui.url}/ui/#/executions/{execution_id}")
    await expect(page.locator("[data-rendered=true]")).to_be_visible()


def node(page: Page, node_id: str) -> Any:
    return page.locator(f'.dag [data-node="{node_id}"]')


def item(page: Page, node_id: str) -> Any:
    return page.locator(f'.nodelist button[data-node="{node_id}"]')


async def test_the_graph_shows_a_skipped_branch_a_failure_and_each_routes_decision(
    ui: Served, page: Page
) -> None:
    from playwright.async_api import expect

    # a -> b on a condition that is false (b skipped), a -> c taken; c fails (unhandled), so its
    # success route to d is skipped and d is skipped.
    await ui.register(
        workflow(
            "branches",
            echo(
                "a",
                edges=[
                    {"targetNode": "b", "condition": "result.outputs.echo === 'nope'"},
                    {"targetNode": "c"},
                ],
            ),
            echo("b"),
            failing("c", "permanent", 1, edges=[{"targetNode": "d"}]),
            echo("d"),
        )
    )
    execution_id = await ui.start("branches")
    assert await ui.wait(execution_id) == "Failed"
    await open_execution(page, ui, execution_id)

    expected = {"a": "succeeded", "b": "skipped", "c": "failed", "d": "skipped"}
    for node_id, state in expected.items():
        await expect(node(page, node_id)).to_have_class(f"node s-{state}")
        # Told by text too, not by colour alone: the list says it, the glyph shows it.
        await expect(item(page, node_id).locator(".state")).to_have_text(state)
    await expect(node(page, "c").locator(".glyph")).to_have_text("✕")
    await expect(node(page, "b").locator(".glyph")).to_have_text("⊘")
    routes = {"a#0": "skipped", "a#1": "taken", "c#0": "skipped"}
    for key, decision in routes.items():
        await expect(page.locator(f'.dag [data-edge="{key}"]')).to_have_class(f"edge e-{decision}")
    await expect(page.locator(".exec-status")).to_contain_text("Failed")

    # Keyboard: into the node list, j twice to c, Enter shows its attempt and error.
    await item(page, "a").focus()
    await page.keyboard.press("j")
    await page.keyboard.press("j")
    await expect(item(page, "c")).to_be_focused()
    await page.keyboard.press("Enter")
    details = page.locator(".node-details")
    await expect(details.locator(".node-title")).to_contain_text("c")
    await expect(details.locator(".json-error")).to_contain_text(
        "failed attempt 1 of the first 1 on purpose"
    )
    await expect(details.locator(".routes")).to_contain_text("skipped")


async def test_a_running_node_turns_succeeded_live_without_a_reload(ui: Served, page: Page) -> None:
    from playwright.async_api import expect

    slow = {"id": "wait", "actionType": "core.delay", "parameters": {"duration": "3s"}}
    await ui.register(workflow("slow", slow | {"edges": [{"targetNode": "after"}]}, echo("after")))
    execution_id = await ui.start("slow")
    await ui.wait(execution_id, {"Running"})
    await open_execution(page, ui, execution_id)
    await page.evaluate("window.__sameDocument = true")
    waiting = node(page, "wait")
    await expect(waiting).to_have_class("node s-running", timeout=5000)
    await expect(item(page, "after").locator(".state")).to_have_text("pending")
    drawn = await waiting.element_handle()

    await expect(waiting).to_have_class("node s-succeeded", timeout=10000)
    await expect(node(page, "after")).to_have_class("node s-succeeded")
    await expect(page.locator('.dag [data-edge="wait#0"]')).to_have_class("edge e-taken")
    await expect(page.locator(".exec-status")).to_contain_text("Succeeded")
    # The same page and the same drawn element: its class changed, nothing was drawn again.
    assert await page.evaluate("window.__sameDocument") is True
    assert await drawn.evaluate("(e) => e.isConnected && e.getAttribute('class')") == (
        "node s-succeeded"
    )


async def test_retries_show_as_bars_on_the_nodes_row_of_the_timeline(
    ui: Served, page: Page
) -> None:
    from playwright.async_api import expect

    retry = {"maxAttempts": 3, "backoff": "fixed", "initialDelay": "50ms"}
    await ui.register(workflow("flaky", failing("flaky", "transient", 2, retry=retry)))
    execution_id = await ui.start("flaky")
    assert await ui.wait(execution_id) == "Succeeded"
    await open_execution(page, ui, execution_id)

    bars = page.locator('.gantt .row[data-node="flaky"] rect.bar')
    await expect(bars).to_have_count(3)
    statuses = [await bar.get_attribute("data-status") for bar in await bars.all()]
    assert statuses == ["RetriableFailure", "RetriableFailure", "Succeeded"]
    await expect(bars.nth(0)).to_have_class("bar s-retrying")

    await page.locator('.gantt .row[data-node="flaky"] .row-label').click()
    attempts = page.locator(".node-details .attempt")
    await expect(attempts).to_have_count(3)
    await expect(attempts.nth(0)).to_contain_text("attempt 1")
    await expect(attempts.nth(0)).to_contain_text("retried")
    await expect(attempts.nth(2)).to_contain_text("Succeeded")


async def test_an_attempts_parameters_show_secrets_masked(
    ui: Served, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.async_api import expect

    monkeypatch.setenv("DWF_SECRET_API_KEY", SECRET)
    await ui.register(workflow("secretive", echo("call", "key={{ secrets['api-key'] }}")))
    execution_id = await ui.start("secretive")
    assert await ui.wait(execution_id) == "Succeeded"
    await open_execution(page, ui, execution_id)

    await node(page, "call").click()
    parameters = page.locator(".node-details .json-parameters pre")
    await expect(parameters).to_contain_text('"message": "key=***"')
    await expect(page.locator(".node-details .json-outputs")).to_contain_text("***")
    assert SECRET not in await page.content()


async def slow_run(ui: Served) -> str:
    slow = {"id": "slow", "actionType": "core.delay", "parameters": {"duration": "30s"}}
    await ui.register(workflow("slow", slow))
    execution_id = await ui.start("slow")
    await ui.wait(execution_id, {"Running"})
    return execution_id


async def test_an_operator_cancels_from_the_page(strict_ui: Served, page: Page) -> None:
    from playwright.async_api import expect

    execution_id = await slow_run(strict_ui)
    await page.add_init_script(
        f"sessionStorage.setItem('dwf.token', {strict_ui.token('operator')!r})"
    )
    await open_execution(page, strict_ui, execution_id)
    await expect(node(page, "slow")).to_have_class("node s-running")

    await page.get_by_role("button", name="Cancel execution").click()
    await expect(page.locator(".cancel-message")).to_contain_text("Cancel requested")
    assert await strict_ui.wait(execution_id) == "Cancelled"
    await expect(page.locator(".exec-status")).to_contain_text("Cancelled", timeout=5000)
    await expect(node(page, "slow")).to_have_class("node s-cancelled")
    await expect(page.get_by_role("button", name="Cancel execution")).to_be_disabled()


async def test_a_viewer_who_cancels_is_told_the_role_it_lacks(
    strict_ui: Served, page: Page, console: Console
) -> None:
    from playwright.async_api import expect

    console.allow("403")  # the browser logs the refused request itself
    execution_id = await slow_run(strict_ui)
    await page.add_init_script(f"sessionStorage.setItem('dwf.token', {strict_ui.token()!r})")
    await open_execution(page, strict_ui, execution_id)

    await page.get_by_role("button", name="Cancel execution").click()
    message = page.locator(".cancel-message")
    await expect(message).to_contain_text("Not allowed to cancel")
    await expect(message).to_contain_text("operator role")
    await expect(page.locator(".exec-status")).to_contain_text("Running")
    # Still running (the refusal changed nothing); ended here so the worker stops at once.
    await strict_ui.daemon.conductor.cancel(strict_ui.settings.tenant, uuid.UUID(execution_id))
    assert await strict_ui.wait(execution_id) == "Cancelled"
