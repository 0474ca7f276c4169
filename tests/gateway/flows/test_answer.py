"""The answer node: what it sends upstream, and that it writes every chunk as it is read."""

from __future__ import annotations

import time

import pytest

from gateway.flows.answer import stream_answer, upstream_messages
from gateway.flows.state import RunContext, ThreadState
from gateway.upstream.tokenizer import count_messages
from tests.gateway.flows.doubles import WordModerator, assistant, request, system, user
from tests.support.upstream import ScriptedUpstream

pytestmark = pytest.mark.anyio


def context(upstream: ScriptedUpstream, *, budget: int = 1000, timeout: float = 5) -> RunContext:
    return RunContext(
        request=request(system("rules"), user("new")),
        instructions=[system("rules")],
        upstream=upstream,
        moderator=WordModerator(),
        first_token_timeout=timeout,
        idle_timeout=timeout,
        token_budget=budget,
    )


def test_instructions_then_the_kept_history_then_the_new_turn() -> None:
    history = [user("old " * 50), assistant("a " * 50), user("recent"), assistant("b")]
    state: ThreadState = {"messages": history, "turn": [user("new")]}
    ctx = context(ScriptedUpstream())
    assert upstream_messages(state, ctx) == [system("rules"), *history, user("new")]
    # A budget that holds only the newest turn besides the request.
    ctx.token_budget = count_messages([system("rules"), *history[2:], user("new")], "gpt-4o-mini")
    assert upstream_messages(state, ctx) == [system("rules"), *history[2:], user("new")]


async def test_every_chunk_is_written_when_it_is_read() -> None:
    upstream = ScriptedUpstream(texts=["a", "b", "c"], delay=0.05)
    written: list[tuple[float, object]] = []
    started = time.perf_counter()
    text = await stream_answer(
        request(user("q")), context(upstream), lambda c: written.append((time.perf_counter(), c))
    )
    assert text == "abc"
    assert len(written) == 4  # three content chunks, then the usage chunk
    assert written[0][0] - started < 0.09  # the first one, long before the last
    assert written[2][0] - written[0][0] >= 0.08
    assert upstream.streams[0].closed
    assert upstream.requests == [request(user("q"))]


async def test_the_first_token_and_idle_timeouts_are_those_of_the_direct_path() -> None:
    upstream = ScriptedUpstream(texts=["a", "b"])
    ctx = context(upstream)
    ctx.first_token_timeout, ctx.idle_timeout = 7.0, 3.0
    await stream_answer(request(user("q")), ctx, lambda _: None)
    # Until the first content chunk, then between chunks (usage chunk and the end included).
    assert upstream.streams[0].timeouts == [7.0, 3.0, 3.0, 3.0]
