"""An SSE response with a lifecycle: pings, disconnect detection and a shielded settle.

Starlette's StreamingResponse only notices a disconnect when a send fails, so a silent
upstream would keep running (and billing) after the browser left. Here three things run in
one task group: the producer (reads the answer, encodes events), the writer (sends, and sends
``: ping`` when nothing came for ``ping_interval``), and a listener for ``http.disconnect``
that cancels the other two at once. Whatever ends the stream, ``settle`` runs shielded.

Before the response starts (the peek, or a whole non-streamed answer) nothing is being sent,
so nothing would notice a client that gives up: ``unless_disconnected`` runs that work with the
same listener and raises ``ClientDisconnected`` once it cancelled it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.http.shutdown import Drain
from gateway.http.sse import PING

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before the response started; the work was cancelled."""


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(receive: Receive, work: Callable[[], Awaitable[T]]) -> T:
    """``await work()``, cancelled at once if the client disconnects (``ClientDisconnected``).

    Call it after the request body was read: the only message left to receive is the disconnect.
    """
    results: list[T] = []
    errors: list[Exception] = []

    async def run(scope: anyio.CancelScope) -> None:
        try:
            results.append(await work())
        except Exception as exc:  # noqa: BLE001 (re-raised below, outside the task group)
            errors.append(exc)
        finally:
            scope.cancel()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run, tasks.cancel_scope)
        await _wait_for_disconnect(receive)
        tasks.cancel_scope.cancel()
    if errors:
        raise errors[0]
    if not results:
        raise ClientDisconnected
    return results[0]


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
    ) -> None:
        self._body = body
        self._settle = settle
        self._ping_interval = ping_interval
        self._drain = drain
        self._on_drain = on_drain
        self._drained = False
        self.status_code = 200
        self.background = None
        self.init_headers({**SSE_HEADERS, **(headers or {})})

    async def __call__(self, _scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            send_chunks, receive_chunks = anyio.create_memory_object_stream[bytes](64)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._produce, send_chunks)
                tasks.start_soon(self._listen_for_disconnect, receive, tasks.cancel_scope)
                if self._drain is not None and self._on_drain is not None:
                    tasks.start_soon(self._end_when_drained, tasks.cancel_scope)
                await self._write(receive_chunks, send)
                tasks.cancel_scope.cancel()
            if self._drained and self._on_drain is not None:
                with anyio.CancelScope(shield=True):
                    final = self._on_drain()
                    await send({"type": "http.response.body", "body": final, "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        except* (OSError, ClientDisconnect):
            pass  # the client went away while we were sending (grouped by the task group)
        finally:
            with anyio.CancelScope(shield=True):
                await self._settle()

    async def _produce(self, chunks: MemoryObjectSendStream[bytes]) -> None:
        async with chunks:
            async for data in self._body:
                # No yield to the loop while there is room: events the upstream delivered
                # together stay together, and the writer sends them in one write.
                try:
                    chunks.send_nowait(data)
                except anyio.WouldBlock:
                    await chunks.send(data)

    async def _write(self, chunks: MemoryObjectReceiveStream[bytes], send: Send) -> None:
        ended = False
        async with chunks:
            while not ended:
                data: bytes | None = None
                with anyio.move_on_after(self._ping_interval):
                    try:
                        data = await chunks.receive()
                    except anyio.EndOfStream:
                        break
                if data is None:
                    body = PING
                else:
                    # Whatever else is already waiting goes out in the same write: under load
                    # that is one syscall for several events instead of one each.
                    parts = [data]
                    while True:
                        try:
                            parts.append(chunks.receive_nowait())
                        except anyio.WouldBlock:
                            break
                        except anyio.EndOfStream:
                            ended = True
                            break
                    body = parts[0] if len(parts) == 1 else b"".join(parts)
                await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _end_when_drained(self, scope: anyio.CancelScope) -> None:
        assert self._drain is not None
        await self._drain.wait_until_due()
        self._drained = True
        scope.cancel()

    @staticmethod
    async def _listen_for_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return
