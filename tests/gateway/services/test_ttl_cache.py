"""TTLCache: fresh hits, single-flight loads, stale-while-revalidate, failures not cached."""

from __future__ import annotations

import asyncio

import pytest

from gateway.services.ttl_cache import TTLCache

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Source:
    """A loader that counts its calls, returns its current value and can be held or broken."""

    def __init__(self) -> None:
        self.value = "v1"
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.broken = False

    async def load(self) -> str:
        self.calls += 1
        await self.gate.wait()
        if self.broken:
            raise ConnectionError("database down")
        return self.value


async def test_a_fresh_entry_is_served_without_loading() -> None:
    cache: TTLCache[str, str] = TTLCache(ttl=60)
    source = Source()
    assert await cache.get("k", source.load) == "v1"
    source.value = "v2"
    assert await cache.get("k", source.load) == "v1"
    assert source.calls == 1


async def test_concurrent_misses_share_one_load() -> None:
    cache: TTLCache[str, str] = TTLCache(ttl=60)
    source = Source()
    source.gate.clear()
    waiting = [asyncio.ensure_future(cache.get("k", source.load)) for _ in range(20)]
    await asyncio.sleep(0.01)
    source.gate.set()
    assert await asyncio.gather(*waiting) == ["v1"] * 20
    assert source.calls == 1


async def test_an_expired_entry_is_served_stale_while_one_refresh_runs() -> None:
    cache: TTLCache[str, str] = TTLCache(ttl=0.05)
    source = Source()
    await cache.get("k", source.load)
    await asyncio.sleep(0.08)
    source.value = "v2"
    source.gate.clear()  # the refresh is slow: callers must not wait for it
    stale = await asyncio.wait_for(
        asyncio.gather(*(cache.get("k", source.load) for _ in range(10))), timeout=0.5
    )
    assert stale == ["v1"] * 10
    assert source.calls == 2, "one background refresh, not one per caller"
    source.gate.set()
    await asyncio.sleep(0.01)
    assert await cache.get("k", source.load) == "v2"


async def test_a_failed_refresh_keeps_the_stale_value_within_max_stale() -> None:
    cache: TTLCache[str, str] = TTLCache(ttl=0.05, max_stale=0.2)
    source = Source()
    await cache.get("k", source.load)
    await asyncio.sleep(0.08)
    source.broken = True
    assert await cache.get("k", source.load) == "v1"
    await asyncio.sleep(0.01)  # the refresh failed in the background
    assert await cache.get("k", source.load) == "v1"
    await asyncio.sleep(0.25)  # now beyond ttl + max_stale: never served, loaded in line
    with pytest.raises(ConnectionError):
        await cache.get("k", source.load)


async def test_a_failed_load_is_not_cached() -> None:
    cache: TTLCache[str, str] = TTLCache(ttl=60)
    source = Source()
    source.broken = True
    with pytest.raises(ConnectionError):
        await cache.get("k", source.load)
    source.broken = False
    assert await cache.get("k", source.load) == "v1"
    assert source.calls == 2


async def test_ttl_zero_always_loads() -> None:
    cache: TTLCache[str, str] = TTLCache(ttl=0)
    source = Source()
    await cache.get("k", source.load)
    await cache.get("k", source.load)
    assert source.calls == 2


# --- values that stop being true (issue #21) ------------------------------------------------


async def test_a_value_no_longer_current_is_not_served_even_fresh() -> None:
    cache: TTLCache[str, str] = TTLCache(ttl=60)
    source = Source()
    assert await cache.get("k", source.load, lambda v: v != "v1") == "v1"  # its own load
    source.value = "v2"
    assert await cache.get("k", source.load, lambda v: v != "v1") == "v2"
    assert source.calls == 2


async def test_a_value_no_longer_current_is_not_served_stale_and_a_failed_load_is_raised() -> None:
    cache: TTLCache[str, str] = TTLCache(ttl=0.01, max_stale=60)
    source = Source()
    await cache.get("k", source.load)
    await asyncio.sleep(0.02)
    source.broken = True
    assert await cache.get("k", source.load) == "v1"  # stale, still true: served
    await asyncio.sleep(0.01)
    with pytest.raises(ConnectionError):
        await cache.get("k", source.load, lambda v: False)  # never the stale value


async def test_a_load_that_began_before_the_change_is_not_taken_by_waiters() -> None:
    cache: TTLCache[str, str] = TTLCache(ttl=60)
    source = Source()
    source.gate.clear()

    async def snapshot() -> str:  # reads first, then waits: the database's answer in flight
        value = source.value
        source.calls += 1
        await source.gate.wait()
        return value

    early = asyncio.ensure_future(cache.get("k", snapshot))  # reads "v1"
    await asyncio.sleep(0.01)
    source.value = "v2"
    late = asyncio.ensure_future(cache.get("k", snapshot, lambda v: v == "v2"))
    await asyncio.sleep(0.01)
    source.gate.set()
    assert await early == "v1"
    assert await late == "v2"  # waited for the early load, saw it stale, loaded again
    assert source.calls == 2
