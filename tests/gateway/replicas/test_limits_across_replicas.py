"""One limit, three replicas: rpm, max_concurrent, tpm and tokens_per_day hold across them."""

from __future__ import annotations

import secrets
import warnings
from collections import Counter

import anyio
import pytest

from gateway.services.views import QuotaLimits
from tests.gateway.replicas.conftest import (
    MODEL,
    AppHandle,
    Cluster,
    Outcome,
    Spread,
    ask,
    fake_requests,
    gather,
    records_of,
    run_cli,
)

pytestmark = pytest.mark.anyio


def assert_quota_refusal(outcome: Outcome, limit: str) -> None:
    assert outcome.status == 429, (outcome.status, outcome.body)
    assert outcome.error_code == "quota_exceeded", outcome.body
    assert f"({limit}," in outcome.body["error"]["message"], outcome.body
    retry_after = outcome.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1, outcome.headers
    for header in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert outcome.headers[header].isdigit(), (header, outcome.headers)


async def test_rpm_50_admits_exactly_50_of_200_concurrent_requests(
    cluster: Cluster, spread: Spread
) -> None:
    app = await cluster.add_app("rpm")
    run_cli(["quotas", "set", app.name, "--rpm", "50"], cluster.env)
    outcomes = await gather(
        [ask(spread.next(), app, f"hello {i}", stream=i % 2 == 0) for i in range(200)]
    )
    statuses = Counter(o.status for o in outcomes)
    assert statuses == {200: 50, 429: 150}, statuses
    for outcome in outcomes:
        if outcome.status == 429:
            assert_quota_refusal(outcome, "rpm")
            assert outcome.headers["RateLimit-Limit"] == "50"
            assert outcome.headers["RateLimit-Remaining"] == "0"
            assert 1 <= int(outcome.headers["Retry-After"]) <= 60
        else:
            assert outcome.headers["RateLimit-Limit"] == "50", outcome.headers
            assert int(outcome.headers["RateLimit-Remaining"]) < 50
            assert outcome.error_code is None, outcome
            if outcome.events:
                assert outcome.event_names[-1] == "done", outcome.events
    # Each replica got 66 or 67 of the requests: with a counter each, they would have
    # answered 150. The remaining counts handed out are all different: one shared counter.
    assert Counter(o.replica for o in outcomes).most_common()[-1][1] == 66
    remaining = [int(o.headers["RateLimit-Remaining"]) for o in outcomes if o.status == 200]
    assert sorted(remaining) == list(range(50)), sorted(remaining)


def reservation_of(prompt: str, max_tokens: int) -> int:
    """What the gateway reserves for this prompt: its real token count plus max_tokens."""
    with warnings.catch_warnings():
        # bpe_openai loads its tables with a deprecated importlib.resources call.
        warnings.simplefilter("ignore", DeprecationWarning)
        from gateway.upstream.tokenizer import count_messages

        return count_messages([{"role": "user", "content": prompt}], MODEL) + max_tokens


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at a tie)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, delta in edges:
        open_now += delta
        peak = max(peak, open_now)
    return peak


async def test_max_concurrent_5_is_never_passed_across_replicas(
    cluster: Cluster, spread: Spread
) -> None:
    app = await cluster.add_app("concurrent", QuotaLimits(max_concurrent=5))
    marker = f"mc-{secrets.token_hex(4)}"
    prompt = f"{marker} [token-ms:50] [tokens:30]"  # each answer streams for 1.5 s

    async def wave(delay: float) -> list[Outcome]:
        await anyio.sleep(delay)
        return await gather([ask(spread.next(), app, prompt) for _ in range(15)])

    waves: list[list[Outcome]] = []

    async def run_wave(delay: float) -> None:
        waves.append(await wave(delay))

    async with anyio.create_task_group() as tasks:
        for delay in (0.0, 0.7, 2.0):  # arrivals while 5 stream, and after some ended
            tasks.start_soon(run_wave, delay)
    outcomes = [o for w in waves for o in w]
    statuses = Counter(o.status for o in outcomes)
    assert set(statuses) == {200, 429}, statuses
    for outcome in outcomes:
        if outcome.status == 429:
            assert_quota_refusal(outcome, "max_concurrent")
            assert outcome.headers["Retry-After"] == "1"
        else:
            assert outcome.event_names[-1] == "done", outcome.events
    # What the upstream saw: never more than 5 answers at once, across the three replicas.
    received = await fake_requests(cluster, marker)
    assert len(received) == statuses[200]
    assert all(r["status"] == "completed" for r in received), received
    peak = max_overlap([(r["started_at"], r["ended_at"]) for r in received])
    assert peak == 5, peak
    # Slots were handed back: more than 5 answers were admitted over the three waves.
    assert statuses[200] > 5, statuses


