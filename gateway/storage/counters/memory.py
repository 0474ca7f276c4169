"""In-memory quota counters for a single gateway process (the embedded default).

Every method runs without an ``await`` between its reads and writes, so each call is atomic
on the event loop: no lock is needed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.core.quota_policy import (
    LIMIT_TPM,
    WINDOW_S,
    Calendar,
    Decision,
    Limits,
    Reservation,
    Snapshot,
    decide,
    refusal,
)


@dataclass(slots=True)
class _Lease:
    expires: float
    tokens: int
    cost: int


@dataclass(slots=True)
class _AppCounters:
    requests: deque[float] = field(default_factory=deque)
    token_log: deque[tuple[float, str]] = field(default_factory=deque)
    token_amounts: dict[str, int] = field(default_factory=dict)
    tokens_in_window: int = 0
    leases: dict[str, _Lease] = field(default_factory=dict)
    leased_tokens: int = 0
    leased_cost: int = 0
    day_tokens: dict[str, int] = field(default_factory=dict)
    month_cost: dict[str, int] = field(default_factory=dict)

    def purge(self, now: float) -> None:
        edge = now - WINDOW_S
        while self.requests and self.requests[0] <= edge:
            self.requests.popleft()
        while self.token_log and self.token_log[0][0] <= edge:
            _, rid = self.token_log.popleft()
            self.tokens_in_window -= self.token_amounts.pop(rid, 0)
        for rid in [rid for rid, lease in self.leases.items() if lease.expires <= now]:
            self.release(rid)

    def release(self, rid: str) -> None:
        lease = self.leases.pop(rid, None)
        if lease is not None:
            self.leased_tokens -= lease.tokens
            self.leased_cost -= lease.cost

    def snapshot(self, calendar: Calendar) -> Snapshot:
        return Snapshot(
            requests=len(self.requests),
            oldest_request_at=self.requests[0] if self.requests else None,
            window_tokens=self.tokens_in_window,
            oldest_token_at=self.token_log[0][0] if self.token_log else None,
            leases=len(self.leases),
            day_used=self.day_tokens.get(calendar.day, 0) + self.leased_tokens,
            month_used=self.month_cost.get(calendar.month, 0) + self.leased_cost,
        )

    def tpm_retry_after(self, limit: int, tokens: int, now: float) -> float:
        """When enough of the window has slid out for ``tokens`` to fit."""
        if tokens > limit:
            return WINDOW_S
        excess = self.tokens_in_window + tokens - limit
        for at, rid in self.token_log:
            excess -= self.token_amounts.get(rid, 0)
            if excess <= 0:
                return min(WINDOW_S, max(0.0, at + WINDOW_S - now))
        return WINDOW_S


class MemoryCounters:
    def __init__(self) -> None:
        self._apps: dict[str, _AppCounters] = {}

    async def reserve(self, limits: Limits, reservation: Reservation) -> Decision:
        return self.reserve_now(limits, reservation)

    def reserve_now(self, limits: Limits, r: Reservation) -> Decision:
        app = self._apps.setdefault(r.app_id, _AppCounters())
        app.purge(r.now)
        snap = app.snapshot(r.calendar)
        refused = refusal(limits, r, snap)
        tpm_retry = 0.0
        if refused == LIMIT_TPM and limits.tpm is not None:
            tpm_retry = app.tpm_retry_after(limits.tpm, r.tokens, r.now)
        if refused is None:
            app.requests.append(r.now)
            app.token_log.append((r.now, r.id))
            app.token_amounts[r.id] = r.tokens
            app.tokens_in_window += r.tokens
            app.leases[r.id] = _Lease(expires=r.now + r.ttl, tokens=r.tokens, cost=r.cost_micros)
            app.leased_tokens += r.tokens
            app.leased_cost += r.cost_micros
        return decide(limits, r, snap, refused, tpm_retry)

    async def settle(
        self,
        app_id: str,
        reservation_id: str,
        *,
        tokens: int,
        cost_micros: int,
        now: float,
        calendar: Calendar,
    ) -> None:
        self.settle_now(
            app_id,
            reservation_id,
            tokens=tokens,
            cost_micros=cost_micros,
            now=now,
            calendar=calendar,
        )

    def settle_now(
        self,
        app_id: str,
        reservation_id: str,
        *,
        tokens: int,
        cost_micros: int,
        now: float,
        calendar: Calendar,
    ) -> None:
        # Settling once is the caller's job (gateway.services.quotas). A lease that expired
        # meanwhile still has its real usage counted: the request did happen.
        app = self._apps.setdefault(app_id, _AppCounters())
        app.purge(now)
        app.release(reservation_id)
        if reservation_id in app.token_amounts:
            app.tokens_in_window += tokens - app.token_amounts[reservation_id]
            app.token_amounts[reservation_id] = tokens
        app.day_tokens[calendar.day] = app.day_tokens.get(calendar.day, 0) + tokens
        app.month_cost[calendar.month] = app.month_cost.get(calendar.month, 0) + cost_micros

    async def renew(
        self, leases: Mapping[str, Sequence[str]], *, now: float, expires: float
    ) -> int:
        renewed = 0
        for app_id, reservation_ids in leases.items():
            app = self._apps.get(app_id)
            if app is None:
                continue
            app.purge(now)  # an expired lease is gone: it is not brought back
            for reservation_id in reservation_ids:
                lease = app.leases.get(reservation_id)
                if lease is not None:
                    lease.expires = expires
                    renewed += 1
        return renewed

    async def aclose(self) -> None:
        self._apps.clear()
