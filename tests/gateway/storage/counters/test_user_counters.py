"""Per-user limits in the counters, on both backends (the Redis one real, database 13).

A reservation with a user is checked against the app's limits and the user's in one atomic
step and held by both or neither; its user's share is settled, renewed and expired with the
app's lease.
"""

from __future__ import annotations

import secrets

import pytest
from redis.asyncio import Redis

from gateway.core.quota_policy import (
    SCOPE_APP,
    SCOPE_USER,
    Calendar,
    Decision,
    Limits,
    LimitState,
    Reservation,
)
from gateway.storage.counters.redis import RedisCounters
from tests.gateway.storage.counters.test_counters_property import (
    REDIS_URL,
    Counters,
    counters,
    delete_prefix,
)

__all__ = ["counters"]  # the fixture (memory and Redis), shared with the property tests

pytestmark = pytest.mark.anyio

APP = "app"
NO_LIMIT = Limits()


def reservation(c: Counters, user: str | None, tokens: int = 1, cost: int = 0) -> Reservation:
    c.count += 1
    return Reservation(
        APP, f"res_{c.count:04d}", tokens, cost, c.now, c.ttl, Calendar.at(c.now), user
    )


async def reserve(
    c: Counters, user: str, app: Limits, per_user: Limits, tokens: int = 1, cost: int = 0
) -> tuple[str, Decision]:
    r = reservation(c, user, tokens, cost)
    return r.id, await c.backend.reserve(app, r, per_user)


async def settle(c: Counters, rid: str, user: str | None, tokens: int, cost: int = 0) -> None:
    await c.backend.settle(
        APP, rid, tokens=tokens, cost_micros=cost, now=c.now, calendar=Calendar.at(c.now), user=user
    )


async def now_states(
    c: Counters, user: str | None, app: Limits, per_user: Limits | None
) -> dict[tuple[str, str], int]:
    states = await c.backend.remaining(app, reservation(c, user, tokens=0), per_user)
    return {(s.scope, s.name): s.remaining for s in states}


def of(decision: Decision, scope: str, name: str) -> LimitState:
    return next(s for s in decision.states if s.scope == scope and s.name == name)


async def test_one_user_at_their_limit_never_blocks_another(counters: Counters) -> None:
    per_user = Limits(rpm=2)
    for _ in range(2):
        assert (await reserve(counters, "alice", NO_LIMIT, per_user))[1].admitted
    _, refused = await reserve(counters, "alice", NO_LIMIT, per_user)
    assert (refused.admitted, refused.limit, refused.scope) == (False, "rpm", SCOPE_USER)
    assert refused.retry_after == 60.0
    _, bob = await reserve(counters, "bob", NO_LIMIT, per_user)
    assert bob.admitted
    assert of(bob, SCOPE_USER, "rpm").remaining == 1


async def test_a_user_refusal_holds_nothing_on_the_app(counters: Counters) -> None:
    app, per_user = Limits(rpm=10, max_concurrent=10, tpm=1000), Limits(tpm=100)
    _, first = await reserve(counters, "alice", app, per_user, tokens=80)
    assert first.admitted
    _, refused = await reserve(counters, "alice", app, per_user, tokens=30)
    assert (refused.limit, refused.scope) == ("tpm", SCOPE_USER)
    # The app counted one request, one lease, 80 tokens: the refusal left no half on it.
    assert await now_states(counters, "alice", app, per_user) == {
        (SCOPE_APP, "rpm"): 9,
        (SCOPE_APP, "tpm"): 920,
        (SCOPE_APP, "max_concurrent"): 9,
        (SCOPE_USER, "tpm"): 20,
    }


async def test_an_app_refusal_applies_to_every_user_and_holds_nothing_on_them(
    counters: Counters,
) -> None:
    app, per_user = Limits(max_concurrent=2), Limits(max_concurrent=5, rpm=5)
    assert (await reserve(counters, "alice", app, per_user))[1].admitted
    assert (await reserve(counters, "bob", app, per_user))[1].admitted
    for user in ("alice", "bob", "carol"):
        _, refused = await reserve(counters, user, app, per_user)
        assert (refused.limit, refused.scope, refused.retry_after) == (
            "max_concurrent",
            SCOPE_APP,
            1.0,
        )
    # Carol was refused by the app: her own counters hold nothing.
    assert await now_states(counters, "carol", app, per_user) == {
        (SCOPE_APP, "max_concurrent"): 0,
        (SCOPE_USER, "rpm"): 5,
        (SCOPE_USER, "max_concurrent"): 5,
    }


