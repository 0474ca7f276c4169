"""A TCP relay run in the test's event loop, that a test can cut and bring back: ``stop()``
closes the listener and every relayed connection at once (what a database restart looks like
to its clients), ``start()`` listens again on the same port."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskGroup, TaskStatus


@dataclass
class TcpProxy:
    """127.0.0.1:``port`` -> ``target`` while it runs, in ``tasks``."""

    tasks: TaskGroup
    target: tuple[str, int]
    port: int = 0  # 0 until started: a free port, kept across restarts
    scope: anyio.CancelScope | None = None

    async def start(self) -> None:
        """Listen (again) on ``port``."""
        self.port, self.scope = await self.tasks.start(_serve, self.port, self.target)

    def stop(self) -> None:
        """Close the listener and every relayed connection at once."""
        assert self.scope is not None, "not started"
        self.scope.cancel()


async def _pipe(source: SocketStream, sink: SocketStream, done: anyio.CancelScope) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        done.cancel()


async def _serve(
    port: int,
    target: tuple[str, int],
    *,
    task_status: TaskStatus[tuple[int, anyio.CancelScope]],
) -> None:
    async def relay(client: SocketStream) -> None:
        async with client:
            try:
                upstream = await anyio.connect_tcp(*target)
            except OSError:
                return
            async with upstream, anyio.create_task_group() as pipes:
                pipes.start_soon(_pipe, client, upstream, pipes.cancel_scope)
                pipes.start_soon(_pipe, upstream, client, pipes.cancel_scope)

    with anyio.CancelScope() as scope:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
        async with listener:
            task_status.started((listener.extra(SocketAttribute.local_port), scope))
            await listener.serve(relay)


async def start_tcp_proxy(
    tasks: TaskGroup, target_port: int, *, target_host: str = "127.0.0.1"
) -> TcpProxy:
    """A relay in ``tasks`` to ``target_host``:``target_port``, listening on a free port."""
    proxy = TcpProxy(tasks, (target_host, target_port))
    await proxy.start()
    return proxy
