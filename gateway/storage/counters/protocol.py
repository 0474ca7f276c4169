"""What a quota counter backend does; the semantics are in gateway.core.quota_policy."""

from __future__ import annotations

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

    async def extend(self, app_id: str, reservation_id: str, *, now: float, expires: float) -> None:
        """Keep a long answer's lease alive until ``expires``.

        Only a live lease is renewed: one that has expired by ``now`` (or was settled) stays
        released, whether or not another call has purged it yet.
        """

    async def aclose(self) -> None: ...


class CountersUnavailable(Exception):
    """The backend cannot be reached (Redis down); the caller applies its fail policy."""
