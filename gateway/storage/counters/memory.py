"""In-memory quota counters for a single gateway process (the embedded default).

Every method runs without an ``await`` between its reads and writes, so each call is atomic
on the event loop: no lock is needed. A user's share of a reservation is the very ``_Lease``
object the app holds: renewing the app's lease renews the user's, and both expire together.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.core.quota_policy import (
    LIMIT_TPM,
    WINDOW_S,
    Calendar,
    Decision,
    Limits,
    LimitState,
    Reservation,
    Snapshot,
    current_states,
    decide,
    decide_with_user,
    refusal,
)

#: User reservations between two sweeps of idle users' counters (bounds their memory).
_SWEEP_EVERY = 4096


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

    def admit(self, r: Reservation, lease: _Lease) -> None:
        self.requests.append(r.now)
        self.token_log.append((r.now, r.id))
        self.token_amounts[r.id] = r.tokens
        self.tokens_in_window += r.tokens
        self.leases[r.id] = lease
        self.leased_tokens += r.tokens
        self.leased_cost += r.cost_micros

    def settle(self, rid: str, tokens: int, cost_micros: int, calendar: Calendar) -> None:
        self.release(rid)
        if rid in self.token_amounts:
            self.tokens_in_window += tokens - self.token_amounts[rid]
            self.token_amounts[rid] = tokens
        self.day_tokens[calendar.day] = self.day_tokens.get(calendar.day, 0) + tokens
        self.month_cost[calendar.month] = self.month_cost.get(calendar.month, 0) + cost_micros

    def idle(self, calendar: Calendar) -> bool:
        """Nothing in the window, no lease, nothing counted today or this month."""
        return not (
            self.requests
            or self.token_log
            or self.leases
            or self.day_tokens.get(calendar.day)
            or self.month_cost.get(calendar.month)
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
        self._users: dict[tuple[str, str], _AppCounters] = {}
        self._user_reservations = 0

    async def reserve(
        self, limits: Limits, reservation: Reservation, user_limits: Limits | None = None
    ) -> Decision:
        if user_limits is not None and reservation.user is not None:
            return self.reserve_with_user(limits, user_limits, reservation, reservation.user)
        return self.reserve_now(limits, reservation)

    def reserve_now(self, limits: Limits, r: Reservation) -> Decision:
        app = self._apps.setdefault(r.app_id, _AppCounters())
        app.purge(r.now)
        snap = app.snapshot(r.calendar)
        refused = refusal(limits, r, snap)
        tpm_retry = 0.0
        if refused == LIMIT_TPM and limits.tpm is not None:
            tpm_retry = app.tpm_retry_after(limits.tpm, r.tokens, r.now)
        if refused is None:  # app.admit, inlined: this is every request's path
            app.requests.append(r.now)
            app.token_log.append((r.now, r.id))
            app.token_amounts[r.id] = r.tokens
            app.tokens_in_window += r.tokens
            app.leases[r.id] = _Lease(expires=r.now + r.ttl, tokens=r.tokens, cost=r.cost_micros)
            app.leased_tokens += r.tokens
            app.leased_cost += r.cost_micros
        return decide(limits, r, snap, refused, tpm_retry)

    def reserve_with_user(
        self, limits: Limits, user_limits: Limits, r: Reservation, user_id: str
    ) -> Decision:
        """The app's limits and the user's, checked and held together (or not at all)."""
        self._user_reservations += 1
        if self._user_reservations % _SWEEP_EVERY == 0:
            self._sweep_users(r.now, r.calendar)
        app = self._apps.setdefault(r.app_id, _AppCounters())
        user = self._users.setdefault((r.app_id, user_id), _AppCounters())
        app.purge(r.now)
        user.purge(r.now)
        snap = app.snapshot(r.calendar)
        user_snap = user.snapshot(r.calendar)
        refused = refusal(limits, r, snap)
        user_refused = None if refused is not None else refusal(user_limits, r, user_snap)
        tpm_retry = 0.0
        if refused == LIMIT_TPM and limits.tpm is not None:
            tpm_retry = app.tpm_retry_after(limits.tpm, r.tokens, r.now)
        elif user_refused == LIMIT_TPM and user_limits.tpm is not None:
            tpm_retry = user.tpm_retry_after(user_limits.tpm, r.tokens, r.now)
        if refused is None and user_refused is None:
            lease = _Lease(expires=r.now + r.ttl, tokens=r.tokens, cost=r.cost_micros)
            app.admit(r, lease)
            user.admit(r, lease)  # the same lease: renewed and expired with the app's
        return decide_with_user(
            limits, user_limits, r, (snap, user_snap), (refused, user_refused), tpm_retry
        )

    async def remaining(
        self, limits: Limits, reservation: Reservation, user_limits: Limits | None = None
    ) -> tuple[LimitState, ...]:
        r = reservation
        app = self._apps.get(r.app_id) or _AppCounters()
        app.purge(r.now)
        user_snap = None
        if user_limits is not None and r.user is not None:
            user = self._users.get((r.app_id, r.user)) or _AppCounters()
            user.purge(r.now)
            user_snap = user.snapshot(r.calendar)
        return current_states(limits, user_limits, r, app.snapshot(r.calendar), user_snap)

    def _sweep_users(self, now: float, calendar: Calendar) -> None:
        for key in list(self._users):
            user = self._users[key]
            user.purge(now)
            if user.idle(calendar):
                del self._users[key]

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
        self.settle_now(
            app_id,
            reservation_id,
            tokens=tokens,
            cost_micros=cost_micros,
            now=now,
            calendar=calendar,
            user=user,
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
        user: str | None = None,
    ) -> None:
        # Settling once is the caller's job (gateway.services.quotas). A lease that expired
        # meanwhile still has its real usage counted: the request did happen.
        app = self._apps.setdefault(app_id, _AppCounters())
        app.purge(now)
        app.release(reservation_id)  # app.settle, inlined: this is every request's path
        if reservation_id in app.token_amounts:
            app.tokens_in_window += tokens - app.token_amounts[reservation_id]
            app.token_amounts[reservation_id] = tokens
        app.day_tokens[calendar.day] = app.day_tokens.get(calendar.day, 0) + tokens
        app.month_cost[calendar.month] = app.month_cost.get(calendar.month, 0) + cost_micros
        if user is not None:
            counters = self._users.setdefault((app_id, user), _AppCounters())
            counters.purge(now)
            counters.settle(reservation_id, tokens, cost_micros, calendar)

    async def renew(
        self,
        leases: Mapping[str, Sequence[str]],
        *,
        now: float,
        expires: float,
        users: Mapping[str, Collection[str]] | None = None,  # noqa: ARG002 (see below)
    ) -> int:
        # A user's share is the app's lease object: renewing the app's renews it (``users``
        # only matters to a backend whose user keys expire by themselves).
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
        self._users.clear()
