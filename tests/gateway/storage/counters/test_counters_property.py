"""The quota counters (memory and Redis) against an independent reference model.

A hypothesis state machine drives both backends and the model in lock-step with the same
operations on a fake clock: reservations (alone or several at one instant) with random limits
per app (fixed for the example), settlements with random real usage (below or above the
estimate, before or after the lease expired), batched lease renewals (live, expired or
settled leases, of several apps), and clock advances, many of them aimed at the edges: the
end of the 60 s window, a lease's expiry, UTC midnight, the end of a month (and of a year,
and of a leap February). Every decision, its limit name, its retry_after and every limit
state must be the same as the model's. 1000 examples of up to 40 steps; the test also checks
that every case came up.

The Redis backend runs on the machine's Redis (127.0.0.1:6379, database 13), each example
under its own key prefix; only those keys are deleted afterwards. The edge cases below run on
both backends too.
"""

from __future__ import annotations

import asyncio
import calendar
import math
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from gateway.core.quota_policy import Calendar, Decision, Limits, LimitState, Reservation
from gateway.storage.counters.memory import MemoryCounters
from gateway.storage.counters.protocol import CountersUnavailable, QuotaCounters
from gateway.storage.counters.redis import RedisCounters

T = TypeVar("T")

REDIS_URL = "redis://127.0.0.1:6379/13"
EXAMPLES = 1000
STEPS = 40
TOLERANCE = 1e-6

# =============================================================================================
# The reference model: written from the docstring of gateway.core.quota_policy, with plain
# lists and full scans. Nothing is shared with the backends but the result dataclasses.
# =============================================================================================

WINDOW = 60.0
DAY = 86_400.0


@dataclass(frozen=True)
class AppLimits:
    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    max_concurrent: int | None = None
    budget: int | None = None  # micro-dollars per month

    def as_limits(self) -> Limits:
        return Limits(
            rpm=self.rpm,
            tpm=self.tpm,
            tokens_per_day=self.tokens_per_day,
            max_concurrent=self.max_concurrent,
            budget_micros_month=self.budget,
        )


@dataclass
class Admitted:
    id: str
    at: float
    estimate: int
    cost: int
    expires: float
    counted: int  # its weight in the tpm window: the estimate, then the real usage
    settled: bool = False


@dataclass(frozen=True)
class Settled:
    day: int
    month: tuple[int, int]
    tokens: int
    cost: int


def day_of(now: float) -> int:
    return int(now // DAY)


def month_of(now: float) -> tuple[int, int]:
    moment = datetime.fromtimestamp(math.floor(now), UTC)
    return moment.year, moment.month


def seconds_to_midnight(now: float) -> float:
    return (day_of(now) + 1) * DAY - now


def seconds_to_month_end(now: float) -> float:
    year, month = month_of(now)
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0)) - now


@dataclass
class AppModel:
    admitted: list[Admitted] = field(default_factory=list)
    settled: list[Settled] = field(default_factory=list)

    def window(self, now: float) -> list[Admitted]:
        """Admissions in the sliding window (now - 60, now]."""
        return [a for a in self.admitted if now - WINDOW < a.at <= now]

    def live(self, now: float) -> list[Admitted]:
        """Leases in flight: not settled, not expired."""
        return [a for a in self.admitted if not a.settled and now < a.expires]

    def find(self, rid: str) -> Admitted | None:
        return next((a for a in self.admitted if a.id == rid), None)


