"""The answers' producers: one per answer, readers that come and go, grace, cancel, shutdown,
retention; every answer settled and recorded once, whoever reads it."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import TaskGroup

from gateway.core.errors import GatewayError, NotFound, StreamExpired
from gateway.services import answer_streams
from gateway.services.answer_log import AnswerLog
from gateway.services.answer_producer import LiveAnswer
from gateway.services.answer_streams import AnswerStreams
from gateway.services.ask import Answer, AnswerEvent, Delta, Done
from tests.gateway.services.conftest import Rig
from tests.support.polling import poll

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("database", ["sqlite"], indirect=True),
    # The recorder's bulk insert goes through SQLModel's session.execute (as in storage's tests).
    pytest.mark.filterwarnings(r"ignore:\s*.*session\.exec\(\):DeprecationWarning"),
]


def sse(text: str) -> bytes:
    """An event as the log holds it: it ends with a blank line, as every SSE event does."""
    return text.encode() + b"\n\n"


def encode(event: AnswerEvent, event_id: int) -> bytes | None:
    if isinstance(event, Delta):
        return sse(f"{event_id}:{event.chunk.text}") if event.chunk.text else None
    if isinstance(event, Done):
        return sse(f"{event_id}:done")
    return encode_error(event.error, event_id)


def encode_error(error: GatewayError, event_id: int) -> bytes:
    return sse(f"{event_id}:error:{error.code}")


class HostedStreams(AnswerStreams):
    """The registry, and a task group in which its answers' producers run (in the gateway,
    each runs in the task of the request that started it)."""

    tasks: TaskGroup


@asynccontextmanager
async def hosted(
    *, grace_s: float = 0, retention_s: float = 60, memory: int = 1 << 20
) -> AsyncIterator[HostedStreams]:
    """The registry running in its own task group, as in the lifespan; leaving it cancels the
    producers, as the end of the process does."""
    streams = HostedStreams(
        grace_s=grace_s,
        retention_s=retention_s,
        buffer_max_bytes=memory,
        memory_max_bytes=memory,
    )
    async with anyio.create_task_group() as tasks:
        streams.tasks = tasks
        await tasks.start(streams.run)
        yield streams
        tasks.cancel_scope.cancel()


async def registered(rig: Rig, streams: AnswerStreams, *, resumable: bool = True) -> LiveAnswer:
    """An answer opened and registered; nothing produces it yet."""
    answer: Answer = rig.answer()
    await answer.open()
    return streams.start(
        answer,
        request_id=f"req_{len(rig.answers) - 1}",
        app_id=rig.ctx.app_id,
        user=None,
        encode=encode,
        encode_error=encode_error,
        resumable=resumable,
    )


async def started(rig: Rig, streams: HostedStreams, *, resumable: bool = True) -> LiveAnswer:
    """An answer started, its producer running (without a sink: readers follow its log)."""
    live = await registered(rig, streams, resumable=resumable)
    streams.tasks.start_soon(streams.produce, live)
    return live


class RecordingSink:
    """The first reader's client, as the producer writes to it."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bool]] = []

    async def deliver(self, data: bytes, *, last: bool) -> None:
        self.calls.append((data, last))


async def follow(log: AnswerLog, after: int = 0, *, count: int | None = None) -> list[bytes]:
    """What a reader gets from ``after`` on: to the end, or ``count`` events."""
    seen: list[bytes] = []
    while count is None or len(seen) < count:
        events = log.since(after + len(seen))
        assert events is not None
        seen.extend(events)
        if not events:
            if log.ended:
                break
            await log.wait()
    return seen if count is None else seen[:count]


async def retired(streams: AnswerStreams) -> None:
    """Wait until no producer runs (each settles after ending its log)."""

    async def running() -> int:
        return streams.running

    await poll(running, lambda n: n == 0)


async def test_one_producer_streams_the_answer_settles_once_and_keeps_it(rig: Rig) -> None:
    async with hosted() as streams:
        live = await started(rig, streams)
        assert await follow(live.log) == [
            sse("1:one "),
            sse("2:two "),
            sse("3:three "),
            sse("4:done"),
        ]
        await retired(streams)
        streams.detach(live)
        assert streams.find("req_0", rig.ctx.app_id, None) is live
        assert live.log.since(2) == [sse("3:three "), sse("4:done")]  # replayable after its end
        with pytest.raises(NotFound):
            streams.find("req_0", "another_app", None)
    assert rig.upstream.streams[0].closed
    assert (await rig.record())["outcome"] == "completed"
    rig.settled_once(13)


