"""The limiter on real in-memory counters with a fake clock: reserve, settle, renew, refuse.

The only stand-in is ``DownCounters``: it raises CountersUnavailable the way RedisCounters does
when Redis cannot be reached, to check each fail policy.
"""

from __future__ import annotations

import calendar
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

import pytest
from loguru import logger

from gateway.core.errors import ConfigurationError, QuotaExceeded, QuotaUnavailable
from gateway.core.pricing import Price, PriceTable
from gateway.core.quota_policy import Calendar, Decision, Limits, LimitState, Reservation
from gateway.services.limiter import Admission, FailPolicy, Limiter, limits_of
from gateway.services.views import QuotaLimits
from gateway.storage.counters.memory import MemoryCounters
from gateway.storage.counters.protocol import CountersUnavailable

pytestmark = pytest.mark.anyio

MODEL = "gpt-4o-mini"
PRICES = PriceTable({MODEL: Price(input_per_million=1.0, output_per_million=3.0)})
START = float(calendar.timegm((2025, 3, 10, 12, 0, 0)))


@dataclass
class Clock:
    now: float = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_limiter(clock: Clock, *, ttl: float = 300.0, **kwargs: object) -> Limiter:
    return Limiter(MemoryCounters(), PRICES, ttl=ttl, clock=clock, **kwargs)  # type: ignore[arg-type]


async def reserve(
    limiter: Limiter,
    quota: QuotaLimits,
    *,
    prompt: int = 10,
    max_tokens: int = 50,
    model: str = MODEL,
    app_id: str = "app_1",
) -> Admission:
    return await limiter.reserve(
        app_id, quota, model=model, prompt_tokens=prompt, max_tokens=max_tokens
    )


def state(states: tuple[LimitState, ...], name: str) -> LimitState:
    return next(s for s in states if s.name == name)


@pytest.fixture
def logged() -> Iterator[list[str]]:
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="WARNING")
    try:
        yield messages
    finally:
        logger.remove(sink)


# --- admissions -----------------------------------------------------------------------------


async def test_an_app_without_limits_holds_no_reservation(clock: Clock) -> None:
    admission = await reserve(make_limiter(clock), QuotaLimits(soft_cap=False))
    assert admission.reservation_id is None
    assert (admission.tokens, admission.cost_micros, admission.states) == (0, 0, ())
    assert admission.token_cap is None


async def test_a_reservation_holds_the_prompt_plus_max_tokens_and_their_price(
    clock: Clock,
) -> None:
    quota = QuotaLimits(tpm=1000, budget_usd_month=1.0)
    admission = await reserve(make_limiter(clock), quota, prompt=10, max_tokens=50)
    assert admission.reservation_id is not None
    assert admission.tokens == 60
    assert admission.cost_micros == 10 * 1 + 50 * 3
    assert admission.token_cap == 60  # hard cap by default
    assert state(admission.states, "tpm") == LimitState("tpm", 1000, 940, 60.0)
    assert state(admission.states, "budget_usd_month").remaining == 1_000_000 - 160


async def test_a_soft_capped_app_has_no_token_cap(clock: Clock) -> None:
    admission = await reserve(make_limiter(clock), QuotaLimits(tpm=1000, soft_cap=True))
    assert admission.reservation_id is not None
    assert admission.token_cap is None


async def test_a_budget_on_an_unpriced_model_is_a_configuration_error(clock: Clock) -> None:
    limiter = make_limiter(clock)
    with pytest.raises(ConfigurationError, match="No price for model 'gpt-unknown'"):
        await reserve(limiter, QuotaLimits(budget_usd_month=10.0), model="gpt-unknown")
    # Without a budget the price is not needed.
    assert (await reserve(limiter, QuotaLimits(tpm=100), model="gpt-unknown")).reservation_id


def test_the_budget_is_counted_in_micro_dollars() -> None:
    assert limits_of(QuotaLimits(budget_usd_month=12.345678)) == Limits(
        budget_micros_month=12_345_678
    )
    assert limits_of(QuotaLimits(rpm=5, tpm=6, tokens_per_day=7, max_concurrent=8)) == Limits(
        rpm=5, tpm=6, tokens_per_day=7, max_concurrent=8
    )


# --- refusals -------------------------------------------------------------------------------