class ReferenceModel:
    def __init__(self) -> None:
        self.apps: dict[str, AppModel] = {}  # apps, and users as "app/user"
        self.shares: dict[str, str] = {}  # reservation id -> the user ("app/user") sharing it

    def app(self, app_id: str) -> AppModel:
        return self.apps.setdefault(app_id, AppModel())

    def reserve(
        self,
        app_id: str,
        limits: AppLimits,
        *,
        rid: str,
        tokens: int,
        cost: int,
        now: float,
        ttl: float,
        hold: bool = True,
        scope: str = "app",
    ) -> Decision:
        """The decision on one scope's limits; ``hold=False``: decide, but count nothing."""
        app = self.app(app_id)
        window = app.window(now)
        live = app.live(now)
        requests = len(window)
        window_tokens = sum(a.counted for a in window)
        day_used = sum(s.tokens for s in app.settled if s.day == day_of(now))
        day_used += sum(a.estimate for a in live)
        month_used = sum(s.cost for s in app.settled if s.month == month_of(now))
        month_used += sum(a.cost for a in live)

        refused: str | None = None
        if limits.max_concurrent is not None and len(live) >= limits.max_concurrent:
            refused = "max_concurrent"
        elif limits.rpm is not None and requests >= limits.rpm:
            refused = "rpm"
        elif limits.tpm is not None and window_tokens + tokens > limits.tpm:
            refused = "tpm"
        elif limits.tokens_per_day is not None and day_used + tokens > limits.tokens_per_day:
            refused = "tokens_per_day"
        elif limits.budget is not None and month_used + cost > limits.budget:
            refused = "budget_usd_month"

        admitted = refused is None and hold
        if admitted:
            entry = Admitted(rid, now, tokens, cost, now + ttl, counted=tokens)
            app.admitted.append(entry)
            window = [*window, entry]

        def window_reset() -> float:
            if not window:
                return WINDOW
            return max(0.0, min(a.at for a in window) + WINDOW - now)

        taken = 1 if admitted else 0
        states: list[LimitState] = []
        if limits.rpm is not None:
            left = limits.rpm - requests - taken
            states.append(LimitState("rpm", limits.rpm, max(0, left), window_reset(), scope))
        if limits.tpm is not None:
            left = limits.tpm - window_tokens - tokens * taken
            states.append(LimitState("tpm", limits.tpm, max(0, left), window_reset(), scope))
        if limits.tokens_per_day is not None:
            left = limits.tokens_per_day - day_used - tokens * taken
            reset = seconds_to_midnight(now)
            day = limits.tokens_per_day
            states.append(LimitState("tokens_per_day", day, max(0, left), reset, scope))
        if limits.max_concurrent is not None:
            left = limits.max_concurrent - len(live) - taken
            most = limits.max_concurrent
            states.append(LimitState("max_concurrent", most, max(0, left), 1.0, scope))
        if limits.budget is not None:
            left = limits.budget - month_used - cost * taken
            reset = seconds_to_month_end(now)
            states.append(LimitState("budget_usd_month", limits.budget, max(0, left), reset, scope))
        if refused is None:
            return Decision(admitted=True, states=tuple(states))

        if refused == "max_concurrent":
            retry = 1.0
        elif refused == "rpm":
            retry = window_reset()
        elif refused == "tpm":
            retry = self._tpm_retry(window, tokens, limits.tpm or 0, now)
        elif refused == "tokens_per_day":
            retry = seconds_to_midnight(now)
        else:
            retry = seconds_to_month_end(now)
        return Decision(False, refused, retry, tuple(states), scope)

    def reserve_with_user(
        self,
        app_id: str,
        user: str,
        limits: tuple[AppLimits, AppLimits],
        *,
        rid: str,
        tokens: int,
        cost: int,
        now: float,
        ttl: float,
    ) -> Decision:
        """The app's limits, then the user's: held by both or neither."""
        share = f"{app_id}/{user}"
        app_limits, user_limits = limits
        app_try = self.reserve(
            app_id, app_limits, rid=rid, tokens=tokens, cost=cost, now=now, ttl=ttl, hold=False
        )
        user_try = self.reserve(
            share,
            user_limits,
            rid=rid,
            tokens=tokens,
            cost=cost,
            now=now,
            ttl=ttl,
            hold=False,
            scope="user",
        )
        states = app_try.states + user_try.states
        for attempt in (app_try, user_try):
            if not attempt.admitted:
                return Decision(False, attempt.limit, attempt.retry_after, states, attempt.scope)
        held = (
            self.reserve(
                app_id, app_limits, rid=rid, tokens=tokens, cost=cost, now=now, ttl=ttl
            ).states
            + self.reserve(
                share,
                user_limits,
                rid=rid,
                tokens=tokens,
                cost=cost,
                now=now,
                ttl=ttl,
                scope="user",
            ).states
        )
        self.shares[rid] = share
        return Decision(admitted=True, states=held)

    @staticmethod
    def _tpm_retry(window: list[Admitted], tokens: int, limit: int, now: float) -> float:
        """The first instant at which what is left in the window, plus ``tokens``, fits."""
        if tokens > limit:
            return WINDOW  # it never fits: wait a whole window (the error message says why)
        for moment in sorted({a.at for a in window}):
            # At moment + 60 every admission made at or before `moment` has left the window.
            left = sum(a.counted for a in window if a.at > moment)
            if left + tokens <= limit:
                return max(0.0, moment + WINDOW - now)
        return WINDOW

    def settle(self, app_id: str, rid: str, *, tokens: int, cost: int, now: float) -> None:
        if rid in self.shares:  # the user's share: released, and the usage counts for them
            self._settle(self.shares[rid], rid, tokens=tokens, cost=cost, now=now)
        self._settle(app_id, rid, tokens=tokens, cost=cost, now=now)

    def _settle(self, app_id: str, rid: str, *, tokens: int, cost: int, now: float) -> None:
        app = self.app(app_id)
        entry = app.find(rid)
        if entry is not None:
            entry.settled = True
            entry.counted = tokens
        app.settled.append(Settled(day_of(now), month_of(now), tokens, cost))

    def renew(self, app_id: str, rid: str, *, now: float, expires: float) -> bool:
        entry = self.app(app_id).find(rid)
        if entry is not None and not entry.settled and now < entry.expires:
            entry.expires = expires
            if rid in self.shares:  # the user's share lives as long as the app's lease
                shared = self.app(self.shares[rid]).find(rid)
                assert shared is not None
                shared.expires = expires
            return True
        return False


