"""An SSE response with a lifecycle: pings, disconnect detection and a shielded settle.

Starlette's StreamingResponse only notices a disconnect when a send fails, so a silent
upstream would keep running (and billing) after the browser left. Here one plain task per
request (``ClientWatch``) waits for ``http.disconnect`` and cancels whatever the request is
doing at that moment: the work before the response starts (``ClientWatch.run``: the peek, or a
whole non-streamed answer, raising ``ClientDisconnected``) or the stream itself. The stream is
written by the request's own task, event by event, with no hop through a channel: pings come
from a timer, the shutdown's deadline from a callback, and both only cancel or nudge. Whatever
ends the stream, ``settle`` runs shielded.

Why not task groups: two per answer (four tasks) cost more CPU than the rest of the stream's
bookkeeping; a cancel scope cancelled from a callback gives the same structured cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TypeVar

import anyio
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.http.middleware import BODY_SEND
from gateway.http.shutdown import Drain
from gateway.http.sse import PING

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
        self._task = asyncio.get_running_loop().create_task(self._listen(receive))

    async def _listen(self, receive: Receive) -> None:
        # A broken receive is a client that is gone, too.
        with suppress(Exception):
            while (await receive())["type"] != "http.disconnect":
                pass
        self.gone = True
        if self._scope is not None:
            self._scope.cancel()

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
    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncIterator[bytes],
        *,
        settle: Callable[[], Awaitable[None]],
        ping_interval: float,
        headers: Mapping[str, str] | None = None,
        drain: Drain | None = None,
        on_drain: Callable[[], bytes] | None = None,
        watch: ClientWatch | None = None,
        more_ready: Callable[[], bool] | None = None,
        finished: Callable[[], bool] | None = None,
    ) -> None:
        self._body = body
        self._settle = settle
        self._ping_interval = ping_interval
        self._drain = drain
        self._on_drain = on_drain
        self._watch = watch
        #: True when the next event is already buffered: it joins this one in one write.
        self._more_ready = more_ready
        #: True once the body has produced its final event: it goes out with the body's end.
        self._finished = finished
        self._drained = False
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
        stop_on_drain: Callable[[], None] | None = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            # The start went through every wrapper; the body's many small messages skip the
            # ones that pass them on untouched (three coroutine calls per event).
            send = scope.get(BODY_SEND, send)
            self._pinger = loop.call_later(self._ping_interval, self._ping_due, loop, send)
            self._open = True
            self._last_sent = loop.time()
            with watch.guard() as guarded:
                if self._drain is not None and self._on_drain is not None:
                    stop_on_drain = self._drain.on_due(lambda: self._stop_drained(guarded))
                await self._write(send, loop)
            if self._drained and self._on_drain is not None:
                with anyio.CancelScope(shield=True):
                    await self._end(send, self._on_drain())
        except (OSError, ClientDisconnect):
            pass  # the client went away while we were sending
        finally:
            self._open = False
            if self._pinger is not None:
                self._pinger.cancel()
            if stop_on_drain is not None:
                stop_on_drain()
            watch.close()
            with anyio.CancelScope(shield=True):
                close = getattr(self._body, "aclose", None)
                if close is not None:
                    await close()  # a generator stopped at a yield runs its cleanup now
                await self._settle()

    async def _write(self, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        more_ready, finished = self._more_ready, self._finished
        pending: list[bytes] = []
        async for data in self._body:
            if finished is not None and finished():
                break  # the final event: sent with the end of the body, in one write
            if more_ready is not None and more_ready():
                # Events the upstream delivered together leave together: one syscall.
                pending.append(data)
                continue
            if pending:
                pending.append(data)
                data = b"".join(pending)
                pending.clear()
            self._last_sent = loop.time()
            await send({"type": "http.response.body", "body": data, "more_body": True})
        else:
            data = b""
        pending.append(data)
        await self._end(send, b"".join(pending))

    async def _end(self, send: Send, last: bytes) -> None:
        self._open = False
        await send({"type": "http.response.body", "body": last, "more_body": False})

    def _stop_drained(self, scope: anyio.CancelScope) -> None:
        self._drained = True
        scope.cancel()

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
