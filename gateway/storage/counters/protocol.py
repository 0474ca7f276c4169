"""What a quota counter backend does; the semantics are in gateway.core.quota_policy."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from gateway.core.quota_policy import Calendar, Decision, Limits, LimitState, Reservation


class QuotaCounters(Protocol):
    async def reserve(
        self, limits: Limits, reservation: Reservation, user_limits: Limits | None = None
    ) -> Decision:
        """Check every limit and, if all admit it, hold the reservation: one atomic step.

        With ``user_limits`` and a ``reservation.user``, the user's limits are checked in the
        same step, after the app's, and the reservation is held by the app's counters and the
        user's, or by neither (a refusal never leaves half a reservation).
        """

    async def remaining(
        self, limits: Limits, reservation: Reservation, user_limits: Limits | None = None
    ) -> tuple[LimitState, ...]:
        """Every limit's state now (the app's, then the user's), holding nothing: what
        ``reservation`` (its app, user, time) would find. For /status."""

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
        """Replace the reservation by the real usage and release it (``user``: the user's
        share too, and the usage counts for the user).

        Once per reservation (the caller guarantees it): a second settle would count the usage
        again.
        """

    async def renew(
        self,
        leases: Mapping[str, Sequence[str]],
        *,
        now: float,
        expires: float,
        users: Mapping[str, Collection[str]] | None = None,
    ) -> int:
        """Keep live leases alive until ``expires``: ``leases`` maps an app to reservation ids.

        A user's share of a lease is renewed with the app's; ``users`` maps an app to the users
        holding some of those leases, whose counters must be kept as long.

        One round trip for the whole batch (the lease heartbeat of a replica). Only a live
        lease is renewed: one that has expired by ``now`` (or was settled) stays released,
        whether or not another call has purged it yet. Returns how many were renewed.
        """

    async def aclose(self) -> None: ...


class CountersUnavailable(Exception):
    """The backend cannot be reached (Redis down); the caller applies its fail policy."""