# =============================================================================================
# Comparing a backend's decision with the model's.
# =============================================================================================


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=0, abs_tol=TOLERANCE)


def assert_same(actual: Decision, expected: Decision, context: str = "") -> None:
    where = f"{context}\n  backend: {actual}\n  model:   {expected}"
    assert actual.admitted == expected.admitted, f"admitted differs{where}"
    assert actual.limit == expected.limit, f"limit differs{where}"
    assert actual.scope == expected.scope, f"scope differs{where}"
    assert close(actual.retry_after, expected.retry_after), f"retry_after differs{where}"
    assert [(s.scope, s.name) for s in actual.states] == [
        (s.scope, s.name) for s in expected.states
    ], where
    for got, want in zip(actual.states, expected.states, strict=True):
        assert (got.limit, got.remaining) == (want.limit, want.remaining), f"{got.name}{where}"
        assert close(got.reset_s, want.reset_s), f"{got.name} reset_s{where}"


# =============================================================================================
# The backends under test, run by the synchronous state machine on one event loop.
# =============================================================================================


class Loop:
    """One asyncio loop for a whole test; the state machine's rules run coroutines on it."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()

    def run(self, work: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await work

        return self._runner.run(wrapped())

    def close(self) -> None:
        self._runner.close()


async def delete_prefix(redis: Redis, prefix: str) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=500)]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
def loop() -> Iterator[Loop]:
    runner = Loop()
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture
def redis_13(loop: Loop) -> Iterator[Redis]:
    """A client of database 13 of the machine's Redis (each test uses its own key prefix)."""
    redis = Redis.from_url(REDIS_URL)
    try:
        loop.run(redis.ping())
    except Exception as exc:  # noqa: BLE001 (whatever the failure, the message is the same)
        loop.run(redis.aclose())
        pytest.fail(f"these tests need Redis on {REDIS_URL}: {exc!r}")
    try:
        yield redis
    finally:
        loop.run(redis.aclose())


# =============================================================================================
# The state machine.
# =============================================================================================

# Start instants (UTC) just before the edges the calendar arithmetic must get right.
STARTS = [
    calendar.timegm((2024, 1, 31, 23, 58, 30)),  # end of a 31-day month
    calendar.timegm((2024, 2, 29, 23, 59, 0)),  # end of a leap February
    calendar.timegm((2023, 2, 28, 23, 59, 30)),  # end of a common February
    calendar.timegm((2024, 4, 30, 23, 59, 45)),  # end of a 30-day month
    calendar.timegm((2024, 12, 31, 23, 58, 0)),  # end of a year
    calendar.timegm((2025, 6, 14, 23, 59, 59)),  # an ordinary midnight
    calendar.timegm((2025, 6, 15, 12, 0, 0)),  # the middle of a day
]

# Times are multiples of 1/4 s: exact in binary floating point, so the window's edge and a
# lease's expiry can be hit exactly (no rounding decides which side of an edge we are on).
quarters = st.integers(min_value=0, max_value=4 * 90).map(lambda q: q / 4)
steps = st.one_of(
    st.sampled_from([0.0, 0.25, 1.0, 30.0, 59.75, 60.0, 60.25, 120.0, 3600.0, DAY]),
    quarters,
)
ttls = st.sampled_from([0.25, 1.0, 2.5, 10.0, 59.75, 60.0, 60.25, 300.0, DAY])
nudges = st.sampled_from([-0.25, 0.0, 0.25])


def maybe(values: st.SearchStrategy[int]) -> st.SearchStrategy[int | None]:
    return st.one_of(st.none(), values)


app_limits = st.builds(
    AppLimits,
    rpm=maybe(st.integers(0, 6)),
    tpm=maybe(st.integers(0, 400)),
    tokens_per_day=maybe(st.integers(0, 1500)),
    max_concurrent=maybe(st.integers(0, 4)),
    budget=maybe(st.integers(0, 5000)),
)


