"""One answer's event log: its encoded SSE events, numbered from 1, that readers follow.

The producer appends; any number of readers follow from an id of their choosing. Appending is
a list append and, only when a reader waits, one future set: a reader woken once takes every
event appended meanwhile (events the upstream delivered together leave in one write).

The log is bounded twice: per answer (``max_bytes``: the oldest events are dropped, so a
replay from before them is refused) and per process, through the shared ``Budget`` that the
registry (``gateway.services.answer_streams``) keeps under its limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Budget:
    """Bytes held by every log of the process; ``over`` is called when ``used`` passes ``limit``."""

    __slots__ = ("limit", "over", "used")

    def __init__(self, limit: int, over: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.used = 0
        self.over = over


class AnswerLog:
    __slots__ = ("_budget", "_events", "_first", "_max_bytes", "_waiters", "ended_at", "size")

    def __init__(self, *, max_bytes: int, budget: Budget) -> None:
        self._events: list[bytes] = []
        self._first = 1  # the id of _events[0]
        self._max_bytes = max_bytes
        self._budget = budget
        self._waiters: list[asyncio.Future[None]] = []
        self.size = 0
        #: time.monotonic() when the answer ended (its last event is in), else None.
        self.ended_at: float | None = None

    @property
    def next_id(self) -> int:
        return self._first + len(self._events)

    @property
    def last_id(self) -> int:
        return self._first + len(self._events) - 1

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def append(self, data: bytes) -> None:
        self._events.append(data)
        size = len(data)
        self.size += size
        budget = self._budget
        budget.used += size
        if self.size > self._max_bytes:
            # Down to three quarters: one list shift per many events, not one per event.
            self.trim(self._max_bytes * 3 // 4)
        if budget.used > budget.limit and budget.over is not None:
            budget.over()
        if self._waiters:
            self._wake()

    def end(self) -> None:
        if self.ended_at is None:
            self.ended_at = time.monotonic()
            self._wake()

    def since(self, after: int) -> list[bytes] | None:
        """The events after id ``after``; None when some of them were dropped already."""
        start = after + 1 - self._first
        if start < 0:
            return None
        return self._events[start:]

    def replayable_from(self, after: int) -> bool:
        return after + 1 >= self._first

    async def wait(self) -> None:
        """Until an event is appended or the log ends."""
        if self.ended_at is not None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def trim(self, keep_bytes: int) -> int:
        """Drop the oldest events until at most ``keep_bytes`` are held; the bytes freed."""
        dropped = freed = 0
        size = self.size
        while size - freed > keep_bytes and dropped < len(self._events):
            freed += len(self._events[dropped])
            dropped += 1
        if dropped:
            del self._events[:dropped]
            self._first += dropped
            self.size -= freed
            self._budget.used -= freed
        return freed

    def release(self) -> None:
        """Forget every event (the answer is gone from the registry)."""
        self.trim(0)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
