"""A run as a ChunkStream: read from any task, errors in order, timeouts, cancellation."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import anyio
import pytest

from gateway.core.errors import (
    ContentFlagged,
    GatewayError,
    StorageUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.flows.state import RunContext
from gateway.flows.streams import GraphStream, start_run
from gateway.upstream.types import Chunk
from tests.gateway.flows.doubles import WordModerator, request, user
from tests.support.upstream import ScriptedStream, ScriptedUpstream, chunk

pytestmark = pytest.mark.anyio


def context() -> RunContext:
    return RunContext(
        request=request(user("hi")),
        instructions=[],
        upstream=ScriptedUpstream(),
        moderator=WordModerator(),
        first_token_timeout=5,
        idle_timeout=5,
        token_budget=1000,
    )


async def read_all(stream: GraphStream, timeout: float = 5) -> list[str]:
    texts = []
    while (item := await stream.next_chunk(timeout)) is not None:
        texts.append(item.text)
    return texts


async def test_the_chunks_can_be_read_from_another_task_than_the_first() -> None:
    async def run() -> AsyncIterator[object]:
        for text in ("a", "b", "c", "d"):
            await anyio.sleep(0.01)
            yield chunk(text)
            yield {"not": "a chunk"}  # other custom writes are not forwarded

    async with anyio.create_task_group() as tasks:
        stream = start_run(tasks, run, context())
        first: list[Chunk | None] = []
        rest: list[str] = []

        async def peek() -> None:
            first.append(await stream.next_chunk(5))

        async def drain() -> None:
            rest.extend(await read_all(stream))

        async with anyio.create_task_group() as readers:
            readers.start_soon(peek)
        async with anyio.create_task_group() as readers:
            readers.start_soon(drain)
        await stream.aclose()
    assert first[0] is not None and first[0].text == "a"
    assert rest == ["b", "c", "d"]


async def test_an_error_comes_after_the_chunks_sent_before_it() -> None:
    async def run() -> AsyncIterator[object]:
        yield chunk("a")
        raise ContentFlagged("no")

    async with anyio.create_task_group() as tasks:
        stream = start_run(tasks, run, context())
        assert (await stream.next_chunk(5)) == chunk("a")
        with pytest.raises(ContentFlagged):
            await stream.next_chunk(5)
        assert await stream.next_chunk(5) is None  # ended
        await stream.aclose()


async def test_an_unexpected_exception_becomes_a_gateway_error() -> None:
    async def run() -> AsyncIterator[object]:
        yield chunk("a")
        raise KeyError("bug")

    async with anyio.create_task_group() as tasks:
        stream = start_run(tasks, run, context())
        assert await stream.next_chunk(5) == chunk("a")
        with pytest.raises(GatewayError) as caught:
            await stream.next_chunk(5)
        assert type(caught.value) is GatewayError
        assert caught.value.code == "internal_error"
        await stream.aclose()


async def test_a_failing_checkpoint_database_is_storage_unavailable() -> None:
    async def run() -> AsyncIterator[object]:
        yield chunk("a")
        raise sqlite3.OperationalError("database is locked")

    async with anyio.create_task_group() as tasks:
        stream = start_run(tasks, run, context())
        assert await stream.next_chunk(5) == chunk("a")
        with pytest.raises(StorageUnavailable):
            await stream.next_chunk(5)
        await stream.aclose()


async def test_a_silent_run_times_out_like_a_silent_upstream() -> None:
    async def run() -> AsyncIterator[object]:
        await anyio.sleep(10)
        yield chunk("late")

    async with anyio.create_task_group() as tasks:
        stream = start_run(tasks, run, context())
        with anyio.fail_after(2):
            with pytest.raises(UpstreamTimeout):
                await stream.next_chunk(0.1)
            await stream.aclose()


async def test_aclose_cancels_the_run_and_closes_the_upstream_streams() -> None:
    ctx = context()
    upstream_stream = ScriptedStream(["x"] * 100, delay=0.05)
    cancelled = anyio.Event()

    async def run() -> AsyncIterator[object]:
        ctx.opened.append(upstream_stream)
        try:
            while (item := await upstream_stream.next_chunk(5)) is not None:
                yield item
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    async with anyio.create_task_group() as tasks:
        stream = start_run(tasks, run, ctx)
        assert (await stream.next_chunk(5)) is not None
        with anyio.fail_after(2):
            await stream.aclose()
    assert cancelled.is_set()
    assert upstream_stream.closed
    assert upstream_stream.sent < 100


async def test_a_run_cancelled_from_outside_is_not_a_complete_answer() -> None:
    async def run() -> AsyncIterator[object]:
        yield chunk("a")
        await anyio.sleep(10)
        yield chunk("never")

    async with anyio.create_task_group() as outer:
        async with anyio.create_task_group() as runs:
            stream = start_run(runs, run, context())
            assert (await stream.next_chunk(5)) == chunk("a")
            runs.cancel_scope.cancel()  # the server is stopping
        with pytest.raises(UpstreamError):
            await stream.next_chunk(5)
        await stream.aclose()
        outer.cancel_scope.cancel()


async def test_a_reader_that_goes_away_does_not_block_the_run() -> None:
    async def run() -> AsyncIterator[object]:
        for i in range(1000):  # more than the channel holds
            yield chunk(str(i))

    async with anyio.create_task_group() as tasks:
        stream = start_run(tasks, run, context())
        with anyio.fail_after(2):
            await stream.aclose()
