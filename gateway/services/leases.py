"""The lease heartbeat: every live reservation of this process, renewed together every ttl / 3.

A reservation is a lease (gateway.core.quota_policy): when its replica dies, it expires after
``reservation_ttl_s`` and the app's quota recovers by itself. While its answer runs, however
long, and however long the upstream stays silent, the heartbeat keeps it: the limiter holds
every reservation it admits here until the reservation settles, and one batched renewal (one
Redis round trip for the whole process) extends them all to a full ttl from now. Two renewals
in a row may fail (Redis away for a moment) before a lease is at risk.

Nothing here is on an answer's path but two dict operations (``hold`` and ``release``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
from loguru import logger

from gateway.observability.metrics import Metrics
from gateway.storage.counters.protocol import CountersUnavailable, QuotaCounters

#: Renewals per lease lifetime: a lease survives ``BEATS_PER_TTL - 1`` failed ones in a row.
BEATS_PER_TTL = 3


class LeaseHeartbeat:
    def __init__(
        self,
        counters: QuotaCounters,
        *,
        ttl: float,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self._counters = counters
        self._ttl = ttl
        self._clock = clock
        self._metrics = metrics
        self._live: dict[str, str] = {}  # reservation id -> app id
        self._users: dict[str, str] = {}  # reservation id -> user, for those a user shares
        #: Leases found expired while their answers still ran (renewals that came too late).
        self.lost = 0

    @property
    def interval(self) -> float:
        return self._ttl / BEATS_PER_TTL

    @property
    def held(self) -> int:
        """How many reservations this process keeps alive now."""
        return len(self._live)

    def hold(self, app_id: str, reservation_id: str, user: str | None = None) -> None:
        """Keep this reservation's lease (and its user's share) alive until ``release``."""
        self._live[reservation_id] = app_id
        if user is not None:
            self._users[reservation_id] = user

    def release(self, reservation_id: str) -> None:
        """Stop renewing this reservation (it is settling); idempotent."""
        self._live.pop(reservation_id, None)
        if self._users:
            self._users.pop(reservation_id, None)

    async def beat(self) -> int:
        """Renew every held lease now, in one call to the counters; how many were renewed."""
        if self._metrics is not None:
            self._metrics.quota_leases.set(len(self._live))
        if not self._live:
            return 0
        leases: dict[str, list[str]] = {}
        for reservation_id, app_id in self._live.items():
            leases.setdefault(app_id, []).append(reservation_id)
        users: dict[str, set[str]] = {}
        for reservation_id, user in self._users.items():
            holder = self._live.get(reservation_id)
            if holder is not None:
                users.setdefault(holder, set()).add(user)
        now = self._clock()
        try:
            renewed = await self._counters.renew(
                leases, now=now, expires=now + self._ttl, users=users or None
            )
        except CountersUnavailable:
            logger.bind(leases=len(self._live)).warning("quota leases not renewed; will retry")
            return 0
        # Those settled meanwhile are no longer held (and were rightly not renewed).
        still_held = sum(rid in self._live for ids in leases.values() for rid in ids)
        lost = still_held - renewed
        if lost > 0:
            self.lost += lost
            logger.bind(lost=lost).warning("quota leases expired while their answers ran")
        return renewed

    async def run(self) -> None:
        """Beat every ``interval`` until cancelled (a task of the lifespan's task group)."""
        next_at = anyio.current_time() + self.interval
        while True:
            await anyio.sleep_until(next_at)
            await self.beat()
            # A fixed cadence; after a stall, the next beat is one interval away, not a burst.
            next_at = max(next_at + self.interval, anyio.current_time())
