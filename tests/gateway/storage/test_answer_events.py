"""Answers' events in Redis: a batch of events in one stream entry (a resume in its middle
gets only the events after), and the process's one write for all its answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from gateway.storage.answer_events import (
    APPENDS_PER_CALL,
    Append,
    Batch,
    StreamLimits,
    find_owner,
    is_alive,
    read_events,
    write,
)

EVENTS = [f'id: {n}\nevent: delta\ndata: {{"text": "t{n}"}}\n\n'.encode() for n in (4, 5, 6)]


def test_a_batch_after_an_id_inside_it_holds_only_the_later_events() -> None:
    batch = Batch(first=4, last=6, data=b"".join(EVENTS), final=False)
    assert batch.after(3) == b"".join(EVENTS)
    assert batch.after(0) == b"".join(EVENTS)
    assert batch.after(4) == EVENTS[1] + EVENTS[2]
    assert batch.after(5) == EVENTS[2]
    assert batch.after(6) == b""


# --- one write for the whole process, on a real Redis (database 13, its own keys only) ------
# Run these under ``flock /tmp/orchestra-redis.lock`` like the other Redis tests.

REDIS_URL = "redis://127.0.0.1:6379/13"
LIMITS = StreamLimits(maxlen=1000, alive_s=3, ttl=60)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    await _forget(client)
    try:
        yield client
    finally:
        await _forget(client)
        await client.aclose()


async def _forget(redis: Redis) -> None:
    keys = [key async for key in redis.scan_iter(match="orc:{answers}:storage_case_*")]
    if keys:
        await redis.delete(*keys)


@pytest.mark.anyio
async def test_an_answer_shorter_than_a_write_goes_in_one_with_its_owner_and_end(
    redis: Redis,
) -> None:
    short = Append("storage_case_short", 1, EVENTS, ("app_1", "ada"), last=True)
    await write(redis, [short], [], LIMITS)
    owner = await find_owner(redis, "storage_case_short")
    assert owner is not None
    assert (owner.app_id, owner.user, owner.ended) == ("app_1", "ada", True)
    assert not await is_alive(redis, "storage_case_short")  # never said alive: nothing to expire
    [batch] = await read_events(redis, "storage_case_short", 0, block_ms=None)
    assert (batch.first, batch.last, batch.final, batch.data) == (1, 3, True, b"".join(EVENTS))


@pytest.mark.anyio
async def test_writes_of_several_answers_a_retry_and_a_heartbeat_in_one_round_trip(
    redis: Redis,
) -> None:
    first = Append("storage_case_a", 1, EVENTS[:2], ("app_1", None), last=False)
    other = Append("storage_case_b", 1, EVENTS[:1], ("app_2", None), last=False)
    await write(redis, [first, other], [], LIMITS)
    assert await is_alive(redis, "storage_case_a") and await is_alive(redis, "storage_case_b")
    owner = await find_owner(redis, "storage_case_a")
    assert owner is not None and (owner.app_id, owner.ended) == ("app_1", False)

    await redis.delete("orc:{answers}:storage_case_b:alive")
    # A write that failed after Redis took it is sent again: not an error; b's heartbeat.
    await write(redis, [first], ["storage_case_b"], LIMITS)
    assert await is_alive(redis, "storage_case_b")

    rest = Append("storage_case_a", 3, EVENTS[2:], None, last=True)
    await write(redis, [rest], [], LIMITS)
    owner = await find_owner(redis, "storage_case_a")
    assert owner is not None and owner.ended
    assert not await is_alive(redis, "storage_case_a")
    batches = await read_events(redis, "storage_case_a", 0, block_ms=None)
    assert [(b.first, b.last, b.final) for b in batches] == [(1, 2, False), (3, 3, True)]
    assert [b.data for b in await read_events(redis, "storage_case_a", 2, block_ms=None)] == [
        EVENTS[2]
    ]


@pytest.mark.anyio
async def test_a_write_loads_its_script_again_when_redis_forgot_it(redis: Redis) -> None:
    await redis.script_flush()  # a restarted Redis, or SCRIPT FLUSH: EVALSHA fails NOSCRIPT
    short = Append("storage_case_reload", 1, EVENTS, ("app_1", None), last=True)
    await write(redis, [short], [], LIMITS)
    owner = await find_owner(redis, "storage_case_reload")
    assert owner is not None and owner.ended
    [batch] = await read_events(redis, "storage_case_reload", 0, block_ms=None)
    assert batch.data == b"".join(EVENTS)


@pytest.mark.anyio
async def test_every_answer_s_keys_are_in_one_cluster_slot(redis: Redis) -> None:
    """One script run writes many answers: on a Redis Cluster, their keys must share a slot."""
    first = Append("storage_case_slot_a", 1, EVENTS[:1], ("app_1", None), last=False)
    other = Append("storage_case_slot_b", 1, EVENTS[:1], ("app_1", None), last=False)
    await write(redis, [first, other], [], LIMITS)
    keys = [key async for key in redis.scan_iter(match="orc:{answers}:storage_case_slot_*")]
    assert len(keys) == 6  # owner, events and alive of each
    assert len({key_slot(key) for key in keys}) == 1


@pytest.mark.anyio
async def test_an_answer_redis_refuses_does_not_keep_the_others_out(redis: Redis) -> None:
    await redis.set("orc:{answers}:storage_case_bad:events", b"not a stream")
    bad = Append("storage_case_bad", 1, EVENTS, ("app_1", None), last=True)
    good = Append("storage_case_good", 1, EVENTS, ("app_1", None), last=True)
    refused = await write(redis, [bad, good], [], LIMITS)
    assert refused == {"storage_case_bad": "WRONGTYPE"}
    [batch] = await read_events(redis, "storage_case_good", 0, block_ms=None)
    assert batch.data == b"".join(EVENTS) and batch.final


@pytest.mark.anyio
async def test_more_answers_than_one_script_run_takes_all_go_in(redis: Redis) -> None:
    many = [
        Append(f"storage_case_many_{n}", 1, EVENTS[:1], ("app_1", None), last=True)
        for n in range(APPENDS_PER_CALL + 3)
    ]
    assert await write(redis, many, [], LIMITS) == {}
    for append in (many[0], many[APPENDS_PER_CALL - 1], many[APPENDS_PER_CALL], many[-1]):
        [batch] = await read_events(redis, append.request_id, 0, block_ms=None)
        assert batch.data == EVENTS[0]


@pytest.mark.anyio
async def test_an_end_written_after_the_last_events_is_an_entry_of_its_own(redis: Redis) -> None:
    events = Append("storage_case_late", 1, EVENTS, ("app_1", None), last=False)
    await write(redis, [events], [], LIMITS)
    end = Append("storage_case_late", 4, [], None, last=True)
    assert await write(redis, [end], [], LIMITS) == {}
    assert await write(redis, [end], [], LIMITS) == {}  # a retried write is no error
    owner = await find_owner(redis, "storage_case_late")
    assert owner is not None and owner.ended
    assert not await is_alive(redis, "storage_case_late")
    batches = await read_events(redis, "storage_case_late", 0, block_ms=None)
    assert [(b.first, b.last, b.final) for b in batches] == [(1, 3, False), (4, 3, True)]
    assert b"".join(b.after(0) for b in batches) == b"".join(EVENTS)
    # A reader that has every event gets the end alone, with nothing to replay.
    [alone] = await read_events(redis, "storage_case_late", 3, block_ms=None)
    assert (alone.final, alone.after(3)) == (True, b"")
