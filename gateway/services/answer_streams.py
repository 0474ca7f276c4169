"""Answers that live on the gateway for a while: one producer each, any number of readers.

An answer's producer owns it: it reads the upstream and appends the encoded events to the
answer's ``AnswerLog`` (``gateway.services.answer_producer``), and settles it (quota, record)
exactly once, however many readers came and went. The producer runs in the task of the request
that started the answer (``produce``), and writes to that request's client itself (a
``Sink``). Any other reader (a resume) follows the log (``gateway.http.streaming.AnswerReader``).

When the last reader leaves a running answer, it goes on for ``grace_s`` (0: it is stopped at
once); if nobody attaches meanwhile, it is stopped and recorded as ``client_disconnected``.
``cancel`` stops it as ``cancelled``; the drain of a shutdown, as ``shutting_down``. Every
stop ends the log with an ``error`` event, so every reader learns how the answer ended.

Ended answers stay replayable for ``retention_s`` (then a tombstone answers 410 to their
owner), within a memory bound shared by all logs: past it, ended answers are evicted oldest
first (then, if that is not enough, running answers lose their oldest events).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus
from loguru import logger

from gateway.core.errors import Cancelled, GatewayError, NotFound, ShuttingDown, StreamExpired
from gateway.observability.metrics import Metrics
from gateway.services.answer_log import AnswerLog, Budget
from gateway.services.answer_producer import (
    SHUTDOWN_MESSAGE,
    Encoder,
    ErrorEncoder,
    EventObserver,
    LiveAnswer,
    Production,
    Sink,
    deliver_pending,
    produce_events,
    stopped,
)
from gateway.services.ask import Answer

#: Registers a callback for the shutdown's drain deadline; returns the unregister function.
OnDrain = Callable[[Callable[[], None]], Callable[[], None]]


#: How many expired or evicted answers are remembered (410 for them rather than 404).
TOMBSTONES = 10_000
#: After an overflow, evict down to this share of the memory bound: thousands of answers at
#: a time, not one per event, but few enough not to stall the loop (2 ms at the default bound).
LOW_WATER = 0.97
#: An ended answer's log is compacted this long after its end: after the relay copied it and
#: its readers took its last events.
COMPACT_AFTER_S = 1.0
#: An ended answer kept for resumes, as plain values: its app, user, end
#: (``time.monotonic()``), and its log (``AnswerLog.kept``: its first id, its events' bytes).
#: The collector does not track a tuple of strings, bytes and numbers, while it walks every
#: object of a class on each full collection: minutes of kept answers as objects made every
#: collection that much slower.
Kept = tuple[str, str | None, float, int, bytes]


def may_read(app_id: str, user: str | None, reader_app: str, reader_user: str | None) -> bool:
    """The same app; and a user's token (session, OpenID) only reads that user's answers."""
    return app_id == reader_app and (reader_user is None or reader_user == user)


class AnswerStreams:
    def __init__(
        self,
        *,
        grace_s: float,
        retention_s: float,
        buffer_max_bytes: int,
        memory_max_bytes: int,
        metrics: Metrics | None = None,
        on_drain: OnDrain | None = None,
    ) -> None:
        self.grace_s = grace_s
        self.retention_s = retention_s
        self._buffer_max = buffer_max_bytes
        self._metrics = metrics
        self._on_drain = on_drain
        self._budget = Budget(memory_max_bytes, self._over_budget)
        self._live: dict[str, LiveAnswer] = {}
        self._ended: OrderedDict[str, LiveAnswer | Kept] = OrderedDict()  # oldest end first
        self._fresh: deque[LiveAnswer] = deque()  # ended, not kept as values yet (oldest first)
        self._gone: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self._hosting = False

    @property
    def buffered_bytes(self) -> int:
        return self._budget.used

    @property
    def running(self) -> int:
        return len(self._live)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Accept answers and expire ended ones (a task of the lifespan's group)."""
        self._hosting = True
        try:
            task_status.started()
            while True:
                await anyio.sleep(min(1.0, self.retention_s / 4))
                self._sweep(time.monotonic())
        finally:
            self._hosting = False

    def start(
        self,
        answer: Answer,
        *,
        request_id: str,
        app_id: str,
        user: str | None,
        encode: Encoder,
        encode_error: ErrorEncoder,
        resumable: bool = True,
        failed: GatewayError | None = None,
        observe: EventObserver | None = None,
    ) -> LiveAnswer:
        """Register ``answer`` (opened: ``Answer.open()`` returned); the caller is its first
        reader and runs its producer (``produce``). ``failed``: the answer ended before its
        first event, with this."""
        if not self._hosting:
            raise ShuttingDown(SHUTDOWN_MESSAGE)
        log = AnswerLog(max_bytes=self._buffer_max, budget=self._budget)
        live = LiveAnswer(request_id, app_id, user, log, resumable, anyio.CancelScope())
        live.production = Production(answer, encode, encode_error, failed, observe)
        self._live[request_id] = live
        return live

    async def produce(self, live: LiveAnswer, sink: Sink | None = None) -> None:
        """Run ``live``'s producer to its end, settle and record it, in the caller's task.

        ``sink``: the first reader's client, given the events as the upstream delivers them
        (the ones it delivered together, in one call) until its reader detaches. Cancelled
        from outside (the task's end), the answer is recorded as cut by a shutdown.
        """
        production, live.production = live.production, None
        if production is None:
            raise RuntimeError("produce() runs once per answer")
        log = live.log
        pending: list[bytes] = []  # for the sink: the log may drop events under pressure
        unregister = None if self._on_drain is None else self._on_drain(lambda: _drained(live))
        try:
            try:
                await produce_events(live, production, sink, pending)
            except Exception:  # noqa: BLE001 (a bug: still end, settle and record)
                logger.exception("an answer's producer failed")
                live.stop_error, live.stop_recorded = GatewayError("Internal error."), True
            finally:
                if unregister is not None:
                    unregister()
                if not log.ended:
                    pending.append(stopped(live, production))
            if sink is not None:
                # Before the settle: the client has its answer while the record is written.
                await deliver_pending(sink, pending, last=True)
        finally:
            with anyio.CancelScope(shield=True):
                await production.answer.settle()
            self._retire(live)

    async def abandon(self, live: LiveAnswer) -> None:
        """Its first reader left before its producer started: stop, settle and record it."""
        live.stop(_nobody_reads(), recorded=False)
        await self.produce(live)

    def _retire(self, live: LiveAnswer) -> None:
        self._live.pop(live.request_id, None)
        live.scope = None
        if live.grace is not None:
            live.grace.cancel()
            live.grace = None
        if live.resumable:
            self._ended[live.request_id] = live
            self._fresh.append(live)
        elif live.readers == 0:
            live.log.release()

    def find(self, request_id: str, app_id: str, user: str | None) -> LiveAnswer:
        """The answer this caller may read; NotFound, or StreamExpired after its retention."""
        live = self._live.get(request_id) or self._ended.get(request_id)
        if isinstance(live, tuple):
            live = (
                self._restore(request_id, live) if may_read(*_owner(live), app_id, user) else None
            )
        if live is not None and live.resumable and may_read(live.app_id, live.user, app_id, user):
            if live.log.ended_at is not None and self._expired(live.log.ended_at):
                raise StreamExpired(_expired_message(request_id))
            return live
        owner = self._gone.get(request_id)
        if live is None and owner is not None and may_read(*owner, app_id, user):
            raise StreamExpired(_expired_message(request_id))
        raise NotFound(f"No answer {request_id!r} for this token.")

    def held(self, request_id: str) -> LiveAnswer | tuple[str, str | None] | None:
        """For another replica (the relay, which checks who may read it there): the resumable
        answer this process holds, a kept one restored; or the app and user of one it no
        longer keeps (expired or evicted); None when it never had it."""
        entry = self._live.get(request_id) or self._ended.get(request_id)
        if isinstance(entry, tuple):
            return self._restore(request_id, entry)
        if entry is not None:
            return entry if entry.resumable else None
        return self._gone.get(request_id)

    def _restore(self, request_id: str, kept: Kept) -> LiveAnswer:
        """A kept answer as an object again, for its readers (kept again once they are done)."""
        app_id, user, ended_at, first, blob = kept
        log = AnswerLog.restored(
            first, blob, ended_at=ended_at, max_bytes=self._buffer_max, budget=self._budget
        )
        live = LiveAnswer(request_id, app_id, user, log, True, None, readers=0)
        self._ended[request_id] = live  # in its place: the order is the order of ends
        self._fresh.append(live)
        return live

    def attach(self, live: LiveAnswer, after: int) -> None:
        """A new reader of ``live`` from the event after id ``after``."""
        if not live.log.replayable_from(after):
            raise StreamExpired(
                f"The events after id {after} are no longer kept (the answer outgrew the "
                "replay buffer); start a new request."
            )
        live.readers += 1
        if live.grace is not None:
            live.grace.cancel()
            live.grace = None
        if self._metrics is not None:
            self._metrics.streams_resumed.inc()

    def detach(self, live: LiveAnswer) -> None:
        """A reader left; the last one leaving a running answer starts its grace."""
        live.readers -= 1
        if live.readers > 0:
            return
        if live.log.ended:
            if not live.resumable:
                live.log.release()  # its only reader is done with it
            return
        if not live.resumable or self.grace_s == 0:
            live.stop(_nobody_reads(), recorded=False)
            return
        if self._metrics is not None:
            self._metrics.streams_detached.inc()
        loop = asyncio.get_running_loop()
        live.grace = loop.call_later(self.grace_s, self._grace_over, live)

    def _grace_over(self, live: LiveAnswer) -> None:
        live.grace = None
        if live.readers == 0 and not live.log.ended:
            if self._metrics is not None:
                self._metrics.streams_expired.inc()
            live.stop(_nobody_reads(), recorded=False)

    def cancel(self, live: LiveAnswer) -> None:
        """Stop the answer: every reader gets ``error`` cancelled; recorded as cancelled."""
        if live.log.ended or live.stop_error is not None:
            return
        if self._metrics is not None:
            self._metrics.streams_cancelled.inc()
        live.stop(Cancelled("The answer was cancelled."), recorded=True)

    def _expired(self, ended_at: float, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) - ended_at >= self.retention_s

    def _sweep(self, now: float) -> None:
        fresh, ended = self._fresh, self._ended
        while fresh and now - (fresh[0].log.ended_at or now) >= COMPACT_AFTER_S:
            live = fresh.popleft()
            if live.readers > 0 or ended.get(live.request_id) is not live:
                live.log.compact()  # still read (kept as it is), or forgotten meanwhile
                continue
            ended_at = live.log.ended_at
            assert ended_at is not None
            ended[live.request_id] = (live.app_id, live.user, ended_at, *live.log.kept())
        expired = []
        for request_id, entry in ended.items():
            ended_at = entry[2] if isinstance(entry, tuple) else entry.log.ended_at
            if ended_at is not None and not self._expired(ended_at, now):
                break  # the rest ended later
            if _unread(entry):  # a reader still sending it keeps it until it is done
                expired.append(request_id)
        for request_id in expired:
            self._forget(request_id)
        if self._metrics is not None:
            self._metrics.streams_buffered_bytes.set(self._budget.used)

    def _forget(self, request_id: str) -> None:
        entry = self._ended.pop(request_id)
        if isinstance(entry, tuple):
            self._budget.used -= len(entry[4])  # its events' bytes
        else:
            entry.log.release()
        self._gone[request_id] = _owner(entry)
        while len(self._gone) > TOMBSTONES:
            self._gone.popitem(last=False)

    def _over_budget(self) -> None:
        """The logs hold more than the bound: evict ended answers, oldest first."""
        budget = self._budget
        target = int(budget.limit * LOW_WATER)
        # The oldest that free enough, found without copying the registry (100,000 answers
        # at the default bound: the copy alone stalled the loop for milliseconds).
        excess, victims = budget.used - target, []
        for request_id, ended in self._ended.items():
            if excess <= 0:
                break
            if _unread(ended):
                victims.append(request_id)
                excess -= len(ended[4]) if isinstance(ended, tuple) else ended.log.size
        for request_id in victims:
            self._forget(request_id)
        if self._metrics is not None and victims:
            self._metrics.streams_evicted.inc(len(victims))
        # Only running answers left: they keep following, but lose their oldest events.
        for live in list(self._live.values()):
            if budget.used <= target:
                break
            live.log.trim(0)


def _owner(entry: LiveAnswer | Kept) -> tuple[str, str | None]:
    """The app and user of an ended answer, whatever its form."""
    return (entry[0], entry[1]) if isinstance(entry, tuple) else (entry.app_id, entry.user)


def _unread(entry: LiveAnswer | Kept) -> bool:
    """No reader is sending it (a kept answer has none: a reader restores it first)."""
    return isinstance(entry, tuple) or entry.readers == 0


def _drained(live: LiveAnswer) -> None:
    live.stop(ShuttingDown(SHUTDOWN_MESSAGE), recorded=True)


def _nobody_reads() -> Cancelled:
    return Cancelled("Nobody was reading the answer; it was stopped.")


def _expired_message(request_id: str) -> str:
    return f"The answer {request_id!r} ended too long ago to be read again."
