"""Batched lease renewal (the heartbeat's one call), on both backends, the Redis one real.

Each test runs on the in-memory counters and on the machine's Redis (database 13, a key prefix
of its own, deleted afterwards), on the fake clock of ``Counters``: a lease renewed in a batch
lives a full ttl from the renewal, one left out expires at its ttl, and a settled or expired
reservation is never brought back by a renewal that comes after it.
"""

from __future__ import annotations

import secrets

import pytest
from redis.asyncio import Redis

from gateway.core.quota_policy import Limits
from gateway.storage.counters.redis import RedisCounters
from tests.gateway.storage.counters.test_counters_property import (
    REDIS_URL,
    Counters,
    counters,
    delete_prefix,
    state,
)

__all__ = ["counters"]  # the fixture (memory and Redis), shared with the property tests

pytestmark = pytest.mark.anyio

TTL = 5.0
#: A probe that reads without holding anything: refused by rpm=0 after the concurrency check.
PROBE = Limits(max_concurrent=1000, rpm=0)


async def live_leases(counters: Counters, app_id: str) -> int:
    _, decision = await counters.reserve(PROBE, app_id=app_id)
    assert (decision.admitted, decision.limit) == (False, "rpm")
    return 1000 - state(decision, "max_concurrent").remaining


async def hold(counters: Counters, app_id: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        rid, decision = await counters.reserve(Limits(max_concurrent=100), app_id=app_id)
        assert decision.admitted
        ids.append(rid)
    return ids


async def test_a_batch_renews_every_given_lease_of_every_app(counters: Counters) -> None:
    counters.ttl = TTL
    a, b = await hold(counters, "app_a", 3), await hold(counters, "app_b", 2)
    counters.now += 4
    renewed = await counters.backend.renew(
        {"app_a": a, "app_b": b}, now=counters.now, expires=counters.now + TTL
    )
    assert renewed == 5
    counters.now += 4.75  # 8.75 s after the reservations, 4.75 s after the renewal
    assert (await live_leases(counters, "app_a"), await live_leases(counters, "app_b")) == (3, 2)
    counters.now += 0.25  # a full ttl after the renewal: released
    assert (await live_leases(counters, "app_a"), await live_leases(counters, "app_b")) == (0, 0)


async def test_a_lease_left_out_of_the_batch_expires_after_its_ttl(counters: Counters) -> None:
    counters.ttl = TTL
    kept, dropped = await hold(counters, "app", 1), await hold(counters, "app", 1)
    counters.now += 4
    assert await counters.renew(*kept) == 1
    counters.now += 0.75
    assert await live_leases(counters, "app") == 2
    counters.now += 0.25  # the dropped one's ttl (its replica died): it is gone, alone
    assert await live_leases(counters, "app") == 1
    assert await counters.renew(*dropped) == 0  # and a late renewal does not revive it
    assert await live_leases(counters, "app") == 1


async def test_renewing_a_settled_reservation_is_a_no_op(counters: Counters) -> None:
    counters.ttl = TTL
    limits = Limits(max_concurrent=1, tokens_per_day=100)
    rid, _ = await counters.reserve(limits, tokens=60)
    await counters.settle(rid, tokens=10)
    # The heartbeat's snapshot was taken before the settle; its renewal arrives after it.
    assert await counters.renew(rid, "res_unknown") == 0
    other, decision = await counters.reserve(limits, tokens=90)
    assert decision.admitted  # the slot and the 50 unused tokens stayed released
    assert state(decision, "tokens_per_day").remaining == 0
    await counters.settle(other, tokens=90)
    assert await live_leases(counters, "app") == 0


async def test_an_empty_batch_is_a_no_op(counters: Counters) -> None:
    assert await counters.backend.renew({}, now=counters.now, expires=counters.now + 1) == 0
    assert await counters.backend.renew({"app": []}, now=counters.now, expires=counters.now) == 0


async def test_redis_renewal_survives_a_flushed_script_cache() -> None:
    """A Redis restarted (or failed over) has forgotten the script: it is loaded again."""
    redis = Redis.from_url(REDIS_URL)
    prefix = f"test:renew:{secrets.token_hex(6)}:"
    try:
        counters = Counters(RedisCounters(redis, prefix=prefix), ttl=TTL)
        ids = await hold(counters, "app", 2)
        await redis.script_flush()
        assert await counters.renew(*ids) == 2
        assert await counters.renew(*ids) == 2
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