async def test_the_last_reader_leaving_without_grace_stops_the_answer(rig: Rig) -> None:
    rig.upstream.delay = 0.05
    async with hosted(grace_s=0) as streams:
        live = await started(rig, streams)
        assert await follow(live.log, count=1) == [sse("1:one ")]
        streams.detach(live)
        await retired(streams)
    assert live.log.since(live.log.last_id - 1) == [sse(f"{live.log.last_id}:error:cancelled")]
    assert rig.upstream.streams[0].closed
    record = await rig.record()
    assert (record["outcome"], record["http_status"]) == ("client_disconnected", 499)
    assert len(rig.counters.settled) == 1


async def test_a_reader_back_within_the_grace_gets_the_rest(rig: Rig) -> None:
    rig.upstream.delay = 0.05
    async with hosted(grace_s=30) as streams:
        live = await started(rig, streams)
        assert await follow(live.log, count=1) == [sse("1:one ")]
        streams.detach(live)
        await anyio.sleep(0.1)  # the answer goes on while nobody reads
        streams.attach(live, 1)
        assert await follow(live.log, 1) == [sse("2:two "), sse("3:three "), sse("4:done")]
        await retired(streams)
    assert (await rig.record())["outcome"] == "completed"
    rig.settled_once(13)


async def test_nobody_back_within_the_grace_stops_the_answer(rig: Rig) -> None:
    rig.upstream.delay = 0.3
    async with hosted(grace_s=0.05) as streams:
        live = await started(rig, streams)
        streams.detach(live)
        await retired(streams)
    assert live.log.since(0)[-1].endswith(b":error:cancelled\n\n")  # type: ignore[index]
    assert (await rig.record())["outcome"] == "client_disconnected"
    assert len(rig.counters.settled) == 1


async def test_cancel_ends_every_reader_with_an_error_and_records_cancelled(rig: Rig) -> None:
    rig.upstream.delay = 0.05
    async with hosted() as streams:
        live = await started(rig, streams)
        streams.attach(live, 0)  # a second reader
        assert await follow(live.log, count=1) == [sse("1:one ")]
        streams.cancel(live)
        first, second = await follow(live.log), await follow(live.log)
        assert first == second and first[-1].endswith(b":error:cancelled\n\n")
        await retired(streams)
    record = await rig.record()
    assert (record["outcome"], record["http_status"]) == ("cancelled", 499)
    assert len(rig.counters.settled) == 1


async def test_a_shutdown_ends_a_running_answer_and_records_it(rig: Rig) -> None:
    rig.upstream.delay = 0.05
    async with hosted() as streams:
        live = await started(rig, streams)
        assert await follow(live.log, count=1) == [sse("1:one ")]
    # Leaving the task group cancelled the producer, as the process's end does.
    assert live.log.ended
    assert live.log.since(0)[-1].endswith(b":error:shutting_down\n\n")  # type: ignore[index]
    assert rig.upstream.streams[0].closed
    record = await rig.record()
    assert (record["outcome"], record["http_status"]) == ("shutdown", 503)
    assert len(rig.counters.settled) == 1


async def test_an_ended_answer_expires_after_its_retention(rig: Rig) -> None:
    async with hosted(retention_s=0.2) as streams:
        live = await started(rig, streams)
        await follow(live.log)
        await retired(streams)
        streams.detach(live)

        assert streams.buffered_bytes > 0

        async def buffered() -> int:
            return streams.buffered_bytes

        await poll(buffered, lambda n: n == 0)  # the sweep forgot it and released its log
        with pytest.raises(StreamExpired):  # its owner is told it expired (a tombstone)
            streams.find("req_0", rig.ctx.app_id, None)
        with pytest.raises(NotFound):  # anyone else, that it does not exist
            streams.find("req_0", "another_app", None)
    assert len(await rig.records()) == 1


async def test_an_answer_that_cannot_be_resumed_is_not_found(rig: Rig) -> None:
    async with hosted() as streams:
        live = await started(rig, streams, resumable=False)
        with pytest.raises(NotFound):
            streams.find("req_0", rig.ctx.app_id, None)
        await follow(live.log)
        await retired(streams)
        streams.detach(live)
        assert streams.buffered_bytes == 0  # its only reader is done: nothing kept
    assert (await rig.record())["outcome"] == "completed"


async def test_every_answer_of_many_concurrent_ones_is_recorded_once(rig: Rig) -> None:
    rig.upstream.delay = 0.01
    async with hosted() as streams:
        lives = [await started(rig, streams) for _ in range(5)]
        streams.cancel(lives[1])
        for live in lives:
            await follow(live.log)
        await retired(streams)
    records = await rig.records()
    assert [r["request_id"] for r in records] == [f"req_{n}" for n in range(5)]
    assert [r["outcome"] for r in records].count("cancelled") == 1
    assert len(rig.counters.settled) == 5
    assert rig.deps.limiter.leases.held == 0