async def test_a_refusal_names_the_limit_and_says_when_to_retry(clock: Clock) -> None:
    limiter = make_limiter(clock)
    quota = QuotaLimits(rpm=2, tpm=10_000)
    await reserve(limiter, quota)
    clock.now += 20
    await reserve(limiter, quota)
    clock.now += 5
    with pytest.raises(QuotaExceeded) as refused:
        await reserve(limiter, quota)
    error = refused.value
    assert (error.code, error.http_status, error.limit) == ("quota_exceeded", 429, "rpm")
    assert error.retry_after == pytest.approx(35.0)
    assert "requests per minute" in error.message and "(rpm, limit 2)" in error.message
    assert state(error.states, "rpm") == LimitState("rpm", 2, 0, 35.0)  # type: ignore[arg-type]
    assert state(error.states, "tpm").remaining == 10_000 - 120  # type: ignore[arg-type]


async def test_a_request_larger_than_the_tpm_limit_says_so(clock: Clock) -> None:
    with pytest.raises(QuotaExceeded) as refused:
        await reserve(make_limiter(clock), QuotaLimits(tpm=100), prompt=30, max_tokens=80)
    assert refused.value.limit == "tpm"
    assert refused.value.retry_after == 60.0
    assert "this request alone needs up to 110 tokens" in refused.value.message
    assert "more than the limit of 100" in refused.value.message


async def test_max_concurrent_is_released_by_settle(clock: Clock) -> None:
    limiter = make_limiter(clock)
    quota = QuotaLimits(max_concurrent=1)
    first = await reserve(limiter, quota)
    with pytest.raises(QuotaExceeded) as refused:
        await reserve(limiter, quota)
    assert (refused.value.limit, refused.value.retry_after) == ("max_concurrent", 1.0)
    await limiter.settle(first, prompt_tokens=10, completion_tokens=3)
    assert (await reserve(limiter, quota)).reservation_id is not None


# --- settle and renew -----------------------------------------------------------------------


async def test_settle_replaces_the_estimate_with_the_real_usage(clock: Clock) -> None:
    limiter = make_limiter(clock)
    quota = QuotaLimits(tpm=100, tokens_per_day=1000, budget_usd_month=1.0)
    first = await reserve(limiter, quota, prompt=10, max_tokens=80)  # holds 90 tokens
    with pytest.raises(QuotaExceeded):
        await reserve(limiter, quota, prompt=10, max_tokens=10)  # 90 + 20 > 100
    await limiter.settle(first, prompt_tokens=12, completion_tokens=3)  # really used 15
    second = await reserve(limiter, quota, prompt=10, max_tokens=75)
    assert state(second.states, "tpm").remaining == 100 - 15 - 85
    assert state(second.states, "tokens_per_day").remaining == 1000 - 15 - 85
    real_cost = 12 * 1 + 3 * 3
    held = 10 * 1 + 75 * 3
    assert state(second.states, "budget_usd_month").remaining == 1_000_000 - real_cost - held


async def test_settle_counts_an_overshoot(clock: Clock) -> None:
    limiter = make_limiter(clock)
    quota = QuotaLimits(tokens_per_day=200, soft_cap=True)
    first = await reserve(limiter, quota, prompt=10, max_tokens=50)
    await limiter.settle(first, prompt_tokens=10, completion_tokens=170)  # past max_tokens
    with pytest.raises(QuotaExceeded) as refused:
        await reserve(limiter, quota, prompt=10, max_tokens=15)
    assert refused.value.limit == "tokens_per_day"
    assert refused.value.retry_after == pytest.approx(12 * 3600)  # until 00:00 UTC


async def test_settle_without_a_reservation_does_nothing(clock: Clock) -> None:
    limiter = make_limiter(clock)
    admission = await reserve(limiter, QuotaLimits())
    await limiter.settle(admission, prompt_tokens=10, completion_tokens=10)
    assert limiter.leases.held == 0


async def test_the_heartbeat_keeps_the_lease_of_a_long_answer(clock: Clock) -> None:
    limiter = make_limiter(clock, ttl=5.0)
    quota = QuotaLimits(max_concurrent=1)
    long_answer = await reserve(limiter, quota)
    assert limiter.leases.held == 1
    clock.now += 4
    assert await limiter.leases.beat() == 1  # held until START + 9
    clock.now += 4.5
    with pytest.raises(QuotaExceeded):
        await reserve(limiter, quota)
    clock.now += 0.5
    assert (await reserve(limiter, quota)).reservation_id is not None
    await limiter.settle(long_answer, prompt_tokens=1, completion_tokens=1)
    assert limiter.leases.held == 1  # only the last one