class CountersMachine(RuleBasedStateMachine):
    """Drives the backends and the model in lock-step (the tests subclass it with a loop)."""

    loop: Loop
    redis: Redis | None = None
    #: What the run exercised, over all examples (the test checks every case came up).
    seen: Counter[str]

    def __init__(self) -> None:
        super().__init__()
        self.model = ReferenceModel()
        self.backends: dict[str, QuotaCounters] = {"memory": MemoryCounters()}
        self.prefix = f"test:prop:{secrets.token_hex(6)}:"
        if self.redis is not None:
            self.backends["redis"] = RedisCounters(self.redis, prefix=self.prefix)
        self.now = 0.0
        self.ttl = 60.0
        self.limits: list[AppLimits] = []
        self.user_limits: list[AppLimits | None] = []
        self.users: dict[str, str] = {}  # reservation id -> the user sharing it
        self.admitted: list[tuple[str, str]] = []  # (app id, reservation id)
        self.unsettled: list[tuple[str, str]] = []
        self.count = 0

    def on_each(self, call: Callable[[QuotaCounters], Awaitable[T]]) -> dict[str, T]:
        return {name: self.loop.run(call(counters)) for name, counters in self.backends.items()}

    # --- set-up -------------------------------------------------------------------------------

    @initialize(
        start=st.one_of(
            st.sampled_from(STARTS), st.integers(946_684_800, 4_102_444_800).map(float)
        ),
        ttl=ttls,
        limits=st.lists(app_limits, min_size=1, max_size=3),
        user_limits=st.lists(st.one_of(st.none(), app_limits), min_size=3, max_size=3),
    )
    def setup(
        self,
        start: float,
        ttl: float,
        limits: list[AppLimits],
        user_limits: list[AppLimits | None],
    ) -> None:
        self.now = float(start)
        self.ttl = ttl
        self.limits = limits
        self.user_limits = user_limits

    # --- operations ---------------------------------------------------------------------------

    @rule(
        app=st.integers(0, 2),
        tokens=st.integers(0, 160),
        cost=st.integers(0, 1200),
        user=st.integers(0, 2),
    )
    def reserve(self, app: int, tokens: int, cost: int, user: int) -> None:
        self.check_reserve(app, tokens, cost, user)

    @rule(
        burst=st.lists(
            st.tuples(
                st.integers(0, 2), st.integers(0, 160), st.integers(0, 1200), st.integers(0, 2)
            ),
            min_size=2,
            max_size=6,
        )
    )
    def reserve_at_once(self, burst: list[tuple[int, int, int, int]]) -> None:
        """Several requests at the same instant (ties in the logs' order)."""
        for app, tokens, cost, user in burst:
            self.check_reserve(app, tokens, cost, user)

    def check_reserve(self, app: int, tokens: int, cost: int, user_number: int) -> None:
        """A reservation of the app itself (user 0) or of one of its two users; a user's is
        checked against the app's per-user limits too, when it has some."""
        app_id = f"app_{app % len(self.limits)}"
        limits = self.limits[app % len(self.limits)]
        per_user = self.user_limits[app % len(self.limits)]
        user = f"u{user_number}" if user_number and per_user is not None else None
        self.count += 1
        rid = f"res_{self.count:05d}"
        reservation = Reservation(
            app_id=app_id,
            id=rid,
            tokens=tokens,
            cost_micros=cost,
            now=self.now,
            ttl=self.ttl,
            calendar=Calendar.at(self.now),
            user=user,
        )
        if user is None or per_user is None:
            decisions = self.on_each(lambda c: c.reserve(limits.as_limits(), reservation))
            expected = self.model.reserve(
                app_id, limits, rid=rid, tokens=tokens, cost=cost, now=self.now, ttl=self.ttl
            )
        else:
            both = (limits.as_limits(), per_user.as_limits())
            decisions = self.on_each(lambda c: c.reserve(both[0], reservation, both[1]))
            expected = self.model.reserve_with_user(
                app_id,
                user,
                (limits, per_user),
                rid=rid,
                tokens=tokens,
                cost=cost,
                now=self.now,
                ttl=self.ttl,
            )
            self.seen[f"reserve with a user: {expected.scope or 'admitted'}"] += 1
            if expected.admitted:
                self.users[rid] = user
        for name, actual in decisions.items():
            context = f"{name}: reserve {rid} of {app_id} ({limits}) at {self.now}"
            assert_same(actual, expected, context)
        self.seen[f"reserve: {expected.limit or 'admitted'}"] += 1
        if expected.admitted:
            self.admitted.append((app_id, rid))
            self.unsettled.append((app_id, rid))

    @precondition(lambda self: self.unsettled)
    @rule(data=st.data(), tokens=st.integers(0, 250), cost=st.integers(0, 2000))
    def settle(self, data: st.DataObject, tokens: int, cost: int) -> None:
        # The caller settles a reservation once (gateway.services.ask guarantees it); the
        # real usage may be below or above the estimate, and the lease may have expired.
        app_id, rid = data.draw(st.sampled_from(self.unsettled), label="reservation")
        self.unsettled.remove((app_id, rid))
        now, day, user = self.now, Calendar.at(self.now), self.users.get(rid)
        self.on_each(
            lambda c: c.settle(
                app_id, rid, tokens=tokens, cost_micros=cost, now=now, calendar=day, user=user
            )
        )
        if user is not None:
            self.seen["settle: with a user"] += 1
        entry = self.model.app(app_id).find(rid)
        assert entry is not None
        self.seen["settle: lease expired" if entry.expires <= now else "settle: lease live"] += 1
        self.model.settle(app_id, rid, tokens=tokens, cost=cost, now=now)

    @precondition(lambda self: self.admitted)
    @rule(data=st.data())
    def renew(self, data: st.DataObject) -> None:
        # As the lease heartbeat does: a batch of leases, of one or several apps, renewed to a
        # full ttl from now (some may be settled or expired already: they stay released).
        batch = data.draw(
            st.lists(st.sampled_from(self.admitted), min_size=1, max_size=6, unique=True),
            label="reservations",
        )
        now, expires = self.now, self.now + self.ttl
        leases: dict[str, list[str]] = {}
        users: dict[str, set[str]] = {}
        for app_id, rid in batch:
            if rid in self.users:
                users.setdefault(app_id, set()).add(self.users[rid])
                self.seen["renew: with a user"] += 1
            entry = self.model.app(app_id).find(rid)
            assert entry is not None
            if entry.settled:
                self.seen["renew: settled"] += 1
            else:
                self.seen["renew: lease expired" if entry.expires <= now else "renew: live"] += 1
            leases.setdefault(app_id, []).append(rid)
        if len(leases) > 1:
            self.seen["renew: several apps"] += 1
        renewed = self.on_each(lambda c: c.renew(leases, now=now, expires=expires, users=users))
        expected = sum(
            self.model.renew(app_id, rid, now=now, expires=expires) for app_id, rid in batch
        )
        assert renewed == dict.fromkeys(self.backends, expected), (renewed, expected, batch)

    # --- the clock ----------------------------------------------------------------------------

    @rule(step=steps)
    def advance(self, step: float) -> None:
        self.now += step

    def move_to(self, moment: float) -> None:
        self.now = max(self.now, moment)

    @precondition(lambda self: self.admitted)
    @rule(data=st.data(), nudge=nudges)
    def to_window_edge(self, data: st.DataObject, nudge: float) -> None:
        """Just before, at or just after the moment an admission leaves the 60 s window."""
        app_id, rid = data.draw(st.sampled_from(self.admitted), label="reservation")
        entry = self.model.app(app_id).find(rid)
        assert entry is not None
        self.move_to(entry.at + WINDOW + nudge)

    @precondition(lambda self: self.unsettled)
    @rule(data=st.data(), nudge=nudges)
    def to_lease_expiry(self, data: st.DataObject, nudge: float) -> None:
        """Just before, at or just after a lease expires."""
        app_id, rid = data.draw(st.sampled_from(self.unsettled), label="reservation")
        entry = self.model.app(app_id).find(rid)
        assert entry is not None
        self.move_to(entry.expires + nudge)

    @rule(month=st.booleans(), nudge=nudges)
    def to_calendar_edge(self, month: bool, nudge: float) -> None:
        """Just before, at or just after the next UTC midnight or the next month."""
        ahead = seconds_to_month_end(self.now) if month else seconds_to_midnight(self.now)
        self.seen["to next month" if month else "to next midnight"] += 1
        self.move_to(self.now + ahead + nudge)

    def teardown(self) -> None:
        if self.redis is not None:
            self.loop.run(delete_prefix(self.redis, self.prefix))