async def test_settling_releases_the_app_and_the_user_and_counts_for_both(
    counters: Counters,
) -> None:
    app = Limits(max_concurrent=1, tokens_per_day=1000, budget_micros_month=10_000)
    per_user = Limits(max_concurrent=1, tokens_per_day=100, budget_micros_month=500)
    rid, held = await reserve(counters, "alice", app, per_user, tokens=60, cost=200)
    assert held.admitted
    assert of(held, SCOPE_USER, "tokens_per_day").remaining == 40
    _, busy = await reserve(counters, "alice", app, per_user)
    assert busy.limit == "max_concurrent"
    await settle(counters, rid, "alice", tokens=30, cost=100)
    assert await now_states(counters, "alice", app, per_user) == {
        (SCOPE_APP, "tokens_per_day"): 970,
        (SCOPE_APP, "max_concurrent"): 1,
        (SCOPE_APP, "budget_usd_month"): 9_900,
        (SCOPE_USER, "tokens_per_day"): 70,
        (SCOPE_USER, "max_concurrent"): 1,
        (SCOPE_USER, "budget_usd_month"): 400,
    }
    _, over = await reserve(counters, "alice", app, per_user, tokens=71)
    assert (over.limit, over.scope) == ("tokens_per_day", SCOPE_USER)
    assert (await reserve(counters, "bob", app, per_user, tokens=71))[1].admitted


async def test_a_renewed_lease_keeps_the_users_share_and_an_expired_one_frees_both(
    counters: Counters,
) -> None:
    counters.ttl = 5.0
    app, per_user = Limits(max_concurrent=10), Limits(max_concurrent=1)
    kept, _ = await reserve(counters, "alice", app, per_user)
    lost, _ = await reserve(counters, "bob", app, per_user)
    counters.now += 4
    renewed = await counters.backend.renew(
        {APP: [kept]}, now=counters.now, expires=counters.now + 5, users={APP: {"alice"}}
    )
    assert renewed == 1
    counters.now += 2  # bob's lease expired (6 s > ttl); alice's was renewed until now + 3
    _, alice = await reserve(counters, "alice", app, per_user)
    assert (alice.limit, alice.scope) == ("max_concurrent", SCOPE_USER)
    _, bob = await reserve(counters, "bob", app, per_user)
    assert bob.admitted  # his expired share was released with the app's lease
    assert of(bob, SCOPE_APP, "max_concurrent").remaining == 8  # alice's and bob's new one
    assert lost != kept


async def test_remaining_holds_nothing(counters: Counters) -> None:
    app, per_user = Limits(rpm=3), Limits(rpm=2, max_concurrent=1)
    for _ in range(3):
        assert await now_states(counters, "alice", app, per_user) == {
            (SCOPE_APP, "rpm"): 3,
            (SCOPE_USER, "rpm"): 2,
            (SCOPE_USER, "max_concurrent"): 1,
        }
    assert await now_states(counters, None, app, None) == {(SCOPE_APP, "rpm"): 3}
    assert (await reserve(counters, "alice", app, per_user))[1].admitted
    assert await now_states(counters, "alice", app, per_user) == {
        (SCOPE_APP, "rpm"): 2,
        (SCOPE_USER, "rpm"): 1,
        (SCOPE_USER, "max_concurrent"): 0,
    }


@pytest.mark.parametrize(
    ("one", "other"),
    [("a", "a:requests"), ("x}:{y", "x"), ("ü 😀", "u2:ü 😀"), ("1:a", "1")],
)
async def test_user_ids_never_share_counters(counters: Counters, one: str, other: str) -> None:
    per_user = Limits(rpm=1)
    assert (await reserve(counters, one, NO_LIMIT, per_user))[1].admitted
    assert (await reserve(counters, one, NO_LIMIT, per_user))[1].scope == SCOPE_USER
    assert (await reserve(counters, other, NO_LIMIT, per_user))[1].admitted


async def test_redis_keeps_a_renewed_users_lease_keys_as_long_as_the_apps() -> None:
    """A user's lease keys expire by themselves when idle; a renewal extends them with the
    app's, so a long answer never loses its user's share."""
    redis = Redis.from_url(REDIS_URL)
    prefix = f"test:user:{secrets.token_hex(6)}:"
    try:
        c = Counters(RedisCounters(redis, prefix=prefix))
        c.ttl = 5.0
        rid, held = await reserve(c, "alice", NO_LIMIT, Limits(max_concurrent=1))
        assert held.admitted
        key = f"{prefix}{{{APP}}}:u5:alice:leases"
        assert 0 < await redis.pttl(key) <= 120_000
        await c.backend.renew({APP: [rid]}, now=c.now, expires=c.now + 600, users={APP: {"alice"}})
        assert await redis.pttl(key) > 1_000_000  # 2 x 600 s
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()
