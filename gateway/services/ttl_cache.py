"""A small time-to-live cache for lookups on the hot path: single-flight, stale-while-revalidate.

While a key is being loaded, concurrent callers wait for that one load instead of each
running their own (a thundering herd on the database every time an entry expires). Once an
entry has expired, the next caller gets the expired value at once and one refresh runs in the
background: no request waits for the database because a TTL happened to run out, yet a change
(a revoked token) is seen within ``ttl`` plus one lookup. An entry older than ``ttl +
max_stale`` is never served; a failed refresh leaves the old value until then (a database
that is down for a moment does not stop known callers).

A caller that can tell when a value has stopped being true passes ``current``: a value for
which it answers False is never served, neither fresh nor stale; the caller waits for a new
load instead (and gets its error if the load fails).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from loguru import logger

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    def __init__(self, *, ttl: float, max_stale: float = 30.0, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max_stale = max_stale
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[None]] = {}
        self._refreshing: set[asyncio.Task[None]] = set()

    async def get(
        self,
        key: K,
        load: Callable[[], Awaitable[V]],
        current: Callable[[V], bool] | None = None,
    ) -> V:
        hit = self._entries.get(key)
        if hit is not None and (current is None or current(hit[1])):
            expires, value = hit
            now = time.monotonic()
            if expires > now:
                return value
            if now - expires < self._max_stale:
                if key not in self._loading:
                    self._refresh_in_background(key, load)
                return value
        if self._ttl <= 0:
            return await load()
        while (loading := self._loading.get(key)) is not None:
            await asyncio.shield(loading)
            hit = self._entries.get(key)
            # A load that began before the value stopped being true may bring back the old
            # value: then this caller loads again (at most once: its own load is returned).
            if hit is not None and (current is None or current(hit[1])):
                return hit[1]
        return await self._load(key, load, self._mark_loading(key))

    def _mark_loading(self, key: K) -> asyncio.Future[None]:
        self._loading[key] = done = asyncio.get_running_loop().create_future()
        return done

    async def _load(
        self, key: K, load: Callable[[], Awaitable[V]], done: asyncio.Future[None]
    ) -> V:
        try:
            value = await load()  # an exception is not cached: the next caller retries
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self._ttl, value)
            return value
        finally:
            del self._loading[key]
            done.set_result(None)

    def _refresh_in_background(self, key: K, load: Callable[[], Awaitable[V]]) -> None:
        done = self._mark_loading(key)  # now, not when the task starts: one refresh only

        async def refresh() -> None:
            try:
                await self._load(key, load, done)
            except Exception as exc:  # noqa: BLE001 (kept stale; the next caller tries again)
                logger.bind(error_type=type(exc).__name__).warning("cache refresh failed")

        task = asyncio.get_running_loop().create_task(refresh())
        self._refreshing.add(task)  # a reference, or the task may be collected mid-flight
        task.add_done_callback(self._refreshing.discard)
