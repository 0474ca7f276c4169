"""Waiting for a state the system reaches asynchronously, bounded."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")

WAIT_TIMEOUT_S = 5.0


async def poll(
    get: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float = WAIT_TIMEOUT_S,
    interval: float = 0.02,
) -> T:
    """Call ``get`` until ``done(result)``; the last result, or AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await get()
        if done(result):
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"still not there after {timeout} s: {result!r}")
        await anyio.sleep(interval)
