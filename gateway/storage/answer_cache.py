"""Where cached answers live: one process's memory, or Redis (shared by the replicas).

Both stores hold opaque bytes under a key that starts with the app's id, each for its TTL,
and stay under ``max_bytes`` in total (the bytes of the values) by evicting the entries that
would expire first; ``evictions`` counts them. A value larger than ``max_bytes`` is not kept.
Neither ever raises for a store that is down: a get is then a miss and a put is skipped (with
a warning), so the cache can only ever save upstream calls, never fail a request.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from loguru import logger

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: Redis keys: the entries, and the index (expiry per key), sizes and total that bound them.
#: One hash tag, so that all of them live in one slot of a Redis cluster.
_PREFIX = "orchestra:{answer-cache}:"
_INDEX = _PREFIX + "index"
_SIZES = _PREFIX + "sizes"
_TOTAL = _PREFIX + "total"

# KEYS: entry, index, sizes, total. ARGV: value, ttl_ms, now_ms, max_bytes.
# Drops index entries that expired by themselves, then stores, then evicts the entries that
# would expire first until the total fits. Returns the number evicted.
_PUT = """
local size = string.len(ARGV[1])
local now = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local function forget(key)
  local old = tonumber(redis.call('HGET', KEYS[3], key) or '0')
  redis.call('HDEL', KEYS[3], key)
  redis.call('ZREM', KEYS[2], key)
  redis.call('DECRBY', KEYS[4], old)
end
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)) do
  forget(key)
end
forget(KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), KEYS[1])
redis.call('HSET', KEYS[3], KEYS[1], size)
local total = redis.call('INCRBY', KEYS[4], size)
local evicted = 0
while total > max do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not oldest then break end
  redis.call('DEL', oldest)
  forget(oldest)
  total = tonumber(redis.call('GET', KEYS[4]))
  evicted = evicted + 1
end
return evicted
"""


class AnswerStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl_s: float) -> int:
        """Keep ``value`` for ``ttl_s``; the number of entries evicted to make room."""


class MemoryAnswerStore:
    """One process's entries: a dict, and a heap of expiry times to evict from."""

    def __init__(self, max_bytes: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_bytes
        self._clock = clock
        self._entries: dict[str, tuple[float, bytes]] = {}
        self._expiries: list[tuple[float, str]] = []
        self.total = 0

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            self._drop(key)
            return None
        return entry[1]

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.total -= len(entry[1])

    async def put(self, key: str, value: bytes, ttl_s: float) -> int:
        if len(value) > self._max:
            return 0
        self._drop(key)
        expires = self._clock() + ttl_s
        self._entries[key] = (expires, value)
        self.total += len(value)
        heapq.heappush(self._expiries, (expires, key))
        evicted = 0
        now = self._clock()
        while self.total > self._max and self._expiries:
            when, oldest = heapq.heappop(self._expiries)
            current = self._entries.get(oldest)
            if current is None or current[0] != when:
                continue  # replaced or dropped since: a stale heap entry
            self._drop(oldest)
            evicted += when > now  # an expired entry leaving is not an eviction
        if len(self._expiries) > 2 * len(self._entries) + 64:  # stale entries pile up
            self._expiries = [(w, k) for k, (w, _) in self._entries.items()]
            heapq.heapify(self._expiries)
        return evicted


class RedisAnswerStore:
    """Entries shared by every replica on one Redis (a Lua script keeps the bound atomic)."""

    def __init__(self, redis: Redis, max_bytes: int) -> None:
        self._redis = redis
        self._max = max_bytes
        self._put = redis.register_script(_PUT)

    async def get(self, key: str) -> bytes | None:
        from redis.exceptions import RedisError

        try:
            value = await self._redis.get(_PREFIX + key)
        except (RedisError, OSError):
            logger.warning("answer cache: Redis unavailable, answering without the cache")
            return None
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl_s: float) -> int:
        from redis.exceptions import RedisError

        if len(value) > self._max:
            return 0
        now_ms = int(time.time() * 1000)
        try:
            evicted = await self._put(
                keys=[_PREFIX + key, _INDEX, _SIZES, _TOTAL],
                args=[value, max(1, int(ttl_s * 1000)), now_ms, self._max],
            )
        except (RedisError, OSError):
            logger.warning("answer cache: Redis unavailable, the answer is not kept")
            return 0
        return int(evicted)
