"""One answer's event log: its encoded SSE events, numbered from 1, that readers follow.

The producer appends, a batch at a time (the events the upstream delivered together); any
number of readers follow from an id of their choosing. Appending is a list extend and, only
when a reader waits, one future set: a reader woken once takes every event appended meanwhile
(events the upstream delivered together leave in one write).

The log is bounded twice: per answer (``max_bytes``: the oldest events are dropped, so a
replay from before them is refused) and per process, through the shared ``Budget`` that the
registry (``gateway.services.answer_streams``) keeps under its limit.

An ended answer is kept for its retention window; ``compact`` then holds its events in one
bytes object and an array of their ends, not one object each: a delta of a few dozen bytes
costs twice that as an object of its own, and the budget counts only the bytes. ``kept`` gives
only the bytes: where each event ends is found again, if the answer is ever read, from the
blank line that ends every SSE event (and that none holds inside: its data is one JSON line).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable, Sequence
from itertools import accumulate

#: What ends every event of the log (SSE); no event holds it anywhere else.
EVENT_END = b"\n\n"


class Budget:
    """Bytes held by every log of the process; ``over`` is called when ``used`` passes ``limit``."""

    __slots__ = ("limit", "over", "used")

    def __init__(self, limit: int, over: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.used = 0
        self.over = over


class AnswerLog:
    __slots__ = (
        "_blob",
        "_budget",
        "_ends",
        "_events",
        "_first",
        "_max_bytes",
        "_waiters",
        "ended_at",
        "size",
    )

    def __init__(self, *, max_bytes: int, budget: Budget) -> None:
        self._events: list[bytes] = []
        self._first = 1  # the id of the first event held
        #: Once compacted: every event in one bytes object, and where each one ends in it.
        self._blob: bytes | None = None
        self._ends: array[int] | None = None
        self._max_bytes = max_bytes
        self._budget = budget
        self._waiters: list[asyncio.Future[None]] = []
        self.size = 0
        #: time.monotonic() when the answer ended (its last event is in), else None.
        self.ended_at: float | None = None

    @property
    def first_id(self) -> int:
        """The id of the oldest event held (past ``last_id`` when none is)."""
        return self._first

    @property
    def next_id(self) -> int:
        return self._first + self._count()

    @property
    def last_id(self) -> int:
        return self._first + self._count() - 1

    def _count(self) -> int:
        return len(self._events) if self._ends is None else len(self._ends)

    @property
    def compacted(self) -> bool:
        return self._ends is not None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def append(self, data: bytes) -> None:
        self.extend((data,))

    def extend(self, events: Sequence[bytes]) -> None:
        """Append ``events`` (the producer's batch: what the upstream delivered together), with
        one round of accounting and one wake-up for all of them."""
        self._events.extend(events)
        # Paced answers come one event a batch: no map and sum for those.
        size = len(events[0]) if len(events) == 1 else sum(map(len, events))
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
        if self._blob is None or self._ends is None:
            return self._events[start:]
        blob, ends = self._blob, self._ends
        return [blob[ends[n - 1] if n else 0 : ends[n]] for n in range(start, len(ends))]

    def compact(self) -> None:
        """Hold the events of an ended answer in one object (``since`` is unchanged)."""
        if self.ended_at is None or self._blob is not None:
            return
        self._ends = array("Q", accumulate(map(len, self._events)))
        self._blob = b"".join(self._events)
        self._events = []

    def kept(self) -> tuple[int, bytes]:
        """An ended log as plain values, for ``restored``: the id of its first event and its
        events in one bytes object."""
        assert self.ended_at is not None, "only an ended log is kept"
        return self._first, b"".join(self._events) if self._blob is None else self._blob

    @classmethod
    def restored(
        cls, first: int, blob: bytes, *, ended_at: float, max_bytes: int, budget: Budget
    ) -> AnswerLog:
        """The log that ``kept`` described; ``budget`` counts its bytes already."""
        log = cls(max_bytes=max_bytes, budget=budget)
        log._first, log._blob, log._ends = first, blob, _ends_of(blob)
        log.size, log.ended_at = len(blob), ended_at
        return log

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
        """Drop the oldest events until at most ``keep_bytes`` are held; the bytes freed (a
        compacted log, only ended answers', is dropped whole)."""
        if self._ends is not None:
            if self.size <= keep_bytes:
                return 0
            freed, self._first = self.size, self._first + len(self._ends)
            self._blob, self._ends, self.size = None, array("Q"), 0
            self._budget.used -= freed
            return freed
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


def _ends_of(blob: bytes) -> array[int]:
    """Where each event of ``blob`` ends (the offset after its blank line)."""
    ends: array[int] = array("Q")
    end = blob.find(EVENT_END)
    while end >= 0:
        end += len(EVENT_END)
        ends.append(end)
        end = blob.find(EVENT_END, end)
    return ends
