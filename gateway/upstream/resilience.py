"""Retries, fallback models and a circuit breaker, before the first byte reaches the client.

``ResilientUpstream`` wraps any UpstreamClient. Opening a stream (or a whole answer) is
retried on connection errors, 5xx and 429 with jittered exponential backoff, honouring
``Retry-After``, within a total deadline; when a model keeps failing, the app's fallback models
are tried in order. Once the first chunk is out nothing is retried: a broken stream ends with
an ``error`` event (see services/ask.py). Timeouts are not retried: a hung upstream is
answered within the configured bound.

The circuit breaker is per upstream base URL: after ``failure_threshold`` consecutive failures
it opens and every request fails fast with 503 ``upstream_unavailable`` for ``cooldown``
seconds, then one probe is let through (half-open); a success closes it again. Only failures
of the upstream itself count (connection errors, 5xx): a 4xx, a refused key or a 429 concerns
one app's request or key, and the base URL is shared by every app.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import anyio

from gateway.core.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.upstream.client import ChunkStream, UpstreamClient
from gateway.upstream.types import ChatRequest, Completion

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3  # per model, the first try included
    backoff_base_s: float = 0.2
    backoff_max_s: float = 2.0
    deadline_s: float = 20.0  # for all tries and fallbacks together


@dataclass(slots=True)
class _Circuit:
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False


class CircuitBreakers:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._cooldown = cooldown_s
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def allow(self, upstream: str) -> bool:
        circuit = self._circuits.get(upstream)
        if circuit is None or circuit.state == CLOSED:
            return True
        if circuit.state == OPEN and self._clock() - circuit.opened_at >= self._cooldown:
            circuit.state = HALF_OPEN
        if circuit.state == HALF_OPEN and not circuit.probing:
            circuit.probing = True  # exactly one probe at a time
            return True
        return False

    def success(self, upstream: str) -> None:
        self._circuits.pop(upstream, None)

    def is_probing(self, upstream: str) -> bool:
        circuit = self._circuits.get(upstream)
        return circuit is not None and circuit.state == HALF_OPEN and circuit.probing

    def abandon(self, upstream: str) -> None:
        """The probe ended with neither an answer nor a failure (cancelled): free its slot."""
        circuit = self._circuits.get(upstream)
        if circuit is not None:
            circuit.probing = False

    def failure(self, upstream: str) -> None:
        circuit = self._circuits.setdefault(upstream, _Circuit())
        circuit.failures += 1
        circuit.probing = False
        if circuit.state == HALF_OPEN or circuit.failures >= self._threshold:
            circuit.state = OPEN
            circuit.opened_at = self._clock()

    def states(self) -> dict[str, str]:
        """Every upstream that failed lately, and its state (the others are closed)."""
        now = self._clock()
        return {
            upstream: HALF_OPEN
            if c.state == OPEN and now - c.opened_at >= self._cooldown
            else c.state
            for upstream, c in self._circuits.items()
        }


def _worth_retrying(error: UpstreamError) -> bool:
    return error.retryable and not isinstance(error, UpstreamTimeout)


def _upstream_is_failing(error: UpstreamError) -> bool:
    """Whether the error says the upstream is unwell (what the circuit counts).

    A 4xx, a refused key (401/403) or a rate limit (429) is an answer about this request or
    this app's key; the base URL is shared by every app, so they do not count against it.
    """
    return not isinstance(
        error, UpstreamRejected | UpstreamAuthFailed | UpstreamRateLimited | UpstreamTimeout
    )


def _worth_a_fallback(error: UpstreamError) -> bool:
    if isinstance(error, UpstreamRejected):
        return error.upstream_status == 404  # the model does not exist there
    return _worth_retrying(error)


class ResilientUpstream:
    def __init__(
        self,
        inner: UpstreamClient,
        *,
        policy: RetryPolicy = RetryPolicy(),
        breakers: CircuitBreakers | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._policy = policy
        self.breakers = breakers or CircuitBreakers()
        self._sleep = sleep
        self._clock = clock
        self.retries = 0
        self.fallbacks = 0

    async def open_stream(self, request: ChatRequest) -> ChunkStream:
        return await self._call(request, self._inner.open_stream)

    async def complete(self, request: ChatRequest) -> Completion:
        return await self._call(request, self._inner.complete)

    async def fetch_json(self, method: str, url: str, api_key: str) -> Any:
        # Not retried: a DELETE that timed out may have been done; the client decides.
        return await self._inner.fetch_json(method, url, api_key)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def _call(self, request: ChatRequest, send: Callable[[ChatRequest], Awaitable[T]]) -> T:
        deadline = self._clock() + self._policy.deadline_s
        last: UpstreamError | None = None
        for position, model in enumerate((request.model, *request.fallback_models)):
            if position:
                self.fallbacks += 1
            attempt_request = request if model == request.model else replace(request, model=model)
            try:
                return await self._with_retries(attempt_request, send, deadline)
            except UpstreamError as error:
                last = error
                if not _worth_a_fallback(error) or self._clock() >= deadline:
                    raise
        assert last is not None
        raise last

    async def _with_retries(
        self, request: ChatRequest, send: Callable[[ChatRequest], Awaitable[T]], deadline: float
    ) -> T:
        upstream = request.base_url
        for attempt in range(1, self._policy.attempts + 1):
            if not self.breakers.allow(upstream):
                raise UpstreamUnavailable(
                    "The upstream is failing; requests are refused for a cool-down "
                    "(circuit breaker open)."
                )
            probe = self.breakers.is_probing(upstream)  # allow() just gave this call the probe
            try:
                result = await send(request)
            except UpstreamError as error:
                if _upstream_is_failing(error):
                    self.breakers.failure(upstream)
                else:
                    self.breakers.success(upstream)  # it answered: the upstream is up
                if not _worth_retrying(error) or attempt == self._policy.attempts:
                    raise
                pause = self._backoff(attempt, error)
                if self._clock() + pause >= deadline:
                    raise
                self.retries += 1
                await self._sleep(pause)
                continue
            except BaseException:
                # Cancelled (the client left, a shutdown) or a bug: no verdict on the upstream,
                # but a half-open probe must not stay taken forever.
                if probe:
                    self.breakers.abandon(upstream)
                raise
            self.breakers.success(upstream)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, error: UpstreamError) -> float:
        if isinstance(error, UpstreamRateLimited) and error.retry_after is not None:
            return error.retry_after
        ceiling = min(self._policy.backoff_max_s, self._policy.backoff_base_s * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # full jitter
