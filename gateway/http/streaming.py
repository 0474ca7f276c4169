"""SSE responses of answers, with pings and disconnect detection.

An answer is produced by ``gateway.services.answer_streams`` (one producer per answer, which
settles and records it). The response of the request that started it (``AnswerResponse``)
runs that producer in its own task and is written to by it; any later reader
(``AnswerReader``: a resume) follows the answer's log. Starlette's StreamingResponse only
notices a disconnect when a send fails, so a reader of a silent answer would never learn that
its client left. Here one plain task per request (``ClientWatch``) waits for
``http.disconnect`` and then either cancels what the request is doing (``ClientWatch.run``:
the work before the response starts, raising ``ClientDisconnected``; a reader following a
log) or, for the producing response, detaches its reader: the answer goes on for the detach
grace while the registry decides. Pings come from a timer, not a task.

Why not task groups: two per answer (four tasks) cost more CPU than the rest of the stream's
bookkeeping; a cancel scope cancelled from a callback gives the same structured cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TypeVar

import anyio
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.http.middleware import BODY_SEND
from gateway.http.sse import PING
from gateway.services.answer_producer import LiveAnswer
from gateway.services.answer_streams import AnswerStreams

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before the response started; the work was cancelled."""


class ClientWatch:
    """Waits for the client's ``http.disconnect`` in one task and cancels the guarded scope.

    Start it after the request body was read: the only message left to receive is the
    disconnect. ``close()`` it when the request ends.
    """

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        self._scope: anyio.CancelScope | None = None
        self._on_gone: Callable[[], None] | None = None
        self._task = asyncio.get_running_loop().create_task(self._listen(receive))

    async def _listen(self, receive: Receive) -> None:
        # A broken receive is a client that is gone, too.
        with suppress(Exception):
            while (await receive())["type"] != "http.disconnect":
                pass
        self.gone = True
        if self._scope is not None:
            self._scope.cancel()
        if self._on_gone is not None:
            self._on_gone()

    def on_gone(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the client leaves (at once if it has left), rather than
        cancel anything."""
        self._on_gone = callback
        if self.gone:
            callback()

    @contextmanager
    def guard(self) -> Iterator[anyio.CancelScope]:
        """A cancel scope that the client's leaving cancels (already cancelled if it left)."""
        with anyio.CancelScope() as scope:
            previous, self._scope = self._scope, scope
            if self.gone:
                scope.cancel()
            try:
                yield scope
            finally:
                self._scope = previous

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """``await work()``; cancelled at once if the client leaves (``ClientDisconnected``)."""
        with self.guard():
            return await work()
        raise ClientDisconnected  # reached only when the scope was cancelled

    def close(self) -> None:
        self._task.cancel()


class SSEResponse(Response):
    """An event stream: pings while idle, the client's leaving cancels ``_write``."""

    media_type = "text/event-stream"

    def __init__(
        self,
        *,
        ping_interval: float,
        headers: Mapping[str, str] | None = None,
        watch: ClientWatch | None = None,
    ) -> None:
        self._ping_interval = ping_interval
        self._watch = watch
        self._open = False
        self._pinger: asyncio.TimerHandle | None = None
        self._ping_task: asyncio.Task[None] | None = None
        self._last_sent = 0.0
        self.status_code = 200
        self.background = None
        self.init_headers({**SSE_HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = self._watch or ClientWatch(receive)
        loop = asyncio.get_running_loop()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            # The start went through every wrapper; the body's many small messages skip the
            # ones that pass them on untouched (three coroutine calls per event).
            send = scope.get(BODY_SEND, send)
            self._pinger = loop.call_later(self._ping_interval, self._ping_due, loop, send)
            self._open = True
            self._last_sent = loop.time()
            await self._follow(watch, send, loop)
        except (OSError, ClientDisconnect):
            pass  # the client went away while we were sending
        finally:
            self._open = False
            if self._pinger is not None:
                self._pinger.cancel()
            watch.close()
            with anyio.CancelScope(shield=True):
                await self._close()

    async def _follow(
        self, watch: ClientWatch, send: Send, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Write the body; the client's leaving cancels it."""
        with watch.guard():
            await self._write(send, loop)

    async def _write(self, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        """The stream is over, whatever ended it."""

    async def _send(self, send: Send, loop: asyncio.AbstractEventLoop, data: bytes) -> None:
        self._last_sent = loop.time()
        await send({"type": "http.response.body", "body": data, "more_body": True})

    async def _end(self, send: Send, last: bytes) -> None:
        self._open = False
        await send({"type": "http.response.body", "body": last, "more_body": False})

    def _ping_due(self, loop: asyncio.AbstractEventLoop, send: Send) -> None:
        """Timer: a ``: ping`` after ``ping_interval`` without a write, then re-armed."""
        if not self._open:
            return
        idle = loop.time() - self._last_sent
        if idle >= self._ping_interval:
            self._last_sent = loop.time()
            # Kept: the loop holds tasks only weakly, a dropped one may vanish mid-send.
            self._ping_task = loop.create_task(self._ping(send))
            idle = 0.0
        self._pinger = loop.call_later(self._ping_interval - idle, self._ping_due, loop, send)

    async def _ping(self, send: Send) -> None:
        if not self._open:
            return
        message: Message = {"type": "http.response.body", "body": PING, "more_body": True}
        # The stream ended or the client left meanwhile: the main task notices that too.
        with suppress(OSError, ClientDisconnect, RuntimeError):
            await send(message)


class EventStream(SSEResponse):
    """The events of an async iterator (closed when the stream ends)."""

    def __init__(self, body: AsyncGenerator[bytes, None], *, ping_interval: float) -> None:
        super().__init__(ping_interval=ping_interval)
        self._body = body

    async def _write(self, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        async for data in self._body:
            await self._send(send, loop, data)
        await self._end(send, b"")

    async def _close(self) -> None:
        await self._body.aclose()  # a generator stopped at a yield runs its cleanup now


class AnswerReader(SSEResponse):
    """Follows ``live``'s log from the event after id ``after`` (the caller attached it), and
    detaches when it ends, whatever ended it."""

    def __init__(
        self, streams: AnswerStreams, live: LiveAnswer, *, ping_interval: float, after: int = 0
    ) -> None:
        super().__init__(ping_interval=ping_interval)
        self._streams = streams
        self._live = live
        self._after = after

    async def _close(self) -> None:
        self._streams.detach(self._live)

    async def _write(self, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        log = self._live.log
        position = self._after
        while True:
            events = log.since(position)
            if events is None:  # a reader slower than the replay buffer: it cannot go on
                await self._end(send, b"")
                return
            if events:
                position += len(events)
                # Events appended together leave together: one write.
                data = events[0] if len(events) == 1 else b"".join(events)
                if log.ended and position >= log.last_id:
                    await self._end(send, data)  # the last event goes with the body's end
                    return
                await self._send(send, loop, data)
            elif log.ended:
                await self._end(send, b"")
                return
            else:
                await log.wait()


class AnswerResponse(SSEResponse):
    """The response of the request that started ``live``: it runs the answer's producer, which
    writes to this client itself. When the client leaves, the reader detaches and the producer
    goes on (the registry stops it after the grace, or at once without one)."""

    def __init__(
        self,
        streams: AnswerStreams,
        live: LiveAnswer,
        *,
        ping_interval: float,
        headers: Mapping[str, str] | None = None,
        watch: ClientWatch | None = None,
    ) -> None:
        super().__init__(ping_interval=ping_interval, headers=headers, watch=watch)
        self._streams = streams
        self._live = live
        self._attached = True
        self._client_send: Send | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _follow(
        self, watch: ClientWatch, send: Send, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._client_send, self._loop = send, loop
        watch.on_gone(self._leave)
        await self._streams.produce(self._live, self)

    async def deliver(self, data: bytes, *, last: bool) -> None:
        """The producer's events (``Sink``): sent while the client is there."""
        send, loop = self._client_send, self._loop
        if not self._attached or send is None or loop is None:
            return
        try:
            if last:
                await self._end(send, data)
            else:  # ``_send`` inlined: this runs once per event of a paced answer
                self._last_sent = loop.time()
                await send({"type": "http.response.body", "body": data, "more_body": True})
        except (OSError, ClientDisconnect):
            self._leave()

    def _leave(self) -> None:
        if self._attached:
            self._attached = self._open = False
            self._streams.detach(self._live)

    async def _close(self) -> None:
        self._leave()
        if self._live.production is not None:  # the response never started: nobody reads
            await self._streams.abandon(self._live)
