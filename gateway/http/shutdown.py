"""Graceful shutdown: on SIGTERM, open streams get ``drain`` seconds, then an ``error`` event.

uvicorn stops accepting at once and waits ``timeout_graceful_shutdown`` for connections to
close, then cancels what is left (the client sees a cut body, no event). The drain deadline
is shorter, so a long answer ends with a typed ``shutting_down`` error, is recorded and its
quota settled, and only then does the lifespan flush the records and exit.
"""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Any

import anyio
from loguru import logger


class Drain:
    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self.started = anyio.Event()
        self.deadline: float | None = None

    def begin(self) -> None:
        if not self.started.is_set():
            self.deadline = time.monotonic() + self.timeout
            self.started.set()
            logger.bind(drain_s=self.timeout).info("shutting down: draining open streams")

    async def wait_until_due(self) -> None:
        await self.started.wait()
        assert self.deadline is not None
        await anyio.sleep(max(0.0, self.deadline - time.monotonic()))


def install_signal_handlers(drain: Drain, loop: Any) -> None:
    """Chain onto the server's SIGTERM/SIGINT handlers (uvicorn installs them first)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handler(number: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(drain.begin)
            if callable(previous):
                previous(number, frame)

        try:
            signal.signal(signum, handler)
        except ValueError:  # not the main thread (an embedded or test server): nothing to do
            return
