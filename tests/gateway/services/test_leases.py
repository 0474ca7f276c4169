"""The lease heartbeat on real in-memory counters: what it holds, renews, loses and releases.

The limiter holds every admitted reservation in its heartbeat and releases it when it settles
(whatever the settle does next); one beat renews all of them to a full ttl from now. The
cadence test runs the real loop on the real clock with a short ttl.
"""

from __future__ import annotations

import calendar
import time

import anyio
import pytest
from loguru import logger

from gateway.core.errors import QuotaExceeded
from gateway.core.pricing import PriceTable
from gateway.services.leases import LeaseHeartbeat
from gateway.services.limiter import Admission, Limiter
from gateway.services.views import QuotaLimits
from gateway.storage.counters.memory import MemoryCounters

pytestmark = pytest.mark.anyio

START = float(calendar.timegm((2025, 3, 10, 12, 0, 0)))
TTL = 3.0
ONE = QuotaLimits(max_concurrent=1)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


async def admit(limiter: Limiter, quota: QuotaLimits = ONE, app_id: str = "app_1") -> Admission:
    return await limiter.reserve(app_id, quota, model="m", prompt_tokens=1, max_tokens=1)


async def test_a_beat_keeps_every_held_lease_past_its_ttl() -> None:
    clock = Clock()
    limiter = Limiter(MemoryCounters(), PriceTable({}), ttl=TTL, clock=clock)
    held = [await admit(limiter, app_id=f"app_{i}") for i in range(3)]
    assert limiter.leases.held == 3
    for _ in range(10):  # 10 ttl of answer, renewed every ttl / 3
        clock.now += limiter.leases.interval
        assert await limiter.leases.beat() == 3
    for i in range(3):
        with pytest.raises(QuotaExceeded):
            await admit(limiter, app_id=f"app_{i}")
    for admission in held:
        await limiter.settle(admission, prompt_tokens=1, completion_tokens=1)
    assert limiter.leases.held == 0
    assert [(await admit(limiter, app_id=f"app_{i}")).app_id for i in range(3)] == [
        "app_0",
        "app_1",
        "app_2",
    ]


async def test_a_lease_renewed_too_late_is_counted_lost_and_stays_released() -> None:
    clock = Clock()
    limiter = Limiter(MemoryCounters(), PriceTable({}), ttl=TTL, clock=clock)
    stalled = await admit(limiter)
    clock.now += TTL  # no beat for a whole ttl (Redis unreachable, a stalled loop)
    lost: list[str] = []
    sink = logger.add(lambda message: lost.append(str(message)), level="WARNING")
    try:
        assert await limiter.leases.beat() == 0
    finally:
        logger.remove(sink)
    assert limiter.leases.lost == 1
    assert any("expired while their answers ran" in m for m in lost)
    other = await admit(limiter)  # the slot was free: nothing revived it
    await limiter.settle(stalled, prompt_tokens=1, completion_tokens=1)
    await limiter.settle(other, prompt_tokens=1, completion_tokens=1)
    assert limiter.leases.held == 0


async def test_unlimited_and_refused_requests_hold_nothing() -> None:
    limiter = Limiter(MemoryCounters(), PriceTable({}), ttl=TTL, clock=Clock())
    free = await admit(limiter, QuotaLimits())
    assert free.reservation_id is None
    first = await admit(limiter)
    with pytest.raises(QuotaExceeded):
        await admit(limiter)
    assert limiter.leases.held == 1
    await limiter.settle(first, prompt_tokens=1, completion_tokens=1)
    await limiter.settle(first, prompt_tokens=1, completion_tokens=1)  # a second release: no-op
    assert limiter.leases.held == 0


async def test_the_loop_beats_every_third_of_the_ttl_on_the_real_clock() -> None:
    ttl = 1.5
    counters = MemoryCounters()
    limiter = Limiter(counters, PriceTable({}), ttl=ttl)
    heartbeat: LeaseHeartbeat = limiter.leases
    long_answer = await admit(limiter)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(heartbeat.run)
        deadline = time.monotonic() + 3 * ttl
        while time.monotonic() < deadline:  # three ttl: held all along
            with pytest.raises(QuotaExceeded):
                await admit(limiter)
            await anyio.sleep(ttl / 4)
        await limiter.settle(long_answer, prompt_tokens=1, completion_tokens=1)
        tasks.cancel_scope.cancel()
    assert heartbeat.lost == 0
    assert heartbeat.held == 0
    await limiter.settle(await admit(limiter), prompt_tokens=1, completion_tokens=1)
