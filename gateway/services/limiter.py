"""Quota enforcement: reserve before the upstream call, settle when the answer ends.

The reservation holds the request and an estimate of its tokens (the prompt counted with the
model's real tokenizer, plus the capped ``max_tokens``) and of its cost. The hard cap of a
streaming answer is its own reservation: since every admitted reservation fits within the
limits, an answer that stays within its reservation can never push the app past a limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger

from gateway.core.errors import QuotaExceeded, QuotaUnavailable
from gateway.core.ids import time_ordered
from gateway.core.pricing import PriceTable
from gateway.core.quota_policy import (
    MICROS,
    REQUEST_LIMITS,
    SCOPE_APP,
    SCOPE_USER,
    Calendar,
    Decision,
    Limits,
    LimitState,
    Reservation,
)
from gateway.observability.metrics import Metrics
from gateway.services.leases import LeaseHeartbeat
from gateway.services.views import QuotaLimits
from gateway.storage.counters.protocol import CountersUnavailable, QuotaCounters

_LIMIT_NAMES = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "tokens_per_day": "tokens per day",
    "max_concurrent": "concurrent requests",
    "budget_usd_month": "monthly budget",
}


def limits_of(quota: QuotaLimits) -> Limits:
    budget = quota.budget_usd_month
    return Limits(
        rpm=quota.rpm,
        tpm=quota.tpm,
        tokens_per_day=quota.tokens_per_day,
        max_concurrent=quota.max_concurrent,
        budget_micros_month=None if budget is None else round(budget * MICROS),
    )


def user_limits_of(quota: QuotaLimits) -> Limits | None:
    """Each user's limits, or None when the app sets none."""
    if not quota.has_user_limits:
        return None
    budget = quota.user_budget_usd_month
    return Limits(
        rpm=quota.user_rpm,
        tpm=quota.user_tpm,
        tokens_per_day=quota.user_tokens_per_day,
        max_concurrent=quota.user_max_concurrent,
        budget_micros_month=None if budget is None else round(budget * MICROS),
    )


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request: what it holds, and the limits' states for the headers."""

    app_id: str
    reservation_id: str | None  # None: no limit, or counters down and failing open
    tokens: int
    cost_micros: int
    states: tuple[LimitState, ...]
    hard_cap: bool
    model: str
    #: The user whose counters hold a share of the reservation (None: the app's alone).
    user: str | None = None

    @property
    def token_cap(self) -> int | None:
        return self.tokens if self.hard_cap and self.reservation_id else None


@dataclass(frozen=True, slots=True)
class FailPolicy:
    requests_fail_open: bool = True
    tokens_fail_open: bool = False