def run_machine(loop: Loop, redis: Redis | None, examples: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    machine = type("Machine", (CountersMachine,), {"loop": loop, "redis": redis, "seen": seen})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,  # no .hypothesis/ directory in the repository
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    return seen


def test_memory_and_redis_counters_match_the_model(loop: Loop, redis_13: Redis) -> None:
    """1000 examples of up to STEPS operations, each checked on both backends."""
    seen = run_machine(loop, redis_13, EXAMPLES)
    print(sorted(seen.items()))  # noqa: T201 (shown with -s: what the examples covered)
    for case in (
        "reserve: admitted",
        "reserve: rpm",
        "reserve: tpm",
        "reserve: tokens_per_day",
        "reserve: max_concurrent",
        "reserve: budget_usd_month",
        "settle: lease live",
        "settle: lease expired",
        "renew: live",
        "renew: lease expired",
        "renew: settled",
        "renew: several apps",
        "to next midnight",
        "to next month",
        "reserve with a user: admitted",
        "reserve with a user: app",
        "reserve with a user: user",
        "settle: with a user",
        "renew: with a user",
    ):
        assert seen[case] >= EXAMPLES // 20, (case, seen)


# =============================================================================================
# Edge cases, one by one, on both backends.
# =============================================================================================

T0 = float(calendar.timegm((2024, 1, 31, 23, 59, 0)))  # one minute before February (UTC)


@pytest.fixture
async def redis_async() -> AsyncIterator[Redis]:
    redis = Redis.from_url(REDIS_URL)
    try:
        yield redis
    finally:
        await redis.aclose()


@dataclass
class Counters:
    """A backend with a fake clock and short helpers for the edge-case tests."""

    backend: QuotaCounters
    now: float = T0
    ttl: float = 300.0
    count: int = 0

    async def reserve(
        self, limits: Limits, tokens: int = 1, cost: int = 0, app_id: str = "app"
    ) -> tuple[str, Decision]:
        self.count += 1
        rid = f"res_{self.count:04d}"
        reservation = Reservation(
            app_id, rid, tokens, cost, self.now, self.ttl, Calendar.at(self.now)
        )
        return rid, await self.backend.reserve(limits, reservation)

    async def settle(self, rid: str, tokens: int, cost: int = 0, app_id: str = "app") -> None:
        await self.backend.settle(
            app_id,
            rid,
            tokens=tokens,
            cost_micros=cost,
            now=self.now,
            calendar=Calendar.at(self.now),
        )

    async def renew(self, *rids: str, app_id: str = "app") -> int:
        return await self.backend.renew(
            {app_id: list(rids)}, now=self.now, expires=self.now + self.ttl
        )


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Counters]:
    if request.param == "memory":
        yield Counters(MemoryCounters())
        return
    redis = Redis.from_url(REDIS_URL)
    prefix = f"test:unit:{secrets.token_hex(6)}:"
    try:
        yield Counters(RedisCounters(redis, prefix=prefix))
    finally:
        await delete_prefix(redis, prefix)
        await redis.aclose()


