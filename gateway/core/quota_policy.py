"""Quota limits and the calendar arithmetic every counter backend shares. Pure: no I/O.

The limits and how each is counted (the same in every backend, and in the reference model the
property tests compare them with):

- ``rpm``: requests admitted in the sliding window ``(now - 60 s, now]`` (an exact sliding log,
  not an approximation: at most ``rpm`` admissions in any 60 seconds).
- ``tpm``: tokens of the requests admitted in that same sliding window; a request counts its
  reserved estimate until it settles, then its real usage.
- ``tokens_per_day``: tokens settled in the current UTC day, plus every reservation in flight.
- ``budget_usd_month``: cost settled in the current UTC calendar month, plus every reservation
  in flight (in micro-dollars, so the arithmetic is exact).
- ``max_concurrent``: reservations in flight. A reservation is a lease: if its replica dies it
  expires after ``ttl`` seconds and releases what it held.

Per-user limits (scope ``user``) are the same five limits counted over one user's reservations
of the app; a reservation with a user is checked against the app's limits and the user's, and
held by both or by neither. The user's share of a lease lives and dies with the app's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

WINDOW_S = 60.0
MICROS = 1_000_000

LIMIT_RPM = "rpm"
LIMIT_TPM = "tpm"
LIMIT_DAY = "tokens_per_day"
LIMIT_CONCURRENT = "max_concurrent"
LIMIT_BUDGET = "budget_usd_month"

#: Whose limit refused a request: the app's own (every user of it) or one user's.
SCOPE_APP = "app"
SCOPE_USER = "user"

#: Limits that count requests (Redis down: fail open by default) and the others (fail closed).
REQUEST_LIMITS = frozenset({LIMIT_RPM})


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    max_concurrent: int | None = None
    budget_micros_month: int | None = None

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (
                self.rpm,
                self.tpm,
                self.tokens_per_day,
                self.max_concurrent,
                self.budget_micros_month,
            )
        )

    def names(self) -> list[str]:
        found = []
        for name, value in (
            (LIMIT_RPM, self.rpm),
            (LIMIT_TPM, self.tpm),
            (LIMIT_DAY, self.tokens_per_day),
            (LIMIT_CONCURRENT, self.max_concurrent),
            (LIMIT_BUDGET, self.budget_micros_month),
        ):
            if value is not None:
                found.append(name)
        return found


@dataclass(frozen=True, slots=True)
class Calendar:
    """The day and month a reservation or a settlement falls in, and when they end."""

    day: str
    day_ends_in: float
    month: str
    month_ends_in: float

    @classmethod
    def at(cls, now: float) -> Calendar:
        bounds = _bounds_of_day(now)
        return cls(
            day=bounds.day,
            day_ends_in=bounds.day_end - now,
            month=bounds.month,
            month_ends_in=bounds.month_end - now,
        )


@dataclass(frozen=True, slots=True)
class _DayBounds:
    start: float
    day_end: float
    month_end: float
    day: str
    month: str


def _bounds_of_day(now: float) -> _DayBounds:
    # Twice per request: strftime and datetime arithmetic cost ~8 µs, a cached day ~1 µs.
    # Rounded to the microsecond first, as datetime.fromtimestamp does: 0.4 µs before
    # midnight is already the next day there, and must be here too.
    return _day_bounds(round(now * 1_000_000) // (_DAY * 1_000_000))


_DAY = 86_400  # a UTC day in Unix time (which has no leap seconds)


@lru_cache(maxsize=4)
def _day_bounds(day_number: int) -> _DayBounds:
    start = datetime.fromtimestamp(day_number * _DAY, UTC)
    next_day = start + timedelta(days=1)
    if start.month == 12:
        next_month = start.replace(year=start.year + 1, month=1, day=1)
    else:
        next_month = start.replace(month=start.month + 1, day=1)
    return _DayBounds(
        start=start.timestamp(),
        day_end=next_day.timestamp(),
        month_end=next_month.timestamp(),
        day=start.strftime("%Y%m%d"),
        month=start.strftime("%Y%m"),
    )


@dataclass(frozen=True, slots=True)
class Reservation:
    app_id: str
    id: str
    tokens: int
    cost_micros: int
    now: float
    ttl: float
    calendar: Calendar
    #: The app's user making the request (None: the app itself); with user limits, the
    #: reservation is held by the user's counters too.
    user: str | None = None


@dataclass(frozen=True, slots=True)
class LimitState:
    """One limit as the RateLimit headers show it, after the decision."""

    name: str
    limit: int
    remaining: int
    reset_s: float
    scope: str = SCOPE_APP


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    #: The limit that refused the request, when one did.
    limit: str | None = None
    retry_after: float | None = None
    states: tuple[LimitState, ...] = ()
    #: Whose limit refused it (SCOPE_APP or SCOPE_USER), when one did.
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An app's counters just before a decision (after expired entries were dropped)."""

    requests: int = 0
    oldest_request_at: float | None = None
    window_tokens: int = 0
    oldest_token_at: float | None = None
    leases: int = 0
    day_used: int = 0  # settled today + every lease
    month_used: int = 0  # micro-dollars: settled this month + every lease


def refusal(limits: Limits, r: Reservation, snap: Snapshot) -> str | None:
    """The first limit that would be passed by admitting ``r`` (checked in a fixed order)."""
    if limits.max_concurrent is not None and snap.leases + 1 > limits.max_concurrent:
        return LIMIT_CONCURRENT
    if limits.rpm is not None and snap.requests + 1 > limits.rpm:
        return LIMIT_RPM
    if limits.tpm is not None and snap.window_tokens + r.tokens > limits.tpm:
        return LIMIT_TPM
    if limits.tokens_per_day is not None and snap.day_used + r.tokens > limits.tokens_per_day:
        return LIMIT_DAY
    if (
        limits.budget_micros_month is not None
        and snap.month_used + r.cost_micros > limits.budget_micros_month
    ):
        return LIMIT_BUDGET
    return None


