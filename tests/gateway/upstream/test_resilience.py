"""ResilientUpstream and CircuitBreakers, with a scripted upstream, a fake clock and fake sleep.

Nothing sleeps for real: ``FakeTime.sleep`` records the pause and moves ``FakeTime.now`` on, so
backoff bounds, Retry-After and the deadline are checked exactly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import pytest

from gateway.core.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.upstream.resilience import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreakers,
    ResilientUpstream,
    RetryPolicy,
)
from gateway.upstream.types import ChatRequest, Completion, Usage

pytestmark = pytest.mark.anyio

BASE = "https://upstream.test/v1"
OTHER = "https://other.test/v1"
OK = "ok"


@dataclass
class FakeTime:
    now: float = 1000.0
    pauses: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        self.pauses.append(seconds)
        self.now += seconds


@dataclass
class Opened:
    """What the scripted upstream 'opens': enough to tell which request it answered."""

    model: str
    request: ChatRequest

    async def next_chunk(self, timeout: float) -> None:
        return None

    def ready(self) -> bool:
        return False

    async def aclose(self) -> None:
        return None


Outcome = str | BaseException


@dataclass
class Scripted:
    """Answers each call with the next outcome scripted for its model (the last one repeats)."""

    time: FakeTime
    script: dict[str, list[Outcome]]
    call_duration: float = 0.0
    calls: list[tuple[str, str, float]] = field(default_factory=list)  # (base, model, at)

    def _next(self, request: ChatRequest) -> Outcome:
        self.calls.append((request.base_url, request.model, self.time.now))
        self.time.now += self.call_duration
        outcomes = self.script[request.model]
        return outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]

    async def open_stream(self, request: ChatRequest) -> Opened:
        outcome = self._next(request)
        if isinstance(outcome, BaseException):
            raise outcome
        return Opened(request.model, request)

    async def complete(self, request: ChatRequest) -> Completion:
        outcome = self._next(request)
        if isinstance(outcome, BaseException):
            raise outcome
        return Completion(
            raw={}, text="hi", finish_reason="stop", model=request.model, usage=Usage()
        )

    async def aclose(self) -> None:
        return None

    @property
    def models(self) -> list[str]:
        return [model for _, model, _ in self.calls]


def request(model: str = "primary", fallbacks: Sequence[str] = (), base: str = BASE) -> ChatRequest:
    return ChatRequest(
        base_url=base,
        api_key="sk-test",
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=16,
        temperature=0.5,
        extra={"user": "u1"},
        fallback_models=tuple(fallbacks),
    )


def rejected(status: int) -> UpstreamRejected:
    error = UpstreamRejected(f"HTTP {status}")
    error.upstream_status = status
    return error


def unavailable() -> UpstreamUnavailable:
    return UpstreamUnavailable("The upstream cannot be reached.")


def build(
    script: dict[str, list[Outcome]],
    *,
    attempts: int = 3,
    base_s: float = 0.2,
    max_s: float = 2.0,
    deadline_s: float = 20.0,
    threshold: int = 1000,
    cooldown_s: float = 10.0,
    call_duration: float = 0.0,
) -> tuple[ResilientUpstream, Scripted, FakeTime]:
    time = FakeTime()
    inner = Scripted(time, script, call_duration=call_duration)
    breakers = CircuitBreakers(failure_threshold=threshold, cooldown_s=cooldown_s, clock=time.clock)
    upstream = ResilientUpstream(
        inner,
        policy=RetryPolicy(
            attempts=attempts, backoff_base_s=base_s, backoff_max_s=max_s, deadline_s=deadline_s
        ),
        breakers=breakers,
        sleep=time.sleep,
        clock=time.clock,
    )
    return upstream, inner, time


async def open_(upstream: ResilientUpstream, chat: ChatRequest) -> Opened:
    opened = await upstream.open_stream(chat)
    assert isinstance(opened, Opened)
    return opened


@pytest.fixture
def max_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full jitter always draws its ceiling (so the ceilings can be checked exactly)."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)


# --- retries --------------------------------------------------------------------------------


async def test_a_success_is_not_retried() -> None:
    upstream, inner, time = build({"primary": [OK]})
    opened = await open_(upstream, request())
    assert isinstance(opened, Opened) and opened.model == "primary"
    assert inner.models == ["primary"]
    assert time.pauses == [] and upstream.retries == 0


@pytest.mark.parametrize(
    "error",
    [unavailable(), UpstreamError("HTTP 500"), UpstreamRateLimited("429", retry_after=None)],
    ids=["connect-error", "5xx", "429-without-retry-after"],
)
async def test_retryable_errors_are_retried_until_success(error: UpstreamError) -> None:
    upstream, inner, time = build({"primary": [error, error, OK]})
    opened = await open_(upstream, request())
    assert opened.model == "primary"
    assert inner.models == ["primary"] * 3
    assert len(time.pauses) == 2 and upstream.retries == 2


async def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    last = UpstreamError("HTTP 500, the last one")
    upstream, inner, time = build({"primary": [unavailable(), unavailable(), last]}, attempts=3)
    with pytest.raises(UpstreamError) as raised:
        await open_(upstream, request())
    assert raised.value is last
    assert inner.models == ["primary"] * 3
    assert len(time.pauses) == 2  # no pause after the last attempt


async def test_one_attempt_means_no_retry() -> None:
    upstream, inner, time = build({"primary": [unavailable()]}, attempts=1)
    with pytest.raises(UpstreamUnavailable):
        await open_(upstream, request())
    assert inner.models == ["primary"] and time.pauses == []


async def test_backoff_ceiling_doubles_up_to_the_maximum(max_jitter: None) -> None:
    upstream, _, time = build({"primary": [unavailable()]}, attempts=6, base_s=0.2, max_s=1.0)
    with pytest.raises(UpstreamUnavailable):
        await open_(upstream, request())
    assert time.pauses == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])


async def test_backoff_is_jittered_within_its_ceiling() -> None:
    pauses: list[float] = []
    for _ in range(50):
        upstream, _, time = build({"primary": [unavailable()]}, attempts=4, base_s=0.1, max_s=0.3)
        with pytest.raises(UpstreamUnavailable):
            await open_(upstream, request())
        for attempt, pause in enumerate(time.pauses, start=1):
            assert 0 <= pause <= min(0.3, 0.1 * 2 ** (attempt - 1)) + 1e-9, (attempt, pause)
        pauses.extend(time.pauses)
    assert len(set(pauses)) > 10, "the backoff is not jittered"


async def test_retry_after_is_honoured_exactly(max_jitter: None) -> None:
    limited = UpstreamRateLimited("429", retry_after=1.5)
    upstream, inner, time = build({"primary": [limited, limited, OK]})
    await open_(upstream, request())
    assert time.pauses == [1.5, 1.5]
    assert [at for _, _, at in inner.calls] == [1000.0, 1001.5, 1003.0]


async def test_retry_after_beyond_the_deadline_gives_up_at_once() -> None:
    limited = UpstreamRateLimited("429", retry_after=30)
    upstream, inner, time = build({"primary": [limited, OK]}, deadline_s=20)
    with pytest.raises(UpstreamRateLimited) as raised:
        await open_(upstream, request())
    assert raised.value.retry_after == 30  # passed on to the client's Retry-After
    assert inner.models == ["primary"] and time.pauses == []


async def test_the_deadline_bounds_retries_and_their_pauses(max_jitter: None) -> None:
    # Each call takes 0.3 s, each pause 0.5 s (ceiling): 1000.0 call, 1000.8 call, then the
    # next pause would end at 1001.6 >= the deadline 1001.5: give up after two calls.
    upstream, inner, time = build(
        {"primary": [unavailable()]},
        attempts=10,
        base_s=0.5,
        max_s=0.5,
        deadline_s=1.5,
        call_duration=0.3,
    )
    with pytest.raises(UpstreamUnavailable):
        await open_(upstream, request())
    assert inner.models == ["primary", "primary"]
    assert time.now - 1000.0 <= 1.5


async def test_the_deadline_covers_fallbacks_too(max_jitter: None) -> None:
    upstream, inner, _ = build(
        {"primary": [unavailable()], "fallback": [OK]},
        attempts=3,
        base_s=1.0,
        max_s=1.0,
        deadline_s=2.5,
        call_duration=0.5,
    )
    # primary at 0, pause 1 -> 1.5, primary at 1.5 -> 2.0 (next pause ends past 2.5): 2.0 is
    # still before the deadline, so the fallback gets its chance.
    opened = await open_(upstream, request(fallbacks=["fallback"]))
    assert opened.model == "fallback"
    assert inner.models == ["primary", "primary", "fallback"]

    upstream, inner, _ = build(
        {"primary": [unavailable()], "fallback": [OK]},
        attempts=2,
        base_s=1.0,
        max_s=1.0,
        deadline_s=2.0,
        call_duration=0.5,
    )
    # primary at 0 (-> 0.5), pause 1 (-> 1.5), primary (-> 2.0 = the deadline): no fallback.
    with pytest.raises(UpstreamUnavailable):
        await open_(upstream, request(fallbacks=["fallback"]))
    assert inner.models == ["primary", "primary"]


async def test_timeouts_are_not_retried() -> None:
    upstream, inner, time = build({"primary": [UpstreamTimeout("slow"), OK]})
    with pytest.raises(UpstreamTimeout):
        await open_(upstream, request(fallbacks=["fallback"]))
    assert inner.models == ["primary"] and time.pauses == []


@pytest.mark.parametrize(
    "error",
    [rejected(400), rejected(422), UpstreamAuthFailed("401"), rejected(404)],
    ids=["400", "422", "401", "404-without-fallback"],
)
async def test_4xx_are_not_retried(error: UpstreamError) -> None:
    upstream, inner, time = build({"primary": [error, OK]})
    with pytest.raises(UpstreamError) as raised:
        await open_(upstream, request())
    assert raised.value is error
    assert inner.models == ["primary"] and time.pauses == []


async def test_complete_is_retried_like_a_stream() -> None:
    upstream, inner, _ = build({"primary": [unavailable(), rejected(404)], "fallback": [OK]})
    completion = await upstream.complete(request(fallbacks=["fallback"]))
    assert completion.model == "fallback"
    assert inner.models == ["primary", "primary", "fallback"]


# --- fallbacks ------------------------------------------------------------------------------


async def test_a_404_moves_to_the_next_model_in_order() -> None:
    upstream, inner, time = build(
        {"primary": [rejected(404)], "second": [rejected(404)], "third": [OK], "fourth": [OK]}
    )
    opened = await open_(upstream, request(fallbacks=["second", "third", "fourth"]))
    assert opened.model == "third"
    assert inner.models == ["primary", "second", "third"]
    assert time.pauses == []  # a 404 is not retried on the same model
    assert upstream.fallbacks == 2
    # Only the model changes: the rest of the request goes to the fallback as it was.
    sent = opened.request
    original = request(fallbacks=["second", "third", "fourth"])
    assert (sent.messages, sent.max_tokens, sent.temperature, sent.extra, sent.api_key) == (
        original.messages,
        original.max_tokens,
        original.temperature,
        original.extra,
        original.api_key,
    )


async def test_exhausted_retries_move_to_the_next_model() -> None:
    upstream, inner, time = build(
        {"primary": [UpstreamError("500")], "fallback": [unavailable(), OK]}, attempts=3
    )
    opened = await open_(upstream, request(fallbacks=["fallback"]))
    assert opened.model == "fallback"
    assert inner.models == ["primary"] * 3 + ["fallback"] * 2
    assert len(time.pauses) == 3


async def test_every_model_failing_raises_the_last_error() -> None:
    last = rejected(404)
    upstream, inner, _ = build({"primary": [rejected(404)], "fallback": [last]})
    with pytest.raises(UpstreamRejected) as raised:
        await open_(upstream, request(fallbacks=["fallback"]))
    assert raised.value is last
    assert inner.models == ["primary", "fallback"]


@pytest.mark.parametrize(
    "error",
    [rejected(400), UpstreamAuthFailed("401"), UpstreamTimeout("slow")],
    ids=["400", "401", "timeout"],
)
async def test_errors_a_fallback_cannot_fix_do_not_move_on(error: UpstreamError) -> None:
    upstream, inner, _ = build({"primary": [error], "fallback": [OK]})
    with pytest.raises(UpstreamError) as raised:
        await open_(upstream, request(fallbacks=["fallback"]))
    assert raised.value is error
    assert inner.models == ["primary"]


# --- the circuit breaker --------------------------------------------------------------------


async def test_the_circuit_opens_after_the_threshold_then_fails_fast() -> None:
    upstream, inner, time = build(
        {"primary": [unavailable()]}, attempts=1, threshold=3, cooldown_s=10
    )
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            await open_(upstream, request())
    assert upstream.breakers.states() == {BASE: OPEN}
    calls = len(inner.calls)
    with pytest.raises(UpstreamUnavailable) as raised:
        await open_(upstream, request())
    assert "circuit breaker" in raised.value.message
    assert raised.value.http_status == 503 and raised.value.code == "upstream_unavailable"
    assert len(inner.calls) == calls, "an open circuit must not call the upstream"
    # Still open just before the cool-down ends.
    time.now += 9.9
    with pytest.raises(UpstreamUnavailable):
        await open_(upstream, request())
    assert len(inner.calls) == calls


async def test_failures_within_retries_count_towards_the_threshold() -> None:
    upstream, inner, _ = build({"primary": [unavailable()]}, attempts=5, threshold=3)
    with pytest.raises(UpstreamUnavailable) as raised:
        await open_(upstream, request())
    # Three real calls opened the circuit; the fourth attempt was refused without a call.
    assert inner.models == ["primary"] * 3
    assert "circuit breaker" in raised.value.message


async def test_half_open_lets_one_probe_through_and_a_success_closes() -> None:
    upstream, _, time = build(
        {"primary": [unavailable(), unavailable(), OK]}, attempts=1, threshold=2, cooldown_s=5
    )
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            await open_(upstream, request())
    time.now += 5
    assert upstream.breakers.states() == {BASE: HALF_OPEN}
    breakers = upstream.breakers
    assert breakers.allow(BASE) is True  # the probe
    assert breakers.allow(BASE) is False  # a second caller while the probe runs
    assert breakers.allow(BASE) is False
    breakers.success(BASE)
    assert breakers.states() == {}
    assert all(breakers.allow(BASE) for _ in range(3))
    # And through ResilientUpstream: the probe is a real call, the circuit closes.
    await open_(upstream, request())
    assert upstream.breakers.states() == {}


async def test_concurrent_requests_send_a_single_probe() -> None:
    time = FakeTime()
    breakers = CircuitBreakers(failure_threshold=1, cooldown_s=1, clock=time.clock)
    probe_started = anyio.Event()
    release = anyio.Event()
    calls: list[str] = []

    class Slow:
        async def open_stream(self, request: ChatRequest) -> Opened:
            calls.append(request.model)
            probe_started.set()
            await release.wait()
            return Opened(request.model, request)

        async def complete(self, request: ChatRequest) -> Completion:
            raise AssertionError

        async def aclose(self) -> None:
            return None

    upstream = ResilientUpstream(
        Slow(), breakers=breakers, sleep=time.sleep, clock=time.clock, policy=RetryPolicy(1)
    )
    breakers.failure(BASE)
    time.now += 1
    results: list[str] = []

    async def one() -> None:
        try:
            await open_(upstream, request())
            results.append("opened")
        except UpstreamUnavailable:
            results.append("refused")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(one)
        await probe_started.wait()
        for _ in range(5):
            tasks.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        assert sorted(results) == ["refused"] * 5
        release.set()
    assert calls == ["primary"]
    assert sorted(results) == ["opened"] + ["refused"] * 5
    assert breakers.states() == {}


async def test_a_failed_probe_reopens_the_circuit_for_a_new_cool_down() -> None:
    upstream, inner, time = build(
        {"primary": [unavailable()]}, attempts=1, threshold=2, cooldown_s=5
    )
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            await open_(upstream, request())
    time.now += 5
    with pytest.raises(UpstreamUnavailable) as raised:
        await open_(upstream, request())  # the probe: a real call, which fails
    assert "circuit breaker" not in raised.value.message
    assert len(inner.calls) == 3
    assert upstream.breakers.states() == {BASE: OPEN}
    time.now += 4.9
    with pytest.raises(UpstreamUnavailable) as raised:
        await open_(upstream, request())
    assert "circuit breaker" in raised.value.message
    assert len(inner.calls) == 3
    time.now += 0.1
    assert upstream.breakers.states() == {BASE: HALF_OPEN}


async def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breakers = CircuitBreakers(failure_threshold=3, cooldown_s=10, clock=FakeTime().clock)
    for _ in range(5):
        breakers.failure(BASE)
        breakers.failure(BASE)
        breakers.success(BASE)
    assert breakers.allow(BASE)
    assert breakers.states() == {}


async def test_circuits_are_per_base_url() -> None:
    upstream, inner, _ = build({"primary": [unavailable()]}, attempts=1, threshold=1)
    with pytest.raises(UpstreamUnavailable):
        await open_(upstream, request(base=BASE))
    inner.script["primary"] = [OK]
    opened = await open_(upstream, request(base=OTHER))
    assert opened.model == "primary"
    assert upstream.breakers.states() == {BASE: OPEN}


@pytest.mark.parametrize(
    "error",
    [
        rejected(400),
        rejected(404),
        UpstreamTimeout("slow"),
        UpstreamAuthFailed("HTTP 401: this app's key"),
        UpstreamRateLimited("HTTP 429: this app's rate limit", retry_after=None),
    ],
    ids=["400", "404", "timeout", "401", "429"],
)
async def test_answers_about_one_app_do_not_open_the_shared_circuit(error: UpstreamError) -> None:
    """The upstream answered; what it said concerns this app's request or key, not its health.

    A base URL (api.openai.com) is shared by every app: one app's bad key or exhausted rate
    limit must not make the gateway refuse every other app with 503.
    """
    upstream, _, _ = build({"primary": [error]}, attempts=1, threshold=2)
    for _ in range(5):
        with pytest.raises(UpstreamError):
            await open_(upstream, request())
    assert upstream.breakers.states().get(BASE, CLOSED) == CLOSED
    assert upstream.breakers.allow(BASE)


async def test_a_cancelled_probe_does_not_wedge_the_circuit() -> None:
    """A probe whose caller goes away (client disconnect, shutdown) must free the half-open slot.

    Otherwise ``probing`` stays set forever and every later request is refused with 503.
    """
    time = FakeTime()
    breakers = CircuitBreakers(failure_threshold=1, cooldown_s=1, clock=time.clock)
    hang = True
    calls: list[str] = []

    class MaybeHangs:
        async def open_stream(self, request: ChatRequest) -> Opened:
            calls.append(request.model)
            if hang:
                await anyio.sleep_forever()
            return Opened(request.model, request)

        async def complete(self, request: ChatRequest) -> Completion:
            raise AssertionError

        async def aclose(self) -> None:
            return None

    upstream = ResilientUpstream(
        MaybeHangs(), breakers=breakers, sleep=time.sleep, clock=time.clock, policy=RetryPolicy(1)
    )
    breakers.failure(BASE)
    time.now += 1
    with anyio.move_on_after(0.05):
        await open_(upstream, request())  # the probe; its caller is cancelled
    assert calls == ["primary"]
    hang = False
    time.now += 1  # even after another cool-down
    opened = await open_(upstream, request())
    assert opened.model == "primary"
    assert calls == ["primary", "primary"]


async def test_states_lists_failing_upstreams_without_changing_them() -> None:
    time = FakeTime()
    breakers = CircuitBreakers(failure_threshold=2, cooldown_s=3, clock=time.clock)
    breakers.failure(BASE)
    assert breakers.states() == {BASE: CLOSED}  # failing lately, not open yet
    breakers.failure(BASE)
    breakers.failure(OTHER)
    breakers.failure(OTHER)
    assert breakers.states() == {BASE: OPEN, OTHER: OPEN}
    time.now += 3
    assert breakers.states() == {BASE: HALF_OPEN, OTHER: HALF_OPEN}
    assert breakers.states() == {BASE: HALF_OPEN, OTHER: HALF_OPEN}  # reading is idempotent
    assert breakers.allow(BASE)
    assert not breakers.allow(BASE)
