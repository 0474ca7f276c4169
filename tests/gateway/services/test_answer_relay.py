"""Answers across replicas through a real Redis (database 13, its own keys only): two relays
stand for two replicas; the producing one writes an answer once the other asked for it, then
its new events in one loop every 50 ms.

Run under ``flock /tmp/orchestra-redis.lock`` like the other Redis tests.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from redis.asyncio import Redis

from gateway.core.errors import NotFound, StreamExpired
from gateway.observability.metrics import Metrics
from gateway.services.answer_log import AnswerLog, Budget
from gateway.services.answer_producer import LiveAnswer
from gateway.services.answer_relay import WANT_GRACE_S, AnswerRelay
from gateway.services.answer_streams import AnswerStreams
from gateway.storage import answer_events
from tests.gateway.services.conftest import Rig
from tests.gateway.services.test_answer_streams import encode_error, registered, sse
from tests.support.polling import poll

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("database", ["sqlite"], indirect=True),
    pytest.mark.filterwarnings(r"ignore:\s*.*session\.exec\(\):DeprecationWarning"),
]

REDIS_URL = "redis://127.0.0.1:6379/13"


async def _forget(redis: Redis) -> None:
    keys = [key async for key in redis.scan_iter(match="orc:{answers}:req_*")]
    if keys:
        await redis.delete(*keys)


@asynccontextmanager
async def replicas(
    metrics: Metrics | None = None,
) -> AsyncIterator[tuple[AnswerStreams, AnswerRelay, AnswerRelay]]:
    """A producing replica (its registry and relay, running) and another replica's relay."""
    redis = Redis.from_url(REDIS_URL)
    await _forget(redis)
    here = AnswerRelay(redis, redis, retention_s=60, buffer_max_bytes=1 << 20, metrics=metrics)
    there = AnswerRelay(redis, redis, retention_s=60, buffer_max_bytes=1 << 20)
    streams = AnswerStreams(
        grace_s=30, retention_s=60, buffer_max_bytes=1 << 20, memory_max_bytes=1 << 20
    )
    try:
        async with anyio.create_task_group() as tasks:
            await tasks.start(streams.run)
            tasks.start_soon(here.run, streams)
            await anyio.sleep(0.1)  # subscribed to the wants and cancels
            yield streams, here, there
            tasks.cancel_scope.cancel()
    finally:
        await _forget(redis)
        await redis.aclose()


async def _keys(pattern: str) -> list[bytes]:
    redis = Redis.from_url(REDIS_URL)
    try:
        return [key async for key in redis.scan_iter(match=pattern)]
    finally:
        await redis.aclose()


async def test_an_answer_nobody_asks_for_elsewhere_stays_out_of_redis(rig: Rig) -> None:
    async with replicas() as (streams, here, _there):
        live = await registered(rig, streams)
        await streams.produce(live)
        await anyio.sleep(0.15)  # three writes' time
        assert here.mirroring == 0
        assert await _keys("orc:{answers}:req_*") == []
    assert (await rig.record())["outcome"] == "completed"


async def test_another_replica_asks_for_a_running_answer_and_follows_it(rig: Rig) -> None:
    rig.upstream.delay = 0.02
    async with replicas() as (streams, _here, there), anyio.create_task_group() as tasks:
        live = await registered(rig, streams)
        tasks.start_soon(streams.produce, live)
        await there.check("req_0", rig.ctx.app_id, None)  # at once: before its first event
        with pytest.raises(NotFound):
            await there.check("req_0", "another_app", None)
        followed = [chunk async for chunk in there.follow("req_0", 0, encode_error)]
    assert b"".join(followed) == b"".join(live.log.since(0) or [])
    assert (await rig.record())["outcome"] == "completed"


async def test_an_ended_answer_kept_as_values_is_written_when_asked_for(rig: Rig) -> None:
    async with replicas() as (streams, here, there):
        live = await registered(rig, streams)
        await streams.produce(live)
        streams.detach(live)  # its first reader is done
        rest = b"".join(live.log.since(2) or [])
        streams._sweep(time.monotonic() + 2)  # compacted: kept as plain values
        assert isinstance(streams._ended["req_0"], tuple)
        await there.check("req_0", rig.ctx.app_id, None)
        with anyio.fail_after(1):
            followed = [chunk async for chunk in there.follow("req_0", 2, encode_error)]
        assert here.mirroring == 0
    assert rest and b"".join(followed) == rest