async def test_a_lease_that_is_never_settled_expires_after_the_ttl(clock: Clock) -> None:
    limiter = make_limiter(clock, ttl=3.0)
    quota = QuotaLimits(max_concurrent=1)
    await reserve(limiter, quota)  # its replica "dies": never settled, never renewed
    clock.now += 2.9
    with pytest.raises(QuotaExceeded):
        await reserve(limiter, quota)
    clock.now += 0.1
    assert (await reserve(limiter, quota)).reservation_id is not None


# --- the counters are down ------------------------------------------------------------------


class DownCounters:
    """Counters whose backend cannot be reached (what RedisCounters raises when Redis is down)."""

    calls = 0

    async def reserve(
        self, limits: Limits, reservation: Reservation, user_limits: Limits | None = None
    ) -> Decision:
        self.calls += 1
        raise CountersUnavailable("ConnectionError")

    async def remaining(
        self, limits: Limits, reservation: Reservation, user_limits: Limits | None = None
    ) -> tuple[LimitState, ...]:
        self.calls += 1
        raise CountersUnavailable("ConnectionError")

    async def settle(
        self,
        app_id: str,
        reservation_id: str,
        *,
        tokens: int,
        cost_micros: int,
        now: float,
        calendar: Calendar,
        user: str | None = None,
    ) -> None:
        self.calls += 1
        raise CountersUnavailable("ConnectionError")

    async def renew(
        self,
        leases: Mapping[str, Sequence[str]],
        *,
        now: float,
        expires: float,
        users: Mapping[str, Collection[str]] | None = None,
    ) -> int:
        self.calls += 1
        raise CountersUnavailable("ConnectionError")

    async def aclose(self) -> None:
        return None


def down_limiter(policy: FailPolicy | None = None) -> tuple[Limiter, DownCounters]:
    counters = DownCounters()
    limiter = Limiter(counters, PRICES, ttl=300.0, policy=policy or FailPolicy(), clock=Clock())
    return limiter, counters


async def test_redis_down_an_rpm_only_app_is_admitted_by_default(logged: list[str]) -> None:
    limiter, counters = down_limiter()
    admission = await reserve(limiter, QuotaLimits(rpm=10))
    assert counters.calls == 1
    assert admission.reservation_id is None  # nothing to settle
    assert admission.token_cap is None
    assert (limiter.unavailable_admissions, limiter.unavailable_refusals) == (1, 0)
    assert any("failing open" in m for m in logged)
    await limiter.settle(admission, prompt_tokens=1, completion_tokens=1)
    assert counters.calls == 1


@pytest.mark.parametrize(
    "quota",
    [
        QuotaLimits(tpm=1000),
        QuotaLimits(tokens_per_day=1000),
        QuotaLimits(budget_usd_month=1.0),
        QuotaLimits(max_concurrent=3),
        QuotaLimits(rpm=10, tpm=1000),  # one closed limit is enough to refuse
    ],
    ids=["tpm", "day", "budget", "concurrent", "rpm+tpm"],
)
async def test_redis_down_token_cost_and_concurrency_limits_fail_closed_by_default(
    quota: QuotaLimits, logged: list[str]
) -> None:
    limiter, _ = down_limiter()
    with pytest.raises(QuotaUnavailable) as refused:
        await reserve(limiter, quota)
    assert (refused.value.code, refused.value.http_status) == ("quota_unavailable", 503)
    assert refused.value.retry_after == 1.0
    assert (limiter.unavailable_admissions, limiter.unavailable_refusals) == (0, 1)
    assert any("failing closed" in m for m in logged)


async def test_redis_down_each_policy_is_configurable() -> None:
    strict, _ = down_limiter(FailPolicy(requests_fail_open=False, tokens_fail_open=False))
    with pytest.raises(QuotaUnavailable):
        await reserve(strict, QuotaLimits(rpm=10))
    lenient, _ = down_limiter(FailPolicy(requests_fail_open=True, tokens_fail_open=True))
    admission = await reserve(lenient, QuotaLimits(rpm=10, tpm=5, max_concurrent=1))
    assert admission.reservation_id is None


async def test_redis_down_during_settle_and_renewal_is_logged_not_raised(
    logged: list[str],
) -> None:
    limiter, counters = down_limiter()
    limiter.leases.hold("app_1", "res_1")
    assert await limiter.leases.beat() == 0
    held = Admission("app_1", "res_1", 60, 0, (), hard_cap=True, model=MODEL)
    await limiter.settle(held, prompt_tokens=10, completion_tokens=5)
    assert limiter.leases.held == 0  # released although the settle failed: it expires alone
    assert await limiter.leases.beat() == 0  # nothing left to renew: no call
    assert counters.calls == 2
    assert any("quota settle failed" in m for m in logged)
    assert any("quota leases not renewed" in m for m in logged)