async def test_the_producer_writes_to_its_first_reader_itself_the_last_event_with_the_end(
    rig: Rig,
) -> None:
    async with hosted() as streams:
        live = await registered(rig, streams)
        sink = RecordingSink()
        await streams.produce(live, sink)  # in this task, as the starting request does
        with pytest.raises(RuntimeError):
            await streams.produce(live, sink)  # one producer per answer
    assert sink.calls == [
        (sse("1:one "), False),
        (sse("2:two "), False),
        (sse("3:three "), False),
        (sse("4:done"), True),
    ]
    assert live.log.since(0) == [data for data, _ in sink.calls]  # what a resume replays
    assert (await rig.record())["outcome"] == "completed"
    rig.settled_once(13)


async def test_a_cancel_reaches_the_first_reader_as_its_last_event(rig: Rig) -> None:
    rig.upstream.delay = 0.05
    async with hosted() as streams:
        live = await registered(rig, streams)
        sink = RecordingSink()
        streams.tasks.start_soon(streams.produce, live, sink)
        await poll(lambda: _value(len(sink.calls)), lambda n: n >= 1)
        streams.cancel(live)
        await retired(streams)
    assert sink.calls[0] == (sse("1:one "), False)
    assert sink.calls[-1][1] and sink.calls[-1][0].endswith(b":error:cancelled\n\n")
    assert sum(last for _, last in sink.calls) == 1
    assert (await rig.record())["outcome"] == "cancelled"


async def test_an_answer_whose_first_reader_left_before_it_started_is_settled(rig: Rig) -> None:
    async with hosted(grace_s=30) as streams:
        live = await registered(rig, streams)
        streams.detach(live)  # its response never started
        await streams.abandon(live)
        assert streams.running == 0
    assert live.log.since(0)[-1].endswith(b":error:cancelled\n\n")  # type: ignore[index]
    assert rig.upstream.streams[0].closed
    assert (await rig.record())["outcome"] == "client_disconnected"
    assert len(rig.counters.settled) == 1


async def _value(value: int) -> int:
    return value


async def kept_as_values(streams: AnswerStreams, request_id: str) -> bool:
    """Whether the registry holds the ended answer in a form the garbage collector does not
    track (white box: that form is the point, minutes of kept answers cost collections nothing)."""
    gc.collect()  # the collector stops tracking a tuple of plain values when it meets one
    return not gc.is_tracked(streams._ended[request_id])


async def test_an_ended_answer_is_kept_as_plain_values_and_still_replayed(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(answer_streams, "COMPACT_AFTER_S", 0.0)
    async with hosted(retention_s=60) as streams:  # swept every second
        live = await started(rig, streams)
        events = await follow(live.log)
        await retired(streams)
        streams.detach(live)
        held = streams.buffered_bytes

        await poll(lambda: kept_as_values(streams, "req_0"), bool)
        with pytest.raises(NotFound):
            streams.find("req_0", "another_app", None)

        restored = streams.find("req_0", rig.ctx.app_id, None)
        assert restored is not live  # an object again, for its readers
        streams.attach(restored, 2)
        assert restored.log.since(0) == events and await follow(restored.log, 2) == events[2:]
        assert streams.find("req_0", rig.ctx.app_id, None) is restored  # one per answer
        assert streams.buffered_bytes == held  # its bytes are counted once, whatever the form
        streams.detach(restored)

        await poll(lambda: kept_as_values(streams, "req_0"), bool)
        assert streams.find("req_0", rig.ctx.app_id, None).log.since(1) == events[1:]

        streams._sweep(time.monotonic() + 60)  # its retention is over: its bytes released
        assert streams.buffered_bytes == 0
        with pytest.raises(StreamExpired):
            streams.find("req_0", rig.ctx.app_id, None)


async def test_kept_answers_are_evicted_oldest_first_past_the_memory_bound(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(answer_streams, "COMPACT_AFTER_S", 0.0)
    async with hosted(memory=1024) as streams:
        first = await started(rig, streams)
        size = len(b"".join(await follow(first.log)))
        await retired(streams)
        streams.detach(first)

        await poll(lambda: kept_as_values(streams, "req_0"), bool)
        for _ in range(1024 // size + 1):  # one more than the bound holds
            live = await started(rig, streams)
            await follow(live.log)
            await retired(streams)
            streams.detach(live)
        assert streams.buffered_bytes <= 1024
        with pytest.raises(StreamExpired):  # evicted, the oldest; its owner is told so
            streams.find("req_0", rig.ctx.app_id, None)
        newest = f"req_{len(rig.answers) - 1}"
        assert streams.find(newest, rig.ctx.app_id, None).log.since(0)
