"""What a quota counter backend does; the semantics are in gateway.core.quota_policy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from gateway.core.quota_policy import Calendar, Decision, Limits, Reservation


class QuotaCounters(Protocol):
    async def reserve(self, limits: Limits, reservation: Reservation) -> Decision:
        """Check every limit and, if all admit it, hold the reservation: one atomic step."""

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
        """Replace the reservation by the real usage and release it.

        Once per reservation (the caller guarantees it): a second settle would count the usage
        again.
        """

    async def renew(
        self, leases: Mapping[str, Sequence[str]], *, now: float, expires: float
    ) -> int:
        """Keep live leases alive until ``expires``: ``leases`` maps an app to reservation ids.

        One round trip for the whole batch (the lease heartbeat of a replica). Only a live
        lease is renewed: one that has expired by ``now`` (or was settled) stays released,
        whether or not another call has purged it yet. Returns how many were renewed.
        """

    async def aclose(self) -> None: ...


class CountersUnavailable(Exception):
    """The backend cannot be reached (Redis down); the caller applies its fail policy."""
