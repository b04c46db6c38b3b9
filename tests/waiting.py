"""Waiting on a condition with a deadline, the one way tests wait (never sleep-and-hope)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def until(
    check: Callable[[], Awaitable[T]], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll `check` until it returns something truthy; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(interval)


def until_sync(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """`until` for synchronous code (a test driving subprocesses): poll `check` until it
    returns something truthy; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
