"""A small time-to-live cache with single-flight loading, for lookups on the hot path.

While a key is being loaded, concurrent callers wait for that one load instead of each
running their own (a thundering herd on the database every time an entry expires).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import anyio

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    def __init__(self, *, ttl: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, anyio.Event] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        if self._ttl <= 0:
            return await load()
        loading = self._loading.get(key)
        if loading is not None:
            await loading.wait()
            hit = self._entries.get(key)
            if hit is not None:
                return hit[1]
        self._loading[key] = done = anyio.Event()
        try:
            value = await load()  # an exception is not cached: the next caller retries
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self._ttl, value)
            return value
        finally:
            del self._loading[key]
            done.set()