def state(decision: Decision, name: str) -> LimitState:
    return next(s for s in decision.states if s.name == name)


@pytest.mark.anyio
async def test_a_request_larger_than_the_tpm_limit_is_refused_even_when_idle(
    counters: Counters,
) -> None:
    _, decision = await counters.reserve(Limits(tpm=100), tokens=101)
    assert (decision.admitted, decision.limit, decision.retry_after) == (False, "tpm", 60.0)
    assert state(decision, "tpm") == LimitState("tpm", 100, 100, 60.0)
    _, decision = await counters.reserve(Limits(tpm=100), tokens=100)
    assert decision.admitted
    assert state(decision, "tpm").remaining == 0


@pytest.mark.anyio
async def test_a_request_larger_than_the_day_is_refused_until_midnight(
    counters: Counters,
) -> None:
    _, decision = await counters.reserve(Limits(tokens_per_day=50), tokens=51)
    assert (decision.admitted, decision.limit) == (False, "tokens_per_day")
    assert decision.retry_after == pytest.approx(60.0)  # T0 is 23:59:00 UTC


@pytest.mark.anyio
async def test_rpm_retry_after_is_when_the_oldest_request_leaves_the_window(
    counters: Counters,
) -> None:
    limits = Limits(rpm=2)
    assert (await counters.reserve(limits))[1].admitted
    counters.now += 10
    _, second = await counters.reserve(limits)
    assert second.admitted
    assert state(second, "rpm") == LimitState("rpm", 2, 0, 50.0)
    counters.now += 5
    _, refused = await counters.reserve(limits)
    assert (refused.limit, refused.retry_after) == ("rpm", 45.0)
    counters.now += 45  # exactly 60 s after the first: it has left the window (now-60, now]
    _, again = await counters.reserve(limits)
    assert again.admitted
    assert state(again, "rpm") == LimitState("rpm", 2, 0, 10.0)


@pytest.mark.anyio
async def test_tpm_retry_after_waits_for_just_enough_tokens_to_leave(counters: Counters) -> None:
    limits = Limits(tpm=100)
    await counters.reserve(limits, tokens=40)
    counters.now += 10
    await counters.reserve(limits, tokens=40)
    counters.now += 10
    _, small = await counters.reserve(limits, tokens=50)  # needs the first 40 to leave
    assert (small.limit, small.retry_after) == ("tpm", 40.0)
    _, large = await counters.reserve(limits, tokens=90)  # needs both to leave
    assert (large.limit, large.retry_after) == ("tpm", 50.0)
    assert state(large, "tpm") == LimitState("tpm", 100, 20, 40.0)


@pytest.mark.anyio
async def test_settling_replaces_the_estimate_with_the_real_usage(counters: Counters) -> None:
    limits = Limits(tpm=100, tokens_per_day=1000)
    rid, _ = await counters.reserve(limits, tokens=80)
    await counters.settle(rid, tokens=10)  # the answer was short: 70 tokens come back
    _, decision = await counters.reserve(limits, tokens=90)
    assert decision.admitted
    assert state(decision, "tpm").remaining == 0
    assert state(decision, "tokens_per_day").remaining == 1000 - 10 - 90


@pytest.mark.anyio
async def test_an_overshoot_is_counted_when_it_settles(counters: Counters) -> None:
    limits = Limits(tpm=100)
    rid, _ = await counters.reserve(limits, tokens=50)
    counters.now += 15
    await counters.settle(rid, tokens=150)  # a soft-capped answer ran past its reservation
    _, decision = await counters.reserve(limits, tokens=1)
    assert (decision.limit, decision.retry_after) == ("tpm", 45.0)
    assert state(decision, "tpm").remaining == 0


