"""Answers across replicas (with ``ORCHESTRA_REDIS_URL``): read and cancel on any of them.

An answer lives in the memory of the process that produces it, as with one replica. A replica
asked for an answer it does not hold publishes a *want* for it; the process holding it answers
by copying it to Redis (``gateway.storage.answer_events``): what it has so far, then every new
event until its last. So an answer read only where it runs (nearly all of them) costs Redis
nothing: copying every answer took a share of the gateway's throughput and kept every answer
in Redis for the whole retention.

The copying process writes, every ``FLUSH_S``, what every copied answer appended since, in one
round trip (not a task or a round trip per answer), and refreshes the running answers'
``alive`` keys once a second. The asking replica reads the answer from Redis (``follow``), and
ends it with ``upstream_error`` when the producer stopped refreshing its ``alive`` key before
the answer's last event; it waits ``WANT_GRACE_S`` for the answer to appear before it answers
404. Cancels are published too; every replica's ``run`` listens and stops the answer if it
produces it.

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
from gateway.services.answer_producer import ErrorEncoder, LiveAnswer
from gateway.services.answer_streams import may_read
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
#: After a failed write, the next one waits this much longer.
RETRY_S = 0.5
#: The process writes its copied answers' new events this often (a remote reader is that much
#: behind, at most).
FLUSH_S = 0.05
#: A replica asked for an answer it cannot find in Redis publishes a want, and looks again
#: this long (asking again every ``WANT_AGAIN_S``: pub/sub may lose a message) before a 404.
WANT_GRACE_S = 0.5
WANT_AGAIN_S = 0.2
UNKNOWN_POLL_S = 0.02
#: An answer this process no longer keeps, asked for: written ended this long ago (1970), so
#: that the asking replica answers 410 as this one would.
LONG_AGO = 0.0
#: A stream's MAXLEN is a count: the byte bound over a small event's size.
SMALL_EVENT_BYTES = 32


class _Mirrored:
    """An answer this process copies to Redis: how far, and when it last said it is alive."""

    __slots__ = ("alive_at", "live", "position", "written")

    def __init__(self, live: LiveAnswer) -> None:
        self.live = live
        self.position = live.log.first_id - 1  # the id of the last event in Redis
        self.written = False  # its owner is in Redis
        self.alive_at = 0.0


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
        self._limits = events.StreamLimits(
            maxlen=max(1000, buffer_max_bytes // SMALL_EVENT_BYTES),
            alive_s=ALIVE_S,
            ttl=max(1, int(retention_s)),
        )
        self._retention_s = retention_s
        self._metrics = metrics
        self._mirrored: dict[str, _Mirrored] = {}
        self._gone: list[events.Append] = []  # answers no longer kept, asked for
        self._news = anyio.Event()

    @property
    def mirroring(self) -> int:
        """How many answers this process is still copying to Redis."""
        return len(self._mirrored)

    def _failed(self, what: str, lost: RelayLost) -> None:
        logger.bind(error_type=str(lost)).warning(what)
        if self._metrics is not None:
            self._metrics.streams_relay_failures.inc()

    # --- the producing replica --------------------------------------------------------------

    def track(self, live: LiveAnswer) -> None:
        """Copy ``live``'s log to Redis from the next write on, until its last event."""
        if live.request_id not in self._mirrored:
            self._mirrored[live.request_id] = _Mirrored(live)
            self._news.set()

    def _wanted(self, streams: AnswerStreams, request_id: str) -> None:
        """Another replica asked for the answer: copy it if this process holds it."""
        held = streams.held(request_id)
        if isinstance(held, LiveAnswer):
            self.track(held)
        elif held is not None:  # gone from here: the asking replica answers 410
            self._gone.append(events.Append(request_id, 1, (), held, True, LONG_AGO))
            self._news.set()

    async def run(self, streams: AnswerStreams) -> None:
        """Write this process's answers to Redis, and apply the cancels published."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._listen_forever, streams)
            try:
                await self._write_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await self.flush()  # what the drain's last events were, too
                tasks.cancel_scope.cancel()

    async def _write_forever(self) -> None:
        while True:
            if not self._mirrored and not self._gone:
                await self._news.wait()
                self._news = anyio.Event()
            await anyio.sleep(FLUSH_S)
            if not await self.flush():
                await anyio.sleep(RETRY_S)

    async def flush(self) -> bool:
        """One round trip: every answer's events since the last write, and the heartbeat."""
        now = time.monotonic()
        gone, self._gone = self._gone, []
        appends = list(gone)
        alive: list[str] = []
        written: list[tuple[_Mirrored, int]] = []
        for request_id, mirrored in list(self._mirrored.items()):
            log = mirrored.live.log
            batch = log.since(mirrored.position)
            if batch is None:  # released or outgrown: other replicas cannot follow it
                del self._mirrored[request_id]
                continue
            ended = log.ended and mirrored.position + len(batch) >= log.last_id
            # Ended with no new event: its last events went in while the producer was still
            # settling the answer; its end goes in alone (or it is never written ended).
            if batch or ended or not mirrored.written:
                owner = None
                if not mirrored.written:  # its first write says who owns it, and alive
                    owner = (mirrored.live.app_id, mirrored.live.user)
                    mirrored.alive_at = now
                ended_at = None
                if ended and log.ended_at is not None:  # when it ended: maybe long ago
                    ended_at = time.time() - (now - log.ended_at)
                appends.append(
                    events.Append(request_id, mirrored.position + 1, batch, owner, ended, ended_at)
                )
                written.append((mirrored, len(batch)))
            if mirrored.written and not ended and now - mirrored.alive_at >= HEARTBEAT_S:
                alive.append(request_id)
                mirrored.alive_at = now
        if not appends and not alive:
            return True
        try:
            refused = await events.write(self._redis, appends, alive, self._limits)
        except RelayLost as lost:
            self._failed("answers' events could not be relayed; retrying", lost)
            self._gone = [*gone, *self._gone]  # the copied answers' events are read again
            return False
        for mirrored, count in written:
            request_id = mirrored.live.request_id
            if request_id in refused:  # not retried: it would fail again, and hold up nothing
                self._failed("an answer's events were refused", RelayLost(refused[request_id]))
                self._mirrored.pop(request_id, None)
                continue
            mirrored.position += count
            mirrored.written = True
            log = mirrored.live.log
            if log.ended and mirrored.position >= log.last_id:
                self._mirrored.pop(mirrored.live.request_id, None)
        return True

    async def _listen_forever(self, streams: AnswerStreams) -> None:
        delay = RESUBSCRIBE_MIN_S
        while True:
            try:
                async with events.requests(self._redis) as subscription:
                    delay = RESUBSCRIBE_MIN_S
                    while True:
                        request = await events.next_request(subscription, timeout=LISTEN_TIMEOUT_S)
                        if request is None:
                            continue
                        kind, request_id = request
                        if kind == events.WANT:
                            self._wanted(streams, request_id)
                            continue
                        mirrored = self._mirrored.get(request_id)
                        if mirrored is not None:
                            streams.cancel(mirrored.live)
            except RelayLost as lost:
                self._failed("answer request subscription lost", lost)
            await anyio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX_S)

    # --- any replica ------------------------------------------------------------------------

    async def check(self, request_id: str, app_id: str, user: str | None) -> None:
        """NotFound unless this caller may read the answer; StreamExpired after its window."""
        owner = await self._find_owner(request_id)
        if owner is None or not may_read(owner.app_id, owner.user, app_id, user):
            raise NotFound(f"No answer {request_id!r} for this token.")
        if owner.ended and time.time() - owner.ended_at >= self._retention_s:
            raise StreamExpired(f"The answer {request_id!r} ended too long ago to be read again.")

    async def _find_owner(self, request_id: str) -> events.Owner | None:
        """The answer's owner; for an id not in Redis, a want is published and the answer
        looked for until the replica holding it had time to write it."""
        deadline = time.monotonic() + WANT_GRACE_S
        asked_at: float | None = None
        while True:
            try:
                owner = await events.find_owner(self._redis, request_id)
                now = time.monotonic()
                if owner is not None or now >= deadline:
                    return owner
                if asked_at is None or now - asked_at >= WANT_AGAIN_S:
                    await events.publish_want(self._redis, request_id)
                    asked_at = now
            except RelayLost as lost:
                self._failed("an answer could not be looked for", lost)
                return None
            await anyio.sleep(UNKNOWN_POLL_S)

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