class Limiter:
    def __init__(
        self,
        counters: QuotaCounters,
        prices: PriceTable,
        *,
        ttl: float,
        policy: FailPolicy = FailPolicy(),
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self._counters = counters
        self._metrics = metrics
        self._prices = prices
        self._ttl = ttl
        self._policy = policy
        self._clock = clock
        self.unavailable_admissions = 0
        #: Every admitted reservation is held here (its lease renewed) until it settles.
        self.leases = LeaseHeartbeat(counters, ttl=ttl, clock=clock, metrics=metrics)
        self.unavailable_refusals = 0

    @property
    def prices(self) -> PriceTable:
        return self._prices

    def needs_token_estimate(self, quota: QuotaLimits, *, user: str | None = None) -> bool:
        if any(v is not None for v in (quota.tpm, quota.tokens_per_day, quota.budget_usd_month)):
            return True
        return user is not None and any(
            v is not None
            for v in (quota.user_tpm, quota.user_tokens_per_day, quota.user_budget_usd_month)
        )

    async def reserve(
        self,
        app_id: str,
        quota: QuotaLimits,
        *,
        model: str,
        prompt_tokens: int,
        max_tokens: int,
        user: str | None = None,
    ) -> Admission:
        """Hold the request against the app's limits and, for a user, the user's (atomically)."""
        limits = limits_of(quota)
        hard_cap = not quota.soft_cap
        user_limits = None if user is None else user_limits_of(quota)
        if user_limits is None:
            user = None  # no per-user limits: the app's counters alone, as for the app token
            if not limits.any:
                return Admission(app_id, None, 0, 0, (), hard_cap, model)
        tokens = prompt_tokens + max_tokens
        cost = 0
        if limits.budget_micros_month is not None or (
            user_limits is not None and user_limits.budget_micros_month is not None
        ):
            cost = self._prices.cost_micros(model, prompt_tokens, max_tokens)
        now = self._clock()
        reservation = Reservation(
            app_id=app_id,
            id=time_ordered("res"),
            tokens=tokens,
            cost_micros=cost,
            now=now,
            ttl=self._ttl,
            calendar=Calendar.at(now),
            user=user,
        )
        try:
            # With user limits, the app's and the user's are held together or not at all.
            decision = await self._counters.reserve(limits, reservation, user_limits)
        except CountersUnavailable:
            names = limits.names()
            if user_limits is not None:
                names += [f"user_{name}" for name in user_limits.names()]
            return self._unavailable(app_id, names, hard_cap, model)
        if not decision.admitted:
            raise self._refusal(decision, reservation)
        self.leases.hold(app_id, reservation.id, user)
        return Admission(
            app_id, reservation.id, tokens, cost, decision.states, hard_cap, model, user
        )

    async def remaining(
        self, app_id: str, quota: QuotaLimits, *, user: str | None = None
    ) -> tuple[LimitState, ...]:
        """Every limit's state now (the app's, then the user's), holding nothing (/status);
        empty when the counters cannot say."""
        now = self._clock()
        probe = Reservation(
            app_id=app_id,
            id="",
            tokens=0,
            cost_micros=0,
            now=now,
            ttl=self._ttl,
            calendar=Calendar.at(now),
            user=user,
        )
        user_limits = None if user is None else user_limits_of(quota)
        try:
            return await self._counters.remaining(limits_of(quota), probe, user_limits)
        except CountersUnavailable:
            return ()

    def _unavailable(self, app_id: str, names: list[str], hard_cap: bool, model: str) -> Admission:
        closed = [
            name
            for name in names
            if not (
                self._policy.requests_fail_open
                if name.removeprefix("user_") in REQUEST_LIMITS
                else self._policy.tokens_fail_open
            )
        ]
        if closed:
            self.unavailable_refusals += 1
            if self._metrics is not None:
                self._metrics.quota_unavailable.labels("fail_closed").inc()
            logger.bind(limits=closed).error("quota counters unavailable; failing closed")
            raise QuotaUnavailable(
                "The quota service is unavailable; the request cannot be admitted safely. "
                "Retry shortly.",
                retry_after=1.0,
            )
        self.unavailable_admissions += 1
        if self._metrics is not None:
            self._metrics.quota_unavailable.labels("fail_open").inc()
        logger.bind(limits=names).warning("quota counters unavailable; failing open")
        return Admission(app_id, None, 0, 0, (), hard_cap, model)

    @staticmethod
    def _refusal(decision: Decision, reservation: Reservation) -> QuotaExceeded:
        name = decision.limit or "quota"
        scope = decision.scope or SCOPE_APP
        state = next((s for s in decision.states if s.name == name and s.scope == scope), None)
        described = _LIMIT_NAMES.get(name, name)
        if scope == SCOPE_USER:
            described = f"{described} of this user"
        if (
            state is not None
            and name in ("tpm", "tokens_per_day")
            and reservation.tokens > state.limit
        ):
            detail = (
                f"this request alone needs up to {reservation.tokens} tokens "
                f"(prompt + max_tokens), more than the limit of {state.limit}"
            )
        elif state is not None:
            detail = f"limit {state.limit}"
        else:
            detail = "limit reached"
        return QuotaExceeded(
            f"Quota exceeded: {described} ({name}, {detail}).",
            retry_after=decision.retry_after,
            limit=name,
            states=decision.states,
            scope=scope,
        )

    def cost_micros(self, model: str, prompt_tokens: int, completion_tokens: int) -> int:
        if not self._prices.knows(model):
            return 0
        return self._prices.cost_micros(model, prompt_tokens, completion_tokens)

    async def settle(
        self,
        admission: Admission,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        model: str | None = None,
    ) -> None:
        """Count the real usage, priced as ``model`` (the one that answered; default: asked)."""
        if admission.reservation_id is None:
            return
        # First, and whatever happens next: a settled reservation is never renewed again.
        self.leases.release(admission.reservation_id)
        now = self._clock()
        try:
            await self._counters.settle(
                admission.app_id,
                admission.reservation_id,
                tokens=prompt_tokens + completion_tokens,
                cost_micros=self.cost_micros(
                    model or admission.model, prompt_tokens, completion_tokens
                ),
                now=now,
                calendar=Calendar.at(now),
                user=admission.user,
            )
        except CountersUnavailable:
            # The lease expires by itself; the usage is in the interaction record.
            logger.bind(reservation=admission.reservation_id).error("quota settle failed")

    @property
    def ttl(self) -> float:
        return self._ttl
