"""A TCP proxy a test controls, run in the test's event loop: it forwards bytes both ways until
the test cuts the network.

``cut()`` closes every connection open through it at once (both ends), as a dropped Wi-Fi or a
train entering a tunnel would: the client sees its response body end mid-stream, the server
sees its client go away; new connections keep working. ``stop()`` also closes the listener
(what a database restart looks like to its clients) and ``start()`` listens again on the same
port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskGroup, TaskStatus

CHUNK = 65_536


class TcpProxy:
    """127.0.0.1:``port`` -> ``target_host``:``target_port`` while it runs, in ``tasks``."""

    def __init__(self, tasks: TaskGroup, target_host: str, target_port: int) -> None:
        self._tasks = tasks
        self._target = (target_host, target_port)
        self._open: set[anyio.CancelScope] = set()
        self._listening: anyio.CancelScope | None = None
        self.port = 0  # 0 until started: a free port, kept across restarts
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (again) on ``port``."""
        self._listening = await self._tasks.start(self._serve)

    def stop(self) -> None:
        """Close the listener and every connection open through the proxy at once."""
        assert self._listening is not None, "not started"
        self._listening.cancel()
        self.cut()

    def cut(self) -> int:
        """Close every connection now open through the proxy; how many there were."""
        scopes, self._open = self._open, set()
        for scope in scopes:
            scope.cancel()
        return len(scopes)

    async def _serve(self, *, task_status: TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
            async with listener:
                self.port = listener.extra(SocketAttribute.local_port)
                task_status.started(scope)
                await listener.serve(self._handle)

    async def _handle(self, client: SocketStream) -> None:
        self.connections += 1
        with anyio.CancelScope() as scope:
            self._open.add(scope)
            async with client:
                try:
                    server = await anyio.connect_tcp(*self._target)
                except OSError:
                    return
                async with server, anyio.create_task_group() as pipes:
                    pipes.start_soon(_pipe, client, server, pipes)
                    pipes.start_soon(_pipe, server, client, pipes)
        self._open.discard(scope)


async def _pipe(source: SocketStream, sink: SocketStream, pipes: TaskGroup) -> None:
    with suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        while True:
            await sink.send(await source.receive(CHUNK))
    pipes.cancel_scope.cancel()  # one side closed: close the other one too


async def start_tcp_proxy(
    tasks: TaskGroup, target_port: int, *, target_host: str = "127.0.0.1"
) -> TcpProxy:
    """A proxy in ``tasks`` to ``target_host``:``target_port``, listening on a free port."""
    proxy = TcpProxy(tasks, target_host, target_port)
    await proxy.start()
    return proxy


@asynccontextmanager
async def tcp_proxy(target_url: str) -> AsyncIterator[TcpProxy]:
    """A proxy on a free local port in front of ``http://host:port`` (the test's servers)."""
    host, _, port = target_url.removeprefix("http://").partition(":")
    async with anyio.create_task_group() as tasks:
        proxy = await start_tcp_proxy(tasks, int(port), target_host=host)
        try:
            yield proxy
        finally:
            proxy.stop()
            tasks.cancel_scope.cancel()
