"""A graph run as a ``ChunkStream``: the run in its own task, its chunks through a channel.

Why a task: ``Answer`` peeks at the first chunk in the request's task and the SSE response
reads the rest from its producer task. A LangGraph ``astream`` iterated from two tasks would
resume its generator frames (and the context variables LangGraph sets in them, such as the
stream writer's config) under a different task each time. So the run is started once, in the
runner's task group (which lives in the server's lifespan), and iterates ``astream`` to the end
in that one task, sending every chunk into a bounded anyio memory channel; any task may read it.

Lifecycle:
- ``next_chunk(timeout)`` waits at most ``timeout`` for the next chunk (the direct path's
  first-token and idle timeouts, applied by ``Answer``), then raises ``UpstreamTimeout``.
- A ``GatewayError`` raised by a node (``ContentFlagged``, an upstream error) ends the run and
  is raised by ``next_chunk``, after the chunks sent before it. Anything else is logged and
  becomes a ``GatewayError`` (the task group must never see it: it would stop the server).
- ``aclose()`` cancels the run (LangGraph cancels the node, nothing is checkpointed), waits for
  it, and closes every upstream stream the nodes opened (shielded), so no token is paid for
  after the client left.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from loguru import logger

from gateway.core.errors import GatewayError, StorageUnavailable, UpstreamError, UpstreamTimeout
from gateway.flows.checkpoints import is_storage_failure
from gateway.flows.state import RunContext
from gateway.upstream.types import Chunk

#: Chunks buffered between the run and its reader before the run waits.
BUFFER = 256

Item = Chunk | GatewayError
Run = Callable[[], AsyncIterator[object]]


def _failure(exc: Exception) -> GatewayError:
    if is_storage_failure(exc):
        logger.bind(error=type(exc).__name__).warning("workflow checkpoint storage failed")
        return StorageUnavailable("The conversation store is unavailable.")
    logger.opt(exception=exc).error("workflow failed")
    return GatewayError("The workflow failed.")


class _RunState:
    """What the run's task and its reader share."""

    __slots__ = ("complete", "finished", "scope")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.finished = anyio.Event()
        #: The graph ran to its end (an error ends it too): the channel's end is the answer's.
        self.complete = False


class GraphStream:
    """The reading end of one run (see the module docstring)."""

    def __init__(self, receive: MemoryObjectReceiveStream[Item], run: _RunState) -> None:
        self._receive = receive
        self._run = run
        self._done = False

    def ready(self) -> bool:
        return self._receive.statistics().current_buffer_used > 0

    async def next_chunk(self, timeout: float) -> Chunk | None:
        if self._done:
            return None
        try:
            try:
                item = self._receive.receive_nowait()  # already there: no timer to set up
            except anyio.WouldBlock:
                with anyio.fail_after(timeout):
                    item = await self._receive.receive()
        except anyio.EndOfStream:
            self._done = True
            if not self._run.complete:  # cancelled from outside (the server is stopping)
                raise UpstreamError(
                    "The workflow stopped before the answer was complete."
                ) from None
            return None
        except TimeoutError:
            raise UpstreamTimeout(f"The workflow sent nothing for {timeout:g} s.") from None
        if isinstance(item, GatewayError):
            self._done = True
            raise item
        return item

    async def aclose(self) -> None:
        self._done = True
        self._run.scope.cancel()
        await self._run.finished.wait()
        self._receive.close()


async def _forward(run: Run, send: MemoryObjectSendStream[Item]) -> GatewayError | None:
    """Send every chunk of the run; the error that ended it, if any."""
    parts = run()
    try:
        async for part in parts:
            if isinstance(part, Chunk):
                await send.send(part)
    except GatewayError as error:
        return error
    except anyio.BrokenResourceError:
        raise
    except Exception as exc:  # noqa: BLE001 (the boundary: the run must not crash the group)
        return _failure(exc)
    finally:
        if isinstance(parts, AsyncGenerator):
            # Stopped at a yield (cancelled while sending): LangGraph cancels its node tasks.
            with anyio.CancelScope(shield=True):
                await parts.aclose()
    return None


async def _pump(
    run: Run, context: RunContext, send: MemoryObjectSendStream[Item], state: _RunState
) -> None:
    try:
        with state.scope, send:
            error = await _forward(run, send)
            state.complete = True
            if error is not None:
                await send.send(error)
    except anyio.BrokenResourceError:
        pass  # the reader closed its end: nobody is listening any more
    finally:
        with anyio.CancelScope(shield=True):
            for stream in context.opened:
                await stream.aclose()
        state.finished.set()


def start_run(tasks: TaskGroup, run: Run, context: RunContext) -> GraphStream:
    """Start ``run`` (a graph's ``astream`` in custom mode) in ``tasks``; its chunk stream."""
    send, receive = anyio.create_memory_object_stream[Item](BUFFER)
    state = _RunState()
    tasks.start_soon(_pump, run, context, send, state)
    return GraphStream(receive, state)
