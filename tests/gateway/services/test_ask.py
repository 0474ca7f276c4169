"""``Answer`` on a scripted upstream: its states, its error paths, one record and one settle each.

The rig (tests/gateway/services/conftest.py) puts real parts around the double.
"""

from __future__ import annotations

import anyio
import pytest

from gateway.core.errors import (
    Cancelled,
    GatewayError,
    ModelNotAllowed,
    QuotaExceeded,
    ShuttingDown,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.services.ask import (
    Answer,
    AnswerEvent,
    Delta,
    Done,
    Failed,
    estimate_prompt_tokens,
)
from gateway.upstream.types import Usage
from tests.gateway.services.conftest import HARD_CAP, MESSAGES, MODEL, SOFT_CAP, Rig

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("database", ["sqlite"], indirect=True),
    # The recorder's bulk insert goes through SQLModel's session.execute (as in storage's tests).
    pytest.mark.filterwarnings(r"ignore:\s*.*session\.exec\(\):DeprecationWarning"),
]


async def drain(answer: Answer) -> list[AnswerEvent]:
    return [event async for event in answer.events()]


def texts(events: list[AnswerEvent]) -> list[str]:
    """The content deltas' texts (the usage-only chunk is a Delta too, with no text)."""
    return [e.chunk.text for e in events if isinstance(e, Delta) and e.chunk.text]


async def test_open_peeks_the_first_chunk_then_deltas_and_done_settle_once(rig: Rig) -> None:
    answer = rig.answer()
    await answer.open()
    first = answer.peeked
    assert first is not None and first.text == "one "
    assert rig.upstream.streams[0].sent == 1  # only the peeked chunk was read
    assert rig.upstream.requests[0].api_key == "sk-scripted"
    events = await drain(answer)
    assert texts(events) == ["one ", "two ", "three "]
    usage_chunk = events[-2]
    assert isinstance(usage_chunk, Delta) and usage_chunk.chunk.usage_only
    assert events[-1] == Done(finish_reason=None, model=MODEL, usage=Usage(10, 3))
    assert answer.finished() and answer.peeked is None
    await answer.settle()
    await answer.settle()  # idempotent: the finally of every caller may call it
    assert rig.upstream.streams[0].closed
    assert await rig.record() == {
        "request_id": "req_0",
        "outcome": "completed",
        "http_status": 200,
        "error_code": None,
        "prompt_tokens": 10,
        "completion_tokens": 3,
    }
    rig.settled_once(13)


async def test_an_upstream_refusal_before_any_byte_is_raised_and_recorded(rig: Rig) -> None:
    rig.upstream.open_error = UpstreamUnavailable("The upstream is down.")
    answer = rig.answer()
    with pytest.raises(UpstreamUnavailable):
        await answer.open()
    await answer.settle()
    assert await rig.record() == {
        "request_id": "req_0",
        "outcome": "upstream_error",
        "http_status": 503,
        "error_code": "upstream_unavailable",
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }
    rig.settled_once(0)  # nothing was produced: the reservation is released, not charged


async def test_a_failure_of_the_peeked_chunk_closes_the_stream(rig: Rig) -> None:
    rig.upstream.fail_after = 0
    answer = rig.answer()
    with pytest.raises(UpstreamError):
        await answer.open()
    await answer.settle()
    assert rig.upstream.streams[0].closed
    record = await rig.record()
    assert (record["outcome"], record["http_status"]) == ("upstream_error", 502)
    rig.settled_once(0)


async def test_an_error_mid_stream_ends_with_failed_and_is_recorded(rig: Rig) -> None:
    rig.upstream.fail_after = 2
    answer = rig.answer()
    await answer.open()
    events = await drain(answer)
    assert texts(events) == ["one ", "two "]
    assert isinstance(events[-1], Failed) and isinstance(events[-1].error, UpstreamError)
    assert answer.finished()
    await answer.settle()
    assert rig.upstream.streams[0].closed
    prompt = estimate_prompt_tokens(MESSAGES)  # no usage came: what was seen, estimated
    assert await rig.record() == {
        "request_id": "req_0",
        "outcome": "upstream_error",
        "http_status": 502,
        "error_code": "upstream_error",
        "prompt_tokens": prompt,
        "completion_tokens": 2,
    }
    rig.settled_once(prompt + 2)


async def test_a_hard_cap_stops_the_answer_at_its_reservation(rig: Rig) -> None:
    answer = rig.answer(HARD_CAP, max_tokens=2)  # the reservation holds 2 tokens
    await answer.open()
    events = await drain(answer)
    assert texts(events) == ["one ", "two "]  # the third chunk is neither sent nor counted
    assert isinstance(events[-1], Failed)
    assert isinstance(events[-1].error, QuotaExceeded)
    assert events[-1].error.limit == "hard_cap"
    await answer.settle()
    prompt = estimate_prompt_tokens(MESSAGES)
    assert await rig.record() == {
        "request_id": "req_0",
        "outcome": "quota_stopped",
        "http_status": 200,
        "error_code": "quota_exceeded",
        "prompt_tokens": prompt,
        "completion_tokens": 2,
    }
    rig.settled_once(prompt + 2)