@pytest.mark.anyio
async def test_states_report_every_limit_after_an_admission_and_a_refusal(
    counters: Counters,
) -> None:
    limits = Limits(
        rpm=10, tpm=1000, tokens_per_day=5000, max_concurrent=2, budget_micros_month=9000
    )
    _, first = await counters.reserve(limits, tokens=100, cost=1000)
    assert first.admitted
    assert first.states == (
        LimitState("rpm", 10, 9, 60.0),
        LimitState("tpm", 1000, 900, 60.0),
        LimitState("tokens_per_day", 5000, 4900, 60.0),
        LimitState("max_concurrent", 2, 1, 1.0),
        LimitState("budget_usd_month", 9000, 8000, 60.0),
    )
    counters.now += 20
    await counters.reserve(limits, tokens=100, cost=1000)
    _, refused = await counters.reserve(limits, tokens=100, cost=1000)
    assert (refused.admitted, refused.limit, refused.retry_after) == (False, "max_concurrent", 1.0)
    assert refused.states == (
        LimitState("rpm", 10, 8, 40.0),
        LimitState("tpm", 1000, 800, 40.0),
        LimitState("tokens_per_day", 5000, 4800, 40.0),
        LimitState("max_concurrent", 2, 0, 1.0),
        LimitState("budget_usd_month", 9000, 7000, 40.0),
    )


@pytest.mark.anyio
async def test_a_lease_expires_after_its_ttl(counters: Counters) -> None:
    counters.ttl = 5.0
    limits = Limits(max_concurrent=1)
    await counters.reserve(limits)
    counters.now += 4.75
    _, held = await counters.reserve(limits)
    assert (held.limit, held.retry_after) == ("max_concurrent", 1.0)
    counters.now += 0.25  # exactly ttl after the reservation: the lease is gone
    _, freed = await counters.reserve(limits)
    assert freed.admitted


@pytest.mark.anyio
async def test_renew_keeps_a_live_lease_but_never_revives_an_expired_one(
    counters: Counters,
) -> None:
    counters.ttl = 5.0
    limits = Limits(max_concurrent=1)
    rid, _ = await counters.reserve(limits)
    counters.now += 4
    assert await counters.renew(rid) == 1  # now held until T0 + 9
    counters.now += 4.75
    assert (await counters.reserve(limits))[1].limit == "max_concurrent"
    counters.now += 0.25
    assert await counters.renew(rid) == 0  # too late: expired at T0 + 9, not purged yet
    counters.now += 0.25
    assert (await counters.reserve(limits))[1].admitted


@pytest.mark.anyio
async def test_settling_releases_the_lease_at_once(counters: Counters) -> None:
    # A reservation without a cost (no budget): Redis once failed on `HINCRBY ... -0` here.
    limits = Limits(max_concurrent=1)
    rid, _ = await counters.reserve(limits, tokens=10, cost=0)
    await counters.settle(rid, tokens=0, cost=0)
    _, decision = await counters.reserve(limits)
    assert decision.admitted


@pytest.mark.anyio
async def test_an_expired_lease_without_tokens_or_cost_is_purged(counters: Counters) -> None:
    counters.ttl = 1.0
    limits = Limits(max_concurrent=1)
    await counters.reserve(limits, tokens=0, cost=0)
    counters.now += 2
    _, decision = await counters.reserve(limits, tokens=0, cost=0)
    assert decision.admitted


@pytest.mark.anyio
async def test_usage_settled_after_the_lease_expired_still_counts(counters: Counters) -> None:
    counters.ttl = 1.0
    limits = Limits(tokens_per_day=100)
    rid, _ = await counters.reserve(limits, tokens=50)
    counters.now += 2  # the lease expired (its replica looked dead): its 50 are released
    _, second = await counters.reserve(limits, tokens=60)
    assert second.admitted
    await counters.settle(rid, tokens=50)  # ...but the answer did finish
    _, third = await counters.reserve(limits, tokens=1)
    assert third.limit == "tokens_per_day"
    assert state(third, "tokens_per_day").remaining == 0


@pytest.mark.anyio
async def test_the_day_and_the_month_restart_at_utc_midnight(counters: Counters) -> None:
    limits = Limits(tokens_per_day=100, budget_micros_month=1000)
    counters.now = T0 + 30  # 23:59:30 on 31 January
    rid, _ = await counters.reserve(limits, tokens=100, cost=1000)
    await counters.settle(rid, tokens=100, cost=1000)
    counters.now = T0 + 59.75
    _, refused = await counters.reserve(limits, tokens=1, cost=0)
    assert (refused.limit, refused.retry_after) == ("tokens_per_day", 0.25)
    _, broke = await counters.reserve(Limits(budget_micros_month=1000), tokens=1, cost=1)
    assert (broke.limit, broke.retry_after) == ("budget_usd_month", 0.25)
    counters.now = T0 + 60  # 00:00:00 on 1 February
    _, admitted = await counters.reserve(limits, tokens=100, cost=1000)
    assert admitted.admitted
    assert state(admitted, "tokens_per_day") == LimitState("tokens_per_day", 100, 0, DAY)
    month = 29 * DAY  # 2024 is a leap year
    assert state(admitted, "budget_usd_month") == LimitState("budget_usd_month", 1000, 0, month)


