"""Auth epochs: how every gateway process learns, within a bound, that an app's tokens must be
checked again.

Every change that an auth cache must not outlive (a token revoked; an app disabled, enabled,
updated or removed; later, an end user's sessions revoked) bumps the app's ``auth_epoch`` in
the database, in the transaction that makes the change. A cached verdict remembers the epoch
it was read with and is used only while this process's view of that epoch is the same.

This process's view is kept current two ways:

- **Polling** (always): every ``interval`` seconds, one query reads the epochs of the apps this
  process has cached (in batches of ``BATCH``). The database is the source of truth, so this
  alone bounds a change at ``interval`` plus one query: with or without Redis, whichever process
  made the change (a CLI without the Redis URL, a publish lost with a broken subscription).
- **Redis** (when configured): the changing process publishes ``app epoch`` after its commit;
  every subscribed process applies it at once. A lost subscription is re-established with
  back-off while the polling goes on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from loguru import logger

from gateway.core.errors import GatewayError
from gateway.storage import apps as app_rows
from gateway.storage import epoch_channel
from gateway.storage.database import Database
from gateway.storage.epoch_channel import REMOVED, ChannelLost

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["REMOVED", "Announcer", "AuthEpochs", "announcing"]

#: Apps per polling query.
BATCH = 500
#: How long a subscriber waits for a message before it checks its connection's health.
LISTEN_TIMEOUT_S = 1.0
RESUBSCRIBE_MIN_S = 0.5
RESUBSCRIBE_MAX_S = 10.0


class AuthEpochs:
    """This process's view of the auth epoch of every app it has authenticated."""

    def __init__(self, db: Database, *, redis: Redis | None = None, interval: float = 1.0) -> None:
        self._db = db
        self._redis = redis
        self._interval = interval
        self._epochs: dict[str, int] = {}
        self._polling_failed = False

    def current(self, app_id: str) -> int | None:
        return self._epochs.get(app_id)

    def observe(self, app_id: str, epoch: int) -> None:
        """An epoch read with a verdict: track the app; never move its epoch backwards."""
        known = self._epochs.get(app_id)
        if known is None or (known != REMOVED and epoch > known):
            self._epochs[app_id] = epoch

    def apply(self, app_id: str, epoch: int) -> None:
        """A change announced or polled: applies to tracked apps only (others have no verdict
        cached, and their next lookup reads the database anyway)."""
        known = self._epochs.get(app_id)
        if known is None or known == REMOVED:
            return
        if epoch == REMOVED or epoch > known:
            self._epochs[app_id] = epoch

    async def poll(self) -> None:
        tracked = [app_id for app_id, epoch in self._epochs.items() if epoch != REMOVED]
        for start in range(0, len(tracked), BATCH):
            batch = tracked[start : start + BATCH]
            async with self._db.read() as session:
                found = await app_rows.auth_epochs(session, batch)
            for app_id in batch:
                self.apply(app_id, found.get(app_id, REMOVED))

    async def run(self) -> None:
        """Keep the view current until cancelled (started in the lifespan's task group)."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._poll_forever)
            if self._redis is not None:
                tasks.start_soon(self._listen_forever, self._redis)

    async def _poll_forever(self) -> None:
        while True:
            await anyio.sleep(self._interval)
            try:
                await self.poll()
            except GatewayError:
                if not self._polling_failed:  # once per outage, not once a second
                    logger.warning("auth epochs cannot be read; cached verdicts kept meanwhile")
                self._polling_failed = True
                continue
            if self._polling_failed:
                logger.info("auth epochs read again")
            self._polling_failed = False

    async def _listen_forever(self, redis: Redis) -> None:
        delay = RESUBSCRIBE_MIN_S
        while True:
            try:
                async with epoch_channel.subscribed(redis) as subscription:
                    logger.info("listening for auth changes")
                    delay = RESUBSCRIBE_MIN_S
                    while True:
                        change = await epoch_channel.next_change(
                            subscription, timeout=LISTEN_TIMEOUT_S
                        )
                        if change is not None:
                            self.apply(*change)
            except ChannelLost as lost:
                logger.bind(error_type=str(lost)).warning(
                    "auth change subscription lost; polling the database meanwhile"
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX_S)


class Announcer:
    """Tells every gateway process at once that an app's epoch changed (a no-op without Redis).

    Announcing is best effort: the change is committed already, and every process sees it by
    polling within its interval if the announcement is lost.
    """

    def __init__(self, redis: Redis | None = None, *, timeout: float = 1.0) -> None:
        self._redis = redis
        self._timeout = timeout

    async def announce(self, app_id: str, epoch: int) -> None:
        if self._redis is None:
            return
        try:
            with anyio.fail_after(self._timeout):
                await epoch_channel.publish(self._redis, app_id, epoch)
        except (ChannelLost, TimeoutError):
            logger.warning("auth change not announced; gateways will see it by polling")


@asynccontextmanager
async def announcing(redis_url: str | None) -> AsyncIterator[Announcer]:
    """An announcer on its own Redis connection (for a process that does not serve: the CLI)."""
    if not redis_url:
        yield Announcer()
        return
    redis = epoch_channel.connect(redis_url)
    try:
        yield Announcer(redis)
    finally:
        with anyio.CancelScope(shield=True):
            await redis.aclose()
