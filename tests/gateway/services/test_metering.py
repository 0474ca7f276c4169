"""QuotaMeter's reservation: the prompt counted with the tokenizer, off the event loop when slow.

A small prompt, once the encoding is loaded, is counted in the event loop (well under a
millisecond); the first count (it loads the encoding, ~0.4 s) and a long prompt run in a worker
thread, so that other requests go on meanwhile.
"""

from __future__ import annotations

import threading

import pytest

from gateway.core.pricing import PriceTable
from gateway.services import metering
from gateway.services.limiter import Limiter
from gateway.services.metering import QuotaMeter
from gateway.services.views import QuotaLimits
from gateway.storage.counters.memory import MemoryCounters
from gateway.upstream import tokenizer
from gateway.upstream.tokenizer import INLINE_BYTES, count_messages
from gateway.upstream.types import ChatRequest

pytestmark = pytest.mark.anyio

MODEL = "gpt-4o-mini"


def request(content: str) -> ChatRequest:
    return ChatRequest(
        base_url="https://api.openai.com/v1",
        api_key="sk-test",
        model=MODEL,
        messages=[{"role": "user", "content": content}],
    )


def meter(quota: QuotaLimits) -> QuotaMeter:
    limiter = Limiter(MemoryCounters(), PriceTable({}), ttl=60.0)
    return QuotaMeter(limiter, app_id="app_1", quota=quota)


@pytest.fixture
def counted_in(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads each count ran in."""
    threads: list[str] = []

    def count(messages: list[dict[str, object]], model: str) -> int:
        threads.append(threading.current_thread().name)
        return count_messages(messages, model)

    monkeypatch.setattr(metering, "count_messages", count)
    return threads


async def test_a_token_limit_reserves_the_counted_prompt(counted_in: list[str]) -> None:
    quota = meter(QuotaLimits(tpm=100_000))
    ask = request("How many tokens is this sentence?")
    await quota.reserve(ask, max_output_tokens=100)
    assert quota.prompt_estimate == count_messages(ask.messages, MODEL)
    assert quota.states  # the tpm limit's state, for the headers


async def test_without_token_limits_nothing_is_counted(counted_in: list[str]) -> None:
    quota = meter(QuotaLimits(rpm=10))
    await quota.reserve(request("hello"), max_output_tokens=100)
    assert quota.prompt_estimate is None
    assert counted_in == []


async def test_small_prompts_are_counted_in_the_loop_and_long_ones_in_a_thread(
    counted_in: list[str],
) -> None:
    tokenizer.warm_up(MODEL)
    loop = threading.current_thread().name
    await meter(QuotaLimits(tpm=10**9)).reserve(request("short"), max_output_tokens=10)
    long = request("word " * INLINE_BYTES)
    await meter(QuotaLimits(tpm=10**9)).reserve(long, max_output_tokens=10)
    assert counted_in[0] == loop
    assert counted_in[1] != loop


async def test_the_first_count_loads_the_encoding_in_a_thread(
    counted_in: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokenizer, "_encodings", {})
    quota = meter(QuotaLimits(tokens_per_day=10**6))
    await quota.reserve(request("short"), max_output_tokens=10)
    assert counted_in[0] != threading.current_thread().name
    assert tokenizer.is_loaded(MODEL)