async def test_a_soft_cap_lets_the_answer_run_past_its_reservation(rig: Rig) -> None:
    answer = rig.answer(SOFT_CAP, max_tokens=2)
    await answer.open()
    events = await drain(answer)
    assert texts(events) == ["one ", "two ", "three "]
    assert events[-1] == Done(finish_reason=None, model=MODEL, usage=Usage(10, 3))
    await answer.settle()
    assert (await rig.record())["outcome"] == "completed"
    rig.settled_once(13)


async def test_usage_not_reported_is_estimated(rig: Rig) -> None:
    rig.upstream.report_usage = False
    answer = rig.answer()
    await answer.open()
    events = await drain(answer)
    prompt = estimate_prompt_tokens(MESSAGES)
    assert events[-1] == Done(finish_reason=None, model=MODEL, usage=Usage(prompt, 3))
    await answer.settle()
    record = await rig.record()
    assert (record["outcome"], record["prompt_tokens"], record["completion_tokens"]) == (
        "completed",
        prompt,
        3,
    )
    rig.settled_once(prompt + 3)


async def test_a_client_gone_mid_stream_settles_and_records_a_disconnect(rig: Rig) -> None:
    rig.upstream.delay = 0.05  # the cancellation lands while the next chunk is awaited
    answer = rig.answer()
    await answer.open()
    seen: list[AnswerEvent] = []
    with anyio.CancelScope() as scope:
        async for event in answer.events():
            seen.append(event)
            scope.cancel()
    assert texts(seen) == ["one "] and not answer.finished()
    with anyio.CancelScope(shield=True):
        await answer.settle()
    assert rig.upstream.streams[0].closed
    prompt = estimate_prompt_tokens(MESSAGES)
    assert await rig.record() == {
        "request_id": "req_0",
        "outcome": "client_disconnected",
        "http_status": 499,
        "error_code": None,
        "prompt_tokens": prompt,
        "completion_tokens": 1,
    }
    rig.settled_once(prompt + 1)


@pytest.mark.parametrize(
    ("error", "outcome", "status"),
    [
        (Cancelled("Stopped on request."), "cancelled", 499),
        (ShuttingDown("The gateway is stopping."), "shutdown", 503),
    ],
)
async def test_an_answer_the_gateway_ends_is_recorded_with_its_error(
    rig: Rig, error: GatewayError, outcome: str, status: int
) -> None:
    answer = rig.answer()
    await answer.open()
    answer.fail(error)  # what the producer does when it stops an answer before its end
    await answer.settle()
    record = await rig.record()
    assert (record["outcome"], record["http_status"], record["error_code"]) == (
        outcome,
        status,
        error.code,
    )
    rig.settled_once(estimate_prompt_tokens(MESSAGES) + 1)


@pytest.mark.parametrize("fail_after", [None, 1])
async def test_fail_after_the_end_changes_nothing(rig: Rig, fail_after: int | None) -> None:
    rig.upstream.fail_after = fail_after
    answer = rig.answer()
    await answer.open()
    last = (await drain(answer))[-1]
    answer.fail(ShuttingDown("The gateway is stopping."))  # too late: the answer has ended
    await answer.settle()
    record = await rig.record()
    expected = "completed" if isinstance(last, Done) else "upstream_error"
    assert record["outcome"] == expected
    answer.fail(ShuttingDown("The gateway is stopping."))
    await answer.settle()
    assert len(await rig.records()) == 1
    assert len(rig.counters.settled) == 1


async def test_a_refusal_before_the_upstream_records_once_and_holds_nothing(rig: Rig) -> None:
    answer = rig.answer(model="gpt-4-unlisted")
    with pytest.raises(ModelNotAllowed):
        await answer.open()
    await answer.settle()
    assert rig.upstream.requests == []
    record = await rig.record()
    assert (record["outcome"], record["error_code"]) == ("rejected", "model_not_allowed")
    assert rig.counters.settled == []  # nothing was reserved


async def test_every_answer_of_a_mixed_run_has_exactly_one_record(rig: Rig) -> None:
    """Several answers through the same deps: one record and one settlement each."""
    outcomes: list[str] = []
    for fail_after in (None, 0, 2, None):
        rig.upstream.fail_after = fail_after
        answer = rig.answer()
        try:
            await answer.open()
            await drain(answer)
        except UpstreamError:
            pass
        finally:
            await answer.settle()
        outcomes.append("completed" if fail_after is None else "upstream_error")
    records = await rig.records()
    assert [r["outcome"] for r in records] == outcomes
    assert [r["request_id"] for r in records] == [f"req_{n}" for n in range(4)]
    assert len(rig.counters.settled) == 4
    assert len({rid for rid, _ in rig.counters.settled}) == 4
    assert rig.deps.limiter.leases.held == 0