@pytest.mark.anyio
async def test_a_lease_in_flight_over_midnight_counts_in_the_new_day(counters: Counters) -> None:
    limits = Limits(tokens_per_day=100)
    await counters.reserve(limits, tokens=70)  # 23:59:00, still in flight at midnight
    counters.now = T0 + 61
    _, decision = await counters.reserve(limits, tokens=31)
    assert decision.limit == "tokens_per_day"
    assert (await counters.reserve(limits, tokens=30))[1].admitted


@pytest.mark.anyio
async def test_apps_do_not_share_counters(counters: Counters) -> None:
    limits = Limits(rpm=1)
    assert (await counters.reserve(limits, app_id="a"))[1].admitted
    assert (await counters.reserve(limits, app_id="b"))[1].admitted
    assert (await counters.reserve(limits, app_id="a"))[1].limit == "rpm"


# --- Redis only -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_two_redis_clients_share_one_limit(redis_async: Redis) -> None:
    """Two replicas (two clients, two RedisCounters) enforce one limit."""
    prefix = f"test:unit:{secrets.token_hex(6)}:"
    other = Redis.from_url(REDIS_URL)
    try:
        a = Counters(RedisCounters(redis_async, prefix=prefix))
        b = Counters(RedisCounters(other, prefix=prefix), count=1000)
        limits = Limits(max_concurrent=2)
        rid, _ = await a.reserve(limits)
        assert (await b.reserve(limits))[1].admitted
        assert (await a.reserve(limits))[1].limit == "max_concurrent"
        await b.settle(rid, tokens=1)  # settled by another replica than the one that reserved
        assert (await a.reserve(limits))[1].admitted
    finally:
        await delete_prefix(redis_async, prefix)
        await other.aclose()


@pytest.mark.anyio
async def test_redis_keys_of_an_app_all_expire(redis_async: Redis) -> None:
    """An idle app costs nothing: every key has a TTL, and lease keys outlive their lease."""
    prefix = f"test:unit:{secrets.token_hex(6)}:"
    try:
        c = Counters(RedisCounters(redis_async, prefix=prefix), now=time.time(), ttl=300.0)
        limits = Limits(rpm=5, tpm=1000, tokens_per_day=10_000, max_concurrent=5)
        rid, _ = await c.reserve(limits, tokens=10, cost=0)
        settled, _ = await c.reserve(limits, tokens=10, cost=0)
        await c.settle(settled, tokens=5)
        c.now += 250
        c.ttl = 3000.0  # renewed far past the keys' lifetime set by reserve (2 ttl = 600 s)
        assert await c.renew(rid) == 1
        keys = [key async for key in redis_async.scan_iter(match=f"{prefix}*")]
        assert len(keys) == 9
        for key in keys:
            assert await redis_async.pttl(key) > 0, key
        for suffix in (b":leases", b":expiries", b":leasesum"):
            key = next(k for k in keys if k.endswith(suffix))
            assert await redis_async.pttl(key) >= 3000 * 1000, key
    finally:
        await delete_prefix(redis_async, prefix)


@pytest.mark.anyio
async def test_unreachable_redis_raises_counters_unavailable() -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=1)
    try:
        c = Counters(RedisCounters(redis))
        with pytest.raises(CountersUnavailable):
            await c.reserve(Limits(rpm=1))
        with pytest.raises(CountersUnavailable):
            await c.settle("res_x", tokens=1)
        with pytest.raises(CountersUnavailable):
            await c.renew("res_x")
    finally:
        await redis.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def test_the_model_agrees_with_calendar_at() -> None:
    """The model's own calendar arithmetic, against the one the backends are given."""
    for start in [*STARTS, T0 + 60, 951_782_400.0]:  # 951782400: 29 Feb 2000
        for offset in (0.0, 0.25, 59.75, 3600.0):
            now = start + offset
            given = Calendar.at(now)
            assert given.day_ends_in == pytest.approx(seconds_to_midnight(now), abs=TOLERANCE)
            assert given.month_ends_in == pytest.approx(seconds_to_month_end(now), abs=TOLERANCE)


@pytest.mark.anyio
async def test_waits_never_exceed_the_window_when_replicas_clocks_interleave(
    counters: Counters,
) -> None:
    """Replica B reads its clock just before replica A, but A's reservation lands first: B's
    ``now`` is then a little before the oldest entry. Its wait is still at most 60 s."""
    limits = Limits(rpm=1, tpm=100)
    counters.now = T0 + 0.001  # replica A
    _, first = await counters.reserve(limits, tokens=60)
    assert first.admitted
    counters.now = T0 + 0.0005  # replica B, half a millisecond "earlier"
    _, rpm = await counters.reserve(limits, tokens=60)
    assert rpm.limit == "rpm"
    assert rpm.retry_after is not None and rpm.retry_after <= 60.0
    assert all(s.reset_s <= 60.0 for s in rpm.states), rpm.states
    _, tpm = await counters.reserve(Limits(tpm=100), tokens=60)
    assert tpm.limit == "tpm"
    assert tpm.retry_after is not None and tpm.retry_after <= 60.0
    assert all(s.reset_s <= 60.0 for s in tpm.states), tpm.states
