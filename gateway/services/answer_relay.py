"""Answers across replicas (with ``ORCHESTRA_REDIS_URL``): read and cancel on any of them.

The producing process mirrors each resumable answer's log to Redis
(``gateway.storage.answer_events``): one task per answer follows the log as a reader would and
adds what came in each ``FLUSH_S`` in one round trip; one loop refreshes every running answer's
``alive`` key in one round trip a second. A replica that does not hold an answer reads it from
Redis (``follow``), and ends it with ``upstream_error`` when the producer stopped refreshing
its ``alive`` key before the answer's last event. Cancels are published; every replica's
``run`` listens and stops the answer if it produces it.

Redis is a convenience here, never a dependency of local answers: a failed call is logged and
counted (``orchestra_streams_relay_failures_total``), and the local answer goes on.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import anyio
from loguru import logger

from gateway.core.errors import GatewayError, NotFound, StreamExpired, UpstreamError
from gateway.observability.metrics import Metrics
from gateway.services.answer_streams import ErrorEncoder, LiveAnswer, may_read
from gateway.storage import answer_events as events
from gateway.storage.answer_events import RelayLost

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gateway.services.answer_streams import AnswerStreams

#: How often the producer says it is alive, and how long that lasts without a refresh.
HEARTBEAT_S = 1.0
ALIVE_S = 3
#: A remote reader's XREAD blocks this long before it checks that the producer is alive.
BLOCK_S = 1.0
LISTEN_TIMEOUT_S = 1.0
RESUBSCRIBE_MIN_S = 0.5
RESUBSCRIBE_MAX_S = 10.0
RETRY_S = 0.5
#: The producer writes an answer's events at most this often (an answer shorter than this:
#: once, with its owner and its end); a remote reader is that much behind, at most.
FLUSH_S = 0.05
#: The first write waits only this long: enough for a short answer to end and go in one write.
FIRST_FLUSH_S = 0.002
#: A stream's MAXLEN is a count: the byte bound over a small event's size.
SMALL_EVENT_BYTES = 32


class AnswerRelay:
    def __init__(
        self,
        redis: Redis,
        reader: Redis,
        *,
        retention_s: float,
        buffer_max_bytes: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._redis = redis
        self._reader = reader
        self._ttl = max(1, int(retention_s))
        self._retention_s = retention_s
        self._maxlen = max(1000, buffer_max_bytes // SMALL_EVENT_BYTES)
        self._metrics = metrics
        self._live: dict[str, LiveAnswer] = {}

    def _failed(self, what: str, lost: RelayLost) -> None:
        logger.bind(error_type=str(lost)).warning(what)
        if self._metrics is not None:
            self._metrics.streams_relay_failures.inc()

    # --- the producing replica --------------------------------------------------------------

    async def mirror(self, live: LiveAnswer) -> None:
        """Copy ``live``'s log to Redis until its last event (a task of the registry's group)."""
        request_id, log = live.request_id, live.log
        self._live[request_id] = live
        try:
            position = 0
            while True:
                batch = log.since(position)
                if batch is None:  # released or outgrown: other replicas cannot follow it
                    return
                if not batch:
                    if log.ended:
                        return
                    await log.wait()
                    continue
                if not log.ended:  # gather what comes meanwhile: one write per FLUSH_S
                    # The first write (with the owner) goes out at once: a reader or a cancel
                    # on another replica may come as soon as the client has the first events.
                    # A short answer still fits in one write.
                    await anyio.sleep(FLUSH_S if position else FIRST_FLUSH_S)
                    batch = log.since(position)
                    if batch is None:
                        return
                last = log.ended and position + len(batch) >= log.last_id
                try:
                    await events.append_events(
                        self._redis,
                        request_id,
                        position + 1,
                        batch,
                        owner=(live.app_id, live.user) if position == 0 else None,
                        last=last,
                        maxlen=self._maxlen,
                        alive_s=ALIVE_S,
                        ttl=self._ttl,
                    )
                except RelayLost as lost:
                    self._failed("an answer's events could not be relayed; retrying", lost)
                    await anyio.sleep(RETRY_S)
                    continue
                position += len(batch)
                if last:
                    return
        finally:
            self._live.pop(request_id, None)

    async def run(self, streams: AnswerStreams) -> None:
        """Keep this process's answers alive in Redis, and apply the cancels published."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._heartbeat_forever)
            tasks.start_soon(self._listen_forever, streams)

    async def _heartbeat_forever(self) -> None:
        while True:
            await anyio.sleep(HEARTBEAT_S)
            running = [rid for rid, live in self._live.items() if not live.log.ended]
            if not running:
                continue
            try:
                await events.keep_alive(self._redis, running, alive_s=ALIVE_S, ttl=self._ttl)
            except RelayLost as lost:
                self._failed("answers' heartbeat failed", lost)

    async def _listen_forever(self, streams: AnswerStreams) -> None:
        delay = RESUBSCRIBE_MIN_S
        while True:
            try:
                async with events.cancels(self._redis) as subscription:
                    delay = RESUBSCRIBE_MIN_S
                    while True:
                        request_id = await events.next_cancel(
                            subscription, timeout=LISTEN_TIMEOUT_S
                        )
                        live = None if request_id is None else self._live.get(request_id)
                        if live is not None:
                            streams.cancel(live)
            except RelayLost as lost:
                self._failed("answer cancel subscription lost", lost)
            await anyio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX_S)

    # --- any replica ------------------------------------------------------------------------

    async def check(self, request_id: str, app_id: str, user: str | None) -> None:
        """NotFound unless this caller may read the answer; StreamExpired after its window."""
        try:
            owner = await events.find_owner(self._redis, request_id)
        except RelayLost as lost:
            self._failed("an answer's owner could not be read", lost)
            owner = None
        if owner is None or not may_read(owner.app_id, owner.user, app_id, user):
            raise NotFound(f"No answer {request_id!r} for this token.")
        if owner.ended and time.time() - owner.ended_at >= self._retention_s:
            raise StreamExpired(f"The answer {request_id!r} ended too long ago to be read again.")

    async def replayable(self, request_id: str, after: int) -> None:
        """StreamExpired when the events after ``after`` were trimmed from the stream."""
        try:
            first = await events.first_event_id(self._redis, request_id)
        except RelayLost as lost:
            self._failed("an answer's events could not be read", lost)
            return
        if first is not None and first > after + 1:
            raise StreamExpired(
                f"The events after id {after} are no longer kept; start a new request."
            )

    async def cancel(self, request_id: str) -> None:
        """Ask every replica to stop the answer (the one producing it does)."""
        try:
            await events.publish_cancel(self._redis, request_id)
        except RelayLost as lost:
            self._failed("an answer's cancel could not be published", lost)
            raise UpstreamError("The cancel could not reach the other gateways.") from None

    async def follow(
        self, request_id: str, after: int, encode_error: ErrorEncoder
    ) -> AsyncGenerator[bytes, None]:
        """The events after ``after`` from Redis, until the answer's last event; an error event
        if its producer dies (or Redis is lost) first."""
        position = after
        while True:
            error: GatewayError | None = None
            try:
                batches = await events.read_events(
                    self._reader, request_id, position, block_ms=int(BLOCK_S * 1000)
                )
                if not batches and not await events.is_alive(self._redis, request_id):
                    # The last event may have landed between the read and the check.
                    batches = await events.read_events(
                        self._reader, request_id, position, block_ms=None
                    )
                    if not batches:
                        error = UpstreamError("The gateway producing the answer stopped.")
            except RelayLost as lost:
                self._failed("an answer's events could not be read", lost)
                error = UpstreamError("The answer could not be followed; retry.")
            if error is not None:
                yield encode_error(error, position + 1)
                return
            chunks = []
            for batch in batches:
                if batch.first > position + 1:  # trimmed while we read: a gap, not a resume
                    yield encode_error(StreamExpired("Events were lost; retry."), position + 1)
                    return
                chunks.append(batch.after(position))
                position = batch.last
                if batch.final:
                    yield b"".join(chunks)
                    return
            if chunks:
                yield b"".join(chunks)
