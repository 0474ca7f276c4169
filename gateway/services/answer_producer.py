"""One answer while it is produced: what its producer needs, and the producer's loop.

The producer (run by ``gateway.services.answer_streams.AnswerStreams.produce``) reads the
upstream through ``Answer.events()``, encodes each event with its id, and hands the events the
upstream delivered together to the answer's log and to its first reader's client (a ``Sink``)
in one batch: with one reader, an event goes from the upstream read to the socket with no task
or queue between them. Every stop ends the log with an ``error`` event (``stopped``), so every
reader learns how the answer ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

from gateway.core.errors import GatewayError, ShuttingDown
from gateway.services.answer_log import AnswerLog
from gateway.services.ask import Answer, AnswerEvent

#: Encodes one event of the answer with its id; None: nothing to send (e.g. an empty delta).
Encoder = Callable[[AnswerEvent, int], bytes | None]
ErrorEncoder = Callable[[GatewayError, int], bytes]


class EventObserver(Protocol):
    """Sees every event of an answer before it is encoded (the answer cache keeps the text)."""

    async def see(self, event: AnswerEvent) -> None: ...


class Sink(Protocol):
    """The client of the request that started the answer, written to by its producer."""

    async def deliver(self, data: bytes, *, last: bool) -> None:
        """Send ``data`` (``last``: the answer's last events); never raises: a client that is
        gone is the sink's business (it detaches its reader)."""


@dataclass(frozen=True, slots=True)
class Production:
    """What the producer needs, from ``start`` to ``produce``."""

    answer: Answer
    encode: Encoder
    encode_error: ErrorEncoder
    failed: GatewayError | None
    observe: EventObserver | None


SHUTDOWN_MESSAGE = "The gateway is restarting; the answer was cut. Retry it."


@dataclass(eq=False, slots=True)
class LiveAnswer:
    """An answer in the registry: whose it is, its log, its readers, how it was stopped."""

    request_id: str
    app_id: str
    user: str | None
    log: AnswerLog
    resumable: bool
    #: The producer's; dropped when it is done (an ended answer kept for resumes holds only
    #: its log, not the request's task and scopes).
    scope: anyio.CancelScope | None
    readers: int = 1  # the response of the request that started it
    #: Why it was stopped (the event every reader gets), and whether the record says so.
    stop_error: GatewayError | None = None
    stop_recorded: bool = False
    grace: asyncio.TimerHandle | None = None
    #: Until ``produce`` takes it.
    production: Production | None = None

    def stop(self, error: GatewayError, *, recorded: bool) -> None:
        if self.log.ended or self.stop_error is not None:
            return
        self.stop_error, self.stop_recorded = error, recorded
        if self.scope is not None:
            self.scope.cancel()


async def produce_events(
    live: LiveAnswer, production: Production, sink: Sink | None, pending: list[bytes]
) -> None:
    """The answer's events into its log, to its last one, and to the sink as they come (its
    last ones are left in ``pending``: they leave with the end of the response)."""
    log, encode = live.log, production.encode
    if production.failed is not None:
        pending.append(_add_last(log, production.encode_error(production.failed, log.next_id)))
        return
    answer, observe = production.answer, production.observe
    more_ready, finished = answer.more_ready, answer.finished
    # The events the upstream delivered together, not in the log yet: they join it (and go to
    # the sink) in one batch, before the producer next waits for the upstream. Per event, the
    # loop only encodes and collects; the log's accounting runs once per batch.
    batch: list[bytes] = []
    event_id = log.next_id
    assert live.scope is not None
    try:
        with live.scope:
            async for event in answer.events():
                if observe is not None:
                    await observe.see(event)
                data = encode(event, event_id)
                if data is not None:
                    batch.append(data)
                    event_id += 1
                if not batch or more_ready():
                    continue
                if sink is None or finished():  # the last events leave with the response's end
                    _log_batch(log, batch, sink, pending)
                else:
                    log.extend(batch)
                    data = batch[0] if len(batch) == 1 else b"".join(batch)
                    batch.clear()
                    await sink.deliver(data, last=False)
            _log_batch(log, batch, sink, pending)
            log.end()
    finally:
        _log_batch(log, batch, sink, pending)  # stopped mid-batch: what was read is kept


def _log_batch(log: AnswerLog, batch: list[bytes], sink: Sink | None, pending: list[bytes]) -> None:
    """``batch`` into the log, and into ``pending`` for the sink to take with the end."""
    if batch:
        log.extend(batch)
        if sink is not None:
            pending.extend(batch)
        batch.clear()


def stopped(live: LiveAnswer, production: Production) -> bytes:
    """End the log of an answer stopped before its last event; that event (an ``error``)."""
    if live.stop_error is None:  # cancelled from outside: the process is ending
        live.stop_error, live.stop_recorded = ShuttingDown(SHUTDOWN_MESSAGE), True
    if live.stop_recorded:
        production.answer.fail(live.stop_error)
    return _add_last(live.log, production.encode_error(live.stop_error, live.log.next_id))


def _add_last(log: AnswerLog, data: bytes) -> bytes:
    log.append(data)
    log.end()
    return data


async def deliver_pending(sink: Sink | None, pending: list[bytes], *, last: bool) -> None:
    """Give ``sink`` the events not given yet, in one call."""
    if sink is not None:
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        await sink.deliver(data, last=last)
