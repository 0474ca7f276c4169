"""The event log of one answer: ids, replay from an id, its two bounds, waking its readers."""

from __future__ import annotations

import tracemalloc

import anyio
import pytest

from gateway.services.answer_log import AnswerLog, Budget


def event(n: int, size: int = 10) -> bytes:
    return f"{n:0{size}d}".encode()


def test_events_are_numbered_from_one_and_replayed_after_an_id() -> None:
    log = AnswerLog(max_bytes=1000, budget=Budget(10_000))
    for n in range(1, 6):
        assert log.next_id == n
        log.append(event(n))
    assert log.last_id == 5
    assert log.since(0) == [event(n) for n in range(1, 6)]
    assert log.since(3) == [event(4), event(5)]
    assert log.since(5) == []
    assert log.since(9) == []  # ahead of the log: nothing yet


def test_past_its_own_bound_the_oldest_events_go_and_cannot_be_replayed() -> None:
    budget = Budget(10_000)
    log = AnswerLog(max_bytes=100, budget=budget)
    for n in range(1, 21):  # 200 bytes
        log.append(event(n))
    assert log.size <= 100 and budget.used == log.size
    assert log.last_id == 20
    first_kept = log.last_id - log.size // 10 + 1
    assert not log.replayable_from(first_kept - 2)
    assert log.since(first_kept - 2) is None
    assert log.replayable_from(first_kept - 1)
    assert log.since(first_kept - 1) == [event(n) for n in range(first_kept, 21)]
    log.release()
    assert budget.used == 0 and log.size == 0


def test_the_shared_budget_calls_over_when_passed() -> None:
    calls: list[int] = []
    budget = Budget(50)
    budget.over = lambda: calls.append(budget.used)
    first, second = (AnswerLog(max_bytes=1000, budget=budget) for _ in range(2))
    for n in range(3):
        first.append(event(n))
        second.append(event(n))
    assert budget.used == 60
    assert calls == [60]


@pytest.mark.anyio
async def test_a_waiting_reader_is_woken_by_an_append_and_by_the_end() -> None:
    log = AnswerLog(max_bytes=1000, budget=Budget(10_000))
    seen: list[list[bytes] | None] = []

    async def reader() -> None:
        position = 0
        while True:
            events = log.since(position)
            assert events is not None
            if events:
                seen.append(events)
                position += len(events)
            elif log.ended:
                return
            else:
                await log.wait()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(reader)
        await anyio.sleep(0.01)
        log.append(event(1))
        log.append(event(2))  # before the reader runs again: one wake-up, both events
        await anyio.sleep(0.01)
        log.append(event(3))
        log.end()
    assert seen == [[event(1), event(2)], [event(3)]]
    assert log.ended_at is not None


def delta(n: int) -> bytes:
    return f'id: {n}\nevent: delta\ndata: {{"text":"w{n}"}}\n\n'.encode()


def test_a_compacted_log_replays_the_same_events_in_less_memory() -> None:
    budget = Budget(1 << 20)
    tracemalloc.start()
    try:
        log = AnswerLog(max_bytes=1 << 20, budget=budget)
        for n in range(1, 51):
            log.append(delta(n))
        log.compact()  # running: nothing happens
        assert log.since(48) == [delta(49), delta(50)]
        log.end()
        held = tracemalloc.get_traced_memory()[0]
        log.compact()
        compacted = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert compacted < held * 0.8  # one object and an array, not fifty objects

    for after in range(52):
        assert log.since(after) == [delta(n) for n in range(after + 1, 51)]
    assert (log.next_id, log.last_id, budget.used) == (51, 50, log.size)
    log.release()
    assert budget.used == 0 and log.size == 0
    assert log.since(0) is None and log.since(50) == [] and log.next_id == 51


@pytest.mark.parametrize("compacted_first", [False, True])
def test_a_kept_log_is_its_bytes_and_restored_replays_the_same_events(
    compacted_first: bool,
) -> None:
    budget = Budget(1 << 20)
    log = AnswerLog(max_bytes=1 << 20, budget=budget)
    log.extend([delta(n) for n in range(1, 31)])
    log.trim(log.size - len(delta(1)) * 5)  # the first five are gone: it starts at id 6
    log.end()
    if compacted_first:
        log.compact()
    first, blob = log.kept()
    assert (first, blob) == (6, b"".join(delta(n) for n in range(6, 31)))

    assert log.ended_at is not None
    again = AnswerLog.restored(first, blob, ended_at=log.ended_at, max_bytes=1 << 20, budget=budget)
    assert (again.next_id, again.last_id, again.size, again.ended) == (31, 30, len(blob), True)
    assert again.since(4) is None  # dropped before it was kept
    for after in range(5, 32):
        assert again.since(after) == [delta(n) for n in range(after + 1, 31)]