def _since(at: float | None, now: float) -> float:
    # Never more than a window: across replicas an entry can be a little "newer" than `now`
    # (another replica read its clock later but reached the counters first).
    return WINDOW_S if at is None else min(WINDOW_S, max(0.0, at + WINDOW_S - now))


def decide(
    limits: Limits, r: Reservation, snap: Snapshot, refused: str | None, tpm_retry: float
) -> Decision:
    """The decision and the RateLimit states, given what the backend found and did."""
    ok = refused is None
    states = limit_states(limits, r, snap, admitted=ok)
    if not ok:
        retry = retry_after(refused, r, snap, tpm_retry)
        return Decision(
            admitted=False, limit=refused, retry_after=retry, states=states, scope=SCOPE_APP
        )
    return Decision(admitted=True, states=states)


def decide_with_user(
    limits: Limits,
    user_limits: Limits,
    r: Reservation,
    snaps: tuple[Snapshot, Snapshot],
    refused: tuple[str | None, str | None],
    tpm_retry: float,
) -> Decision:
    """The decision on a reservation checked against the app's limits and its user's.

    ``snaps`` and ``refused`` are (app, user); the user's limits are only checked when the
    app's admit the request, and the reservation is held by both or by neither.
    """
    app_snap, user_snap = snaps
    app_refused, user_refused = refused
    ok = app_refused is None and user_refused is None
    states = limit_states(limits, r, app_snap, admitted=ok) + limit_states(
        user_limits, r, user_snap, admitted=ok, scope=SCOPE_USER
    )
    if ok:
        return Decision(admitted=True, states=states)
    if app_refused is not None:
        retry = retry_after(app_refused, r, app_snap, tpm_retry)
        return Decision(False, app_refused, retry, states, SCOPE_APP)
    retry = retry_after(user_refused, r, user_snap, tpm_retry)
    return Decision(False, user_refused, retry, states, SCOPE_USER)


def current_states(
    limits: Limits,
    user_limits: Limits | None,
    r: Reservation,
    snap: Snapshot,
    user_snap: Snapshot | None,
) -> tuple[LimitState, ...]:
    """The states as they are, before any decision (``remaining``: what is left now)."""
    states = limit_states(limits, r, snap, admitted=False)
    if user_limits is not None and user_snap is not None:
        states += limit_states(user_limits, r, user_snap, admitted=False, scope=SCOPE_USER)
    return states


def retry_after(refused: str | None, r: Reservation, snap: Snapshot, tpm_retry: float) -> float:
    """When the refused limit could admit the request (``tpm_retry`` is the backend's)."""
    return {
        LIMIT_CONCURRENT: 1.0,
        LIMIT_RPM: _since(snap.oldest_request_at, r.now),
        LIMIT_TPM: tpm_retry,
        LIMIT_DAY: r.calendar.day_ends_in,
        LIMIT_BUDGET: r.calendar.month_ends_in,
    }[refused or LIMIT_CONCURRENT]


def limit_states(
    limits: Limits, r: Reservation, snap: Snapshot, *, admitted: bool, scope: str = SCOPE_APP
) -> tuple[LimitState, ...]:
    """Every set limit's state after the decision (``admitted``: ``r`` now counts in it)."""
    add, tokens, cost = (1, r.tokens, r.cost_micros) if admitted else (0, 0, 0)
    # When the window is empty, an admitted request starts it.
    fallback = r.now if admitted else None
    oldest_request = snap.oldest_request_at if snap.oldest_request_at is not None else fallback
    oldest_token = snap.oldest_token_at if snap.oldest_token_at is not None else fallback
    states: list[LimitState] = []
    if limits.rpm is not None:
        states.append(
            LimitState(
                LIMIT_RPM,
                limits.rpm,
                max(0, limits.rpm - snap.requests - add),
                _since(oldest_request, r.now),
                scope,
            )
        )
    if limits.tpm is not None:
        states.append(
            LimitState(
                LIMIT_TPM,
                limits.tpm,
                max(0, limits.tpm - snap.window_tokens - tokens),
                _since(oldest_token, r.now),
                scope,
            )
        )
    if limits.tokens_per_day is not None:
        states.append(
            LimitState(
                LIMIT_DAY,
                limits.tokens_per_day,
                max(0, limits.tokens_per_day - snap.day_used - tokens),
                r.calendar.day_ends_in,
                scope,
            )
        )
    if limits.max_concurrent is not None:
        states.append(
            LimitState(
                LIMIT_CONCURRENT,
                limits.max_concurrent,
                max(0, limits.max_concurrent - snap.leases - add),
                1.0,
                scope,
            )
        )
    if limits.budget_micros_month is not None:
        states.append(
            LimitState(
                LIMIT_BUDGET,
                limits.budget_micros_month,
                max(0, limits.budget_micros_month - snap.month_used - cost),
                r.calendar.month_ends_in,
                scope,
            )
        )
    return tuple(states)


def tightest(states: tuple[LimitState, ...]) -> LimitState | None:
    """The limit closest to exhaustion (the one the RateLimit headers report)."""
    if not states:
        return None
    return min(states, key=lambda s: (s.remaining / s.limit if s.limit else 0.0, s.reset_s))
