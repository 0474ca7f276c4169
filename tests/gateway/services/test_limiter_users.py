"""The limiter and the quota meter with the contexts of different users of one app.

Real in-memory counters on a fake clock: each user has the app's per-user limits on top of the
app's own; a refusal says whose limit it was; settling and the lease heartbeat cover the
user's share with the app's.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass

import pytest

from gateway.core.errors import QuotaExceeded, QuotaUnavailable
from gateway.core.pricing import Price, PriceTable
from gateway.services.limiter import Admission, FailPolicy, Limiter
from gateway.services.metering import QuotaMeter
from gateway.services.views import QuotaLimits
from gateway.storage.counters.memory import MemoryCounters
from gateway.upstream.types import ChatRequest, Usage
from tests.gateway.services.test_limiter import DownCounters

pytestmark = pytest.mark.anyio

MODEL = "gpt-4o-mini"
PRICES = PriceTable({MODEL: Price(input_per_million=1.0, output_per_million=3.0)})
START = float(calendar.timegm((2025, 3, 10, 12, 0, 0)))
APP = "app_1"


@dataclass
class Clock:
    now: float = START

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, ttl: float = 300.0) -> Limiter:
    return Limiter(MemoryCounters(), PRICES, ttl=ttl, clock=clock)


async def reserve(lim: Limiter, quota: QuotaLimits, user: str | None) -> Admission:
    return await lim.reserve(APP, quota, model=MODEL, prompt_tokens=10, max_tokens=50, user=user)


async def refusal(lim: Limiter, quota: QuotaLimits, user: str | None) -> QuotaExceeded:
    with pytest.raises(QuotaExceeded) as refused:
        await reserve(lim, quota, user)
    return refused.value


async def test_a_user_at_their_limit_is_refused_while_another_is_served() -> None:
    lim, quota = limiter(Clock()), QuotaLimits(rpm=100, user_rpm=2)
    for _ in range(2):
        await reserve(lim, quota, "alice")
    error = await refusal(lim, quota, "alice")
    assert (error.code, error.limit, error.scope, error.qualified_limit) == (
        "quota_exceeded",
        "rpm",
        "user",
        "user_rpm",
    )
    assert "of this user" in error.message
    assert error.retry_after == pytest.approx(60.0)
    served = await reserve(lim, quota, "bob")
    assert served.user == "bob"
    # The headers' states: the app's limit and bob's own.
    assert {(s.scope, s.name, s.remaining) for s in served.states} == {
        ("app", "rpm", 97),
        ("user", "rpm", 1),
    }


async def test_the_apps_limit_still_refuses_every_user_and_the_app_token() -> None:
    lim, quota = limiter(Clock()), QuotaLimits(rpm=3, user_rpm=2)
    await reserve(lim, quota, "alice")
    await reserve(lim, quota, "bob")
    await reserve(lim, quota, None)  # the app's own token counts for the app
    for user in ("carol", "alice", None):
        error = await refusal(lim, quota, user)
        assert (error.limit, error.scope, error.qualified_limit) == ("rpm", "app", "rpm")


async def test_the_app_token_ignores_the_per_user_limits() -> None:
    lim, quota = limiter(Clock()), QuotaLimits(user_rpm=1, user_max_concurrent=1)
    first = await reserve(lim, quota, None)
    second = await reserve(lim, quota, None)
    assert (first.reservation_id, second.reservation_id, first.user) == (None, None, None)


async def test_settling_frees_the_users_share_and_the_heartbeat_renews_it() -> None:
    clock = Clock()
    lim, quota = limiter(clock, ttl=30.0), QuotaLimits(user_max_concurrent=1)
    held = await reserve(lim, quota, "alice")
    assert held.reservation_id is not None and held.user == "alice"
    assert lim.leases.held == 1
    for _ in range(5):  # 5 x 20 s: past three ttl, kept alive by the heartbeat alone
        clock.now += 20
        assert await lim.leases.beat() == 1
    assert (await refusal(lim, quota, "alice")).scope == "user"
    await lim.settle(held, prompt_tokens=10, completion_tokens=5)
    assert lim.leases.held == 0
    assert (await reserve(lim, quota, "alice")).user == "alice"


async def test_an_unrenewed_lease_frees_the_user_when_it_expires() -> None:
    clock = Clock()
    lim, quota = limiter(clock, ttl=30.0), QuotaLimits(user_max_concurrent=1)
    held = await reserve(lim, quota, "alice")
    lim.leases.release(held.reservation_id or "")  # its replica died: nobody renews it
    clock.now += 29
    assert (await refusal(lim, quota, "alice")).limit == "max_concurrent"
    clock.now += 1
    assert (await reserve(lim, quota, "alice")).user == "alice"


async def test_counters_down_applies_the_fail_policy_to_user_limits() -> None:
    lim = Limiter(DownCounters(), PRICES, ttl=30.0, policy=FailPolicy())  # type: ignore[arg-type]
    admitted = await reserve(lim, QuotaLimits(user_rpm=5), "alice")  # requests: fail open
    assert admitted.reservation_id is None
    with pytest.raises(QuotaUnavailable):  # tokens: fail closed
        await reserve(lim, QuotaLimits(user_tokens_per_day=5000), "alice")


async def test_remaining_shows_the_app_and_the_user_without_holding() -> None:
    lim, quota = limiter(Clock()), QuotaLimits(rpm=10, user_rpm=3, user_tokens_per_day=1000)
    await reserve(lim, quota, "alice")
    for _ in range(2):
        states = await lim.remaining(APP, quota, user="alice")
        assert {(s.scope, s.name): s.remaining for s in states} == {
            ("app", "rpm"): 9,
            ("user", "rpm"): 2,
            ("user", "tokens_per_day"): 940,
        }
    assert {(s.scope, s.name) for s in await lim.remaining(APP, quota)} == {("app", "rpm")}


def ask(content: str) -> ChatRequest:
    return ChatRequest(
        base_url="https://api.openai.com/v1",
        api_key="sk-test",
        model=MODEL,
        messages=[{"role": "user", "content": content}],
    )


async def test_meters_of_two_users_count_each_users_tokens_apart() -> None:
    lim = limiter(Clock())
    quota = QuotaLimits(user_tokens_per_day=300)
    alice = QuotaMeter(lim, app_id=APP, quota=quota, user="alice")
    await alice.reserve(ask("hello"), max_output_tokens=100)
    assert alice.prompt_estimate is not None  # a per-user token limit needs the count
    await alice.settle(Usage(prompt_tokens=100, completion_tokens=150), model=MODEL)
    again = QuotaMeter(lim, app_id=APP, quota=quota, user="alice")
    with pytest.raises(QuotaExceeded) as refused:
        await again.reserve(ask("hello"), max_output_tokens=100)
    assert (refused.value.limit, refused.value.scope) == ("tokens_per_day", "user")
    bob = QuotaMeter(lim, app_id=APP, quota=quota, user="bob")
    await bob.reserve(ask("hello"), max_output_tokens=100)
    assert bob.states