async def test_an_answer_expired_where_it_ran_is_410_on_another_replica(rig: Rig) -> None:
    async with replicas() as (streams, _here, there):
        live = await registered(rig, streams)
        await streams.produce(live)
        streams.detach(live)
        streams._sweep(time.monotonic() + 61)  # past the retention: a tombstone only
        with pytest.raises(StreamExpired):
            await there.check("req_0", rig.ctx.app_id, None)
        with pytest.raises(NotFound):
            await there.check("req_0", "another_app", None)


async def test_an_unknown_answer_is_asked_for_then_not_found(rig: Rig) -> None:
    async with replicas() as (_streams, _here, there):
        started = time.monotonic()
        with pytest.raises(NotFound):
            await there.check("req_never", rig.ctx.app_id, None)
        assert WANT_GRACE_S <= time.monotonic() - started < WANT_GRACE_S + 1


async def test_a_cancel_sent_to_another_replica_stops_the_answer_where_it_runs(rig: Rig) -> None:
    rig.upstream.delay = 0.2
    async with replicas() as (streams, _here, there), anyio.create_task_group() as tasks:
        live = await registered(rig, streams)
        tasks.start_soon(streams.produce, live)
        await there.check("req_0", rig.ctx.app_id, None)
        await there.cancel("req_0")
        with anyio.fail_after(1):  # the producing replica stops it within a second
            while not live.log.ended:
                await live.log.wait()
    assert (await rig.record())["outcome"] == "cancelled"
    assert rig.upstream.streams[0].closed


async def test_an_answer_redis_refuses_is_not_retried_and_the_others_are_relayed(
    rig: Rig,
) -> None:
    metrics = Metrics()
    async with replicas(metrics) as (streams, here, there), anyio.create_task_group() as tasks:
        redis = Redis.from_url(REDIS_URL)
        await redis.set("orc:{answers}:req_0:events", b"not a stream")  # XADD: WRONGTYPE
        await redis.aclose()
        refused, relayed = await registered(rig, streams), await registered(rig, streams)
        tasks.start_soon(streams.produce, refused)
        tasks.start_soon(streams.produce, relayed)
        for request_id in ("req_0", "req_1"):
            await there.check(request_id, rig.ctx.app_id, None)
        followed = [chunk async for chunk in there.follow("req_1", 0, encode_error)]
        assert b"".join(followed) == b"".join(relayed.log.since(0) or [])

        async def mirroring() -> int:
            return here.mirroring

        await poll(mirroring, lambda n: n == 0, timeout=1)  # req_0 is not retried
        assert await here.flush()
    failures = metrics.registry.get_sample_value("orchestra_streams_relay_failures_total")
    assert failures == 1  # counted once, not once per write
    assert [record["outcome"] for record in await rig.records()] == ["completed", "completed"]


async def test_an_answer_that_ends_after_a_write_of_its_last_events_is_written_ended(
    rig: Rig,
) -> None:
    """The producer may wait (a quota settle in Redis) between its last event and the end of
    its log: a write in between has every event but not the end, which must follow alone."""
    log = AnswerLog(max_bytes=1 << 20, budget=Budget(1 << 20))
    live = LiveAnswer("req_late_end", rig.ctx.app_id, None, log, True, None)
    async with replicas() as (_streams, here, there):
        here.track(live)
        log.extend([sse("event: delta"), sse("event: done")])
        assert await here.flush()  # both events, not the end yet
        log.end()
        assert await here.flush()
        assert here.mirroring == 0  # nothing left to write: not flushed every 50 ms for ever
        redis = Redis.from_url(REDIS_URL)
        owner = await answer_events.find_owner(redis, "req_late_end")
        await redis.aclose()
        assert owner is not None and owner.ended
        with anyio.fail_after(1):  # the end, not an error once the alive key has expired
            followed = [chunk async for chunk in there.follow("req_late_end", 0, encode_error)]
    assert b"".join(followed) == b"".join(log.since(0) or [])