async def answer_one_by_one(
    cluster: Cluster, spread: Spread, app: AppHandle, prompt: str, *, max_tokens: int, n: int
) -> list[Outcome]:
    """``n`` streamed asks in turn, each one sent once the previous one is settled."""
    outcomes: list[Outcome] = []
    for _ in range(n):
        outcome = await ask(spread.next(), app, prompt, max_tokens=max_tokens)
        outcomes.append(outcome)
        # The record is written after the quota is settled: wait for it.
        await records_of(spread.clients[0], app, len(outcomes))
    return outcomes


def tokens_of(records: list[dict[str, object]]) -> list[int]:
    return [int(r["prompt_tokens"]) + int(r["completion_tokens"]) for r in records]  # type: ignore[call-overload]


def quota_of(limit: str, value: int, *, soft_cap: bool = False) -> QuotaLimits:
    if limit == "tpm":
        return QuotaLimits(tpm=value, soft_cap=soft_cap)
    return QuotaLimits(tokens_per_day=value, soft_cap=soft_cap)


@pytest.mark.parametrize("limit", ["tpm", "tokens_per_day"])
async def test_soft_cap_overshoots_by_at_most_one_answer(
    cluster: Cluster, spread: Spread, limit: str
) -> None:
    budget = 390
    app = await cluster.add_app(f"soft-{limit}", quota_of(limit, budget, soft_cap=True))
    # The upstream ignores max_tokens: each answer settles 40 tokens past its reservation.
    prompt = f"soft {secrets.token_hex(3)} [tokens:60] [ignore-max-tokens]"
    reserved = reservation_of(prompt, 20)
    outcomes = await answer_one_by_one(cluster, spread, app, prompt, max_tokens=20, n=12)
    served = [o for o in outcomes if o.status == 200]
    for outcome in served:  # soft cap: the answers run to their end
        assert outcome.event_names[-1] == "done", outcome.events
        assert outcome.events[-1][1]["usage"]["completion_tokens"] == 60
    for outcome in outcomes[len(served) :]:
        assert_quota_refusal(outcome, limit)
    assert 2 <= len(served) < len(outcomes), Counter(o.status for o in outcomes)
    records = await records_of(spread.clients[1], app, len(outcomes))
    used = tokens_of([r for r in records if r["outcome"] == "completed"])
    overshoot = max(u - reserved for u in used)
    assert overshoot > 0
    assert budget < sum(used) <= budget + overshoot, (used, reserved)


@pytest.mark.parametrize("limit", ["tpm", "tokens_per_day"])
async def test_hard_cap_stops_answers_at_their_reservation_and_never_passes_the_limit(
    cluster: Cluster, spread: Spread, limit: str
) -> None:
    budget = 300
    app = await cluster.add_app(f"hard-{limit}", quota_of(limit, budget))
    prompt = f"hard {secrets.token_hex(3)} [tokens:60] [token-ms:5] [ignore-max-tokens]"
    reserved = reservation_of(prompt, 20)
    outcomes = await gather([ask(spread.next(), app, prompt, max_tokens=20) for _ in range(30)])
    served = [o for o in outcomes if o.status == 200]
    assert len(served) == budget // reserved, (len(served), reserved)
    for outcome in outcomes:
        if outcome.status == 429:
            assert_quota_refusal(outcome, limit)
            continue
        # Stopped where the reservation ends: 20 tokens, then the quota_exceeded event.
        assert outcome.event_names == ["delta"] * 20 + ["error"], outcome.event_names
        assert outcome.error_code == "quota_exceeded", outcome.events[-1]
    records = await records_of(spread.clients[2], app, len(outcomes))
    stopped = [r for r in records if r["outcome"] == "quota_stopped"]
    assert len(stopped) == len(served), records
    assert all(u == reserved for u in tokens_of(stopped)), (tokens_of(stopped), reserved)
    assert sum(tokens_of(records)) <= budget
