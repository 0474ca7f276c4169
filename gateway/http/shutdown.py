"""Graceful shutdown: on SIGTERM, open streams get ``drain`` seconds, then an ``error`` event.

uvicorn stops accepting at once and waits ``timeout_graceful_shutdown`` for connections to
close, then cancels what is left (the client sees a cut body, no event). The drain deadline
is shorter, so a long answer ends with a typed ``shutting_down`` error, is recorded and its
quota settled, and only then does the lifespan flush the records and exit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import anyio
from loguru import logger


class Drain:
    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self.started = anyio.Event()
        self.deadline: float | None = None
        self._due = False
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next_id = 0

    def begin(self) -> None:
        if not self.started.is_set():
            self.deadline = time.monotonic() + self.timeout
            self.started.set()
            logger.bind(drain_s=self.timeout).info("shutting down: draining open streams")
            asyncio.get_running_loop().call_later(self.timeout, self._fire)

    def on_due(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the drain deadline passes; returns the unregister function.

        A callback per open stream, not a task: a task per stream waiting for a shutdown that
        almost never comes cost every answer a task switch and its memory.
        """
        if self._due:
            asyncio.get_running_loop().call_soon(callback)
            return _nothing
        key = self._next_id
        self._next_id += 1
        self._callbacks[key] = callback

        def unregister() -> None:
            self._callbacks.pop(key, None)

        return unregister

    def _fire(self) -> None:
        self._due = True
        callbacks, self._callbacks = self._callbacks, {}
        for callback in callbacks.values():
            callback()


def _nothing() -> None:
    return None


#: What the process serving the app does while it runs (signals, collector): nothing, unless
#: the server owns its process (`orchestra serve`, gateway/server/process.py).
ProcessHooks = Callable[[Drain], AbstractContextManager[None]]


def no_process_hooks(_drain: Drain) -> AbstractContextManager[None]:
    return nullcontext()
