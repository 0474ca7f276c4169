"""The answer cache's stores: memory and a real Redis (database 13, its own keys only).

Run the Redis cases under ``flock /tmp/orchestra-redis.lock`` like the other Redis tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from redis.asyncio import Redis

from gateway.storage.answer_cache import (
    _PREFIX,
    AnswerStore,
    MemoryAnswerStore,
    RedisAnswerStore,
)

pytestmark = pytest.mark.anyio

REDIS_URL = "redis://127.0.0.1:6379/13"
MAX_BYTES = 100


async def _forget_cache_keys(redis: Redis) -> None:
    keys = [key async for key in redis.scan_iter(match=_PREFIX + "*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[AnswerStore]:
    if request.param == "memory":
        yield MemoryAnswerStore(MAX_BYTES)
        return
    redis = Redis.from_url(REDIS_URL)
    await _forget_cache_keys(redis)
    try:
        yield RedisAnswerStore(redis, MAX_BYTES)
    finally:
        await _forget_cache_keys(redis)
        await redis.aclose()


async def test_a_kept_value_is_found_until_its_ttl(store: AnswerStore) -> None:
    assert await store.put("app1:k", b"answer", 0.3) == 0
    assert await store.get("app1:k") == b"answer"
    assert await store.get("app2:k") is None
    await anyio.sleep(0.6)
    assert await store.get("app1:k") is None


async def test_the_total_stays_under_the_bound_evicting_what_expires_first(
    store: AnswerStore,
) -> None:
    value = b"x" * 40
    assert await store.put("a:1", value, 60) == 0
    assert await store.put("a:2", value, 30) == 0  # expires first
    assert await store.put("a:3", value, 90) == 1  # 120 bytes > 100: one must go
    assert await store.get("a:2") is None
    assert (await store.get("a:1"), await store.get("a:3")) == (value, value)
    assert await store.put("a:4", value, 120) == 1
    assert await store.get("a:1") is None
    assert await store.get("a:4") == value


async def test_replacing_a_value_counts_its_bytes_once(store: AnswerStore) -> None:
    for _ in range(5):
        assert await store.put("a:same", b"y" * 60, 60) == 0
    assert await store.get("a:same") == b"y" * 60


async def test_a_value_larger_than_the_bound_is_not_kept(store: AnswerStore) -> None:
    assert await store.put("a:big", b"z" * (MAX_BYTES + 1), 60) == 0
    assert await store.get("a:big") is None


async def test_expired_entries_free_their_bytes_without_counting_as_evictions() -> None:
    now = [0.0]
    store = MemoryAnswerStore(MAX_BYTES, clock=lambda: now[0])
    await store.put("a:old", b"o" * 60, 10)
    now[0] = 20.0
    assert await store.put("a:new", b"n" * 60, 10) == 0
    assert store.total == 60
    assert await store.get("a:new") == b"n" * 60


async def test_a_redis_that_is_down_is_a_miss_and_keeps_nothing() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        store = RedisAnswerStore(redis, MAX_BYTES)
        assert await store.put("a:k", b"v", 60) == 0
        assert await store.get("a:k") is None
    finally:
        await redis.aclose()
