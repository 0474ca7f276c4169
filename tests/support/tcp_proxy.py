"""A TCP proxy a test controls: it forwards bytes both ways until the test cuts the network.

``cut()`` closes every connection open through it at once (both ends), as a dropped Wi-Fi or a
train entering a tunnel would: the client sees its response body end mid-stream, the server
sees its client go away. New connections keep working after a cut.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskGroup

CHUNK = 65_536


class TcpProxy:
    def __init__(self, tasks: TaskGroup, target_host: str, target_port: int) -> None:
        self._tasks = tasks
        self._target = (target_host, target_port)
        self._open: set[anyio.CancelScope] = set()
        self.port = 0
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Close every connection now open through the proxy; how many there were."""
        scopes, self._open = self._open, set()
        for scope in scopes:
            scope.cancel()
        return len(scopes)

    async def handle(self, client: SocketStream) -> None:
        self.connections += 1
        with anyio.CancelScope() as scope:
            self._open.add(scope)
            async with (
                client,
                await anyio.connect_tcp(*self._target) as server,
                anyio.create_task_group() as pipes,
            ):
                pipes.start_soon(_pipe, client, server, pipes)
                pipes.start_soon(_pipe, server, client, pipes)
        self._open.discard(scope)


async def _pipe(source: SocketStream, sink: SocketStream, pipes: TaskGroup) -> None:
    with suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        while True:
            await sink.send(await source.receive(CHUNK))
    pipes.cancel_scope.cancel()  # one side closed: close the other one too


@asynccontextmanager
async def tcp_proxy(target_url: str) -> AsyncIterator[TcpProxy]:
    """A proxy on a free local port in front of ``http://host:port`` (the test's servers)."""
    host, _, port = target_url.removeprefix("http://").partition(":")
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    try:
        async with anyio.create_task_group() as tasks:
            proxy = TcpProxy(tasks, host, int(port))
            proxy.port = listener.extra(SocketAttribute.local_port)
            tasks.start_soon(listener.serve, proxy.handle)
            try:
                yield proxy
            finally:
                proxy.cut()
                tasks.cancel_scope.cancel()
    finally:
        await listener.aclose()  # after serve() stopped: it would fail on a closed listener
