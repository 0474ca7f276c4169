"""The runner in process: dispatch by name, threads per app, cancellation, the thread store."""

from __future__ import annotations

import time

import anyio
import pytest

from gateway.core import validation
from gateway.core.errors import ConfigurationError, UpstreamError
from gateway.flows.history import token_counts
from gateway.flows.runner import DEFINITIONS, thread_id
from tests.gateway.flows.conftest import InProcess
from tests.gateway.flows.doubles import assistant, request, system, user

pytestmark = pytest.mark.anyio


def test_every_workflow_an_app_can_name_is_defined() -> None:
    assert set(validation.WORKFLOWS) == {"direct", *DEFINITIONS}


def test_thread_ids_are_scoped_to_the_app() -> None:
    assert thread_id("app_a", "c1") != thread_id("app_b", "c1")
    assert thread_id("app_a", "c1").startswith("app_a:")


async def test_an_unknown_workflow_is_a_configuration_error(in_process: InProcess) -> None:
    with pytest.raises(ConfigurationError):
        await in_process.runner.open_stream(
            "nope", request(user("hi")), app_id="app_1", conversation_id=None
        )


async def test_chunks_stream_through_the_graph_as_they_are_generated(
    in_process: InProcess,
) -> None:
    in_process.upstream.texts = [f"t{i} " for i in range(10)]
    in_process.upstream.delay = 0.03
    stream = await in_process.runner.open_stream(
        "conversation", request(user("count")), app_id="app_1", conversation_id="c1"
    )
    arrivals: list[float] = []

    async def read(count: int | None) -> None:
        while count is None or count > 0:
            item = await stream.next_chunk(5)
            if item is None:
                return
            if item.text:
                arrivals.append(time.perf_counter())
            count = None if count is None else count - 1

    # The first chunk is read in one task (the request's peek), the rest in another.
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read, 1)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read, None)
    await stream.aclose()
    assert len(arrivals) == 10
    # Buffered by the graph, they would all arrive at the end, at once.
    assert arrivals[-1] - arrivals[0] >= 0.6 * 9 * 0.03


async def test_a_thread_continues_and_the_system_prompt_is_never_saved(
    in_process: InProcess,
) -> None:
    runner, upstream = in_process.runner, in_process.upstream
    await in_process.answer("conversation", system("Be brief."), user("first"))
    await in_process.answer("conversation", system("Be brief."), user("second"))
    assert upstream.requests[1].messages == [
        system("Be brief."),
        user("first"),
        assistant("one two three "),
        user("second"),
    ]
    assert await runner.read_thread(app_id="app_1", conversation_id="c1") == [
        user("first"),
        assistant("one two three "),
        user("second"),
        assistant("one two three "),
    ]


async def test_each_saved_message_has_its_token_count(in_process: InProcess) -> None:
    await in_process.answer("conversation", user("first"))
    await in_process.answer("conversation", user("second"))
    graph = in_process.runner._graphs["conversation"].threaded
    assert graph is not None
    state = await graph.aget_state({"configurable": {"thread_id": thread_id("app_1", "c1")}})
    messages, tokens = state.values["messages"], state.values["tokens"]
    assert tokens == token_counts(messages, "gpt-4o-mini")
    assert state.values["turn"] == []


async def test_the_same_conversation_id_in_two_apps_is_two_threads(in_process: InProcess) -> None:
    runner, upstream = in_process.runner, in_process.upstream
    await in_process.answer("conversation", user("from a"), app_id="app_a")
    await in_process.answer("conversation", user("from b"), app_id="app_b")
    assert upstream.requests[1].messages == [user("from b")]
    thread_b = await runner.read_thread(app_id="app_b", conversation_id="c1")
    assert thread_b == [user("from b"), assistant("one two three ")]
    assert await runner.read_thread(app_id="app_c", conversation_id="c1") is None


async def test_delete_removes_the_thread_of_that_app_only(in_process: InProcess) -> None:
    runner = in_process.runner
    await in_process.answer("conversation", user("a"), app_id="app_a")
    await in_process.answer("conversation", user("b"), app_id="app_b")
    assert await runner.delete_thread(app_id="app_c", conversation_id="c1") is False
    assert await runner.delete_thread(app_id="app_a", conversation_id="c1") is True
    assert await runner.read_thread(app_id="app_a", conversation_id="c1") is None
    assert await runner.read_thread(app_id="app_b", conversation_id="c1") is not None
    assert await runner.delete_thread(app_id="app_a", conversation_id="c1") is False
    # A new answer on the deleted id starts afresh.
    await in_process.answer("conversation", user("again"), app_id="app_a")
    assert in_process.upstream.requests[-1].messages == [user("again")]


async def test_without_a_conversation_id_nothing_is_remembered(in_process: InProcess) -> None:
    await in_process.answer("conversation", user("one"), conversation_id=None)
    await in_process.answer("conversation", user("two"), conversation_id=None)
    assert in_process.upstream.requests[1].messages == [user("two")]


async def test_a_cancelled_answer_saves_nothing_and_closes_the_upstream(
    in_process: InProcess,
) -> None:
    in_process.upstream.texts = ["x "] * 100
    in_process.upstream.delay = 0.02
    stream = await in_process.runner.open_stream(
        "conversation", request(user("long")), app_id="app_1", conversation_id="c1"
    )
    assert await stream.next_chunk(5) is not None
    with anyio.fail_after(2):
        await stream.aclose()
    upstream_stream = in_process.upstream.streams[0]
    assert upstream_stream.closed
    assert upstream_stream.sent < 100
    await anyio.sleep(0.1)
    assert upstream_stream.sent < 100  # and nothing reads it any more
    assert await in_process.runner.read_thread(app_id="app_1", conversation_id="c1") is None


async def test_an_upstream_error_mid_answer_leaves_the_thread_as_it_was(
    in_process: InProcess,
) -> None:
    await in_process.answer("conversation", user("first"))
    in_process.upstream.fail_after = 2
    with pytest.raises(UpstreamError):
        await in_process.answer("conversation", user("second"))
    thread = await in_process.runner.read_thread(app_id="app_1", conversation_id="c1")
    assert thread == [user("first"), assistant("one two three ")]
