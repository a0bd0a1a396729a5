"""Waiting in tests: poll for a state, never race a clock.

Deadlines are generous (they only matter when a test is failing) and stretch with
``$MCP_TEST_PATIENCE`` (a factor, default 1) on a machine known to be slow. Giving up raises
``TimeoutError`` naming what was awaited and, where given, the last value seen.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Default deadline in seconds for anything that runs a process, a model or a page round trip.
DEADLINE = 120.0


def patience(seconds: float) -> float:
    """*seconds* stretched by ``$MCP_TEST_PATIENCE``."""
    return seconds * float(os.environ.get("MCP_TEST_PATIENCE", "1") or 1)


def poll(condition: Callable[[], T], what: str, timeout: float = DEADLINE, interval: float = 0.1,
         last: Callable[[], Any] | None = None) -> T:
    """Call *condition* until it returns something truthy, and return that.

    Parameters
    ----------
    condition
        Checked every *interval* seconds.
    what
        What is awaited, for the error message ("the autosave of demo_02_seg.npy").
    timeout
        Seconds before giving up (times :func:`patience`).
    last
        Called once on giving up; its value is added to the message (e.g. the events seen so far).
    """
    limit = patience(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; last seen: {last()!r}" if last is not None else ""
            raise TimeoutError(f"gave up after {limit:.0f} s waiting for {what}{seen}")
        time.sleep(interval)


async def apoll(condition: Callable[[], T | Awaitable[T]], what: str, timeout: float = DEADLINE,
                interval: float = 0.05) -> T:
    """:func:`poll` for async tests: sleeps with ``asyncio.sleep`` so the app's event loop runs."""
    limit = patience(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {limit:.0f} s waiting for {what}")
        await asyncio.sleep(interval)
