"""OpenAIUpstream's translation of what an upstream does into the UpstreamError tree.

Only 127.0.0.1 is contacted: a raw server for odd answers, a recorder for connect failures.
"""

from __future__ import annotations

import ssl

import pytest

from gateway.core.errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.upstream.egress import GuardedDialer
from gateway.upstream.openai import OpenAIUpstream
from gateway.upstream.types import ChatRequest
from gateway.upstream.wire import ConnectFailed, Connection, ConnectTimedOut, Dialer
from tests.gateway.upstream.raw_server import answer, chunk_json, raw_server, silent, sse

pytestmark = pytest.mark.anyio


class FailingConnect:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def dial(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float,
    ) -> Connection:
        self.calls += 1
        raise self.error


def _upstream(first_token_timeout: float = 2.0) -> OpenAIUpstream:
    return OpenAIUpstream(connect_timeout=1, first_token_timeout=first_token_timeout)


def _with_backend(upstream: OpenAIUpstream, backend: Dialer) -> None:
    guard = upstream.pool.dialer
    assert isinstance(guard, GuardedDialer)
    guard.inner = backend


def _chat(base_url: str) -> ChatRequest:
    return ChatRequest(
        base_url=base_url,
        api_key="sk-test",
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
    )


async def test_a_refused_connection_is_upstream_unavailable() -> None:
    upstream = _upstream()
    backend = FailingConnect(ConnectFailed("refused"))
    _with_backend(upstream, backend)
    try:
        with pytest.raises(UpstreamUnavailable):
            await upstream.open_stream(_chat("http://127.0.0.1:9/v1"))
    finally:
        await upstream.aclose()
    assert backend.calls == 1


async def test_a_connect_timeout_is_a_connect_error_not_a_hung_upstream() -> None:
    """Nothing was sent: like a refused connection it is retryable and counts for the circuit.

    Mapped to UpstreamTimeout instead, a black-holed upstream is never retried and, since the
    circuit breaker treats timeouts as 'it answered', never opens the circuit either.
    """
    upstream = _upstream()
    _with_backend(upstream, FailingConnect(ConnectTimedOut("timed out")))
    try:
        with pytest.raises(UpstreamError) as raised:
            await upstream.open_stream(_chat("http://127.0.0.1:9/v1"))
    finally:
        await upstream.aclose()
    assert isinstance(raised.value, UpstreamUnavailable), type(raised.value)
    assert raised.value.retryable


async def test_a_garbage_chunk_is_a_typed_upstream_error() -> None:
    async with raw_server(sse([chunk_json(), "{not json"])) as server:
        upstream = _upstream()
        try:
            stream = await upstream.open_stream(_chat(server.base_url))
            first = await stream.next_chunk(1.0)
            assert first is not None and first.text == ""
            with pytest.raises(UpstreamError) as raised:
                await stream.next_chunk(1.0)
            await stream.aclose()
        finally:
            await upstream.aclose()
    assert type(raised.value) is UpstreamError
    assert "malformed" in raised.value.message


@pytest.mark.parametrize("payload", ['{"choices": "nope"}', "[1, 2]", '"text"', "null"])
async def test_json_of_the_wrong_shape_is_a_typed_upstream_error(payload: str) -> None:
    async with raw_server(sse([payload])) as server:
        upstream = _upstream()
        try:
            stream = await upstream.open_stream(_chat(server.base_url))
            with pytest.raises(UpstreamError):
                await stream.next_chunk(1.0)
            await stream.aclose()
        finally:
            await upstream.aclose()


async def test_a_stream_cut_before_done_is_an_error_not_an_end() -> None:
    async with raw_server(sse([chunk_json(), chunk_json("one ")], end=None)) as server:
        upstream = _upstream()
        try:
            stream = await upstream.open_stream(_chat(server.base_url))
            assert (await stream.next_chunk(1.0)) is not None
            chunk = await stream.next_chunk(1.0)
            assert chunk is not None and chunk.text == "one "
            with pytest.raises(UpstreamError) as raised:
                await stream.next_chunk(1.0)
            await stream.aclose()
        finally:
            await upstream.aclose()
    assert "ended before it was complete" in raised.value.message


async def test_an_upstream_that_never_answers_times_out_within_the_bound() -> None:
    async with raw_server(silent) as server:
        upstream = _upstream(first_token_timeout=0.3)
        try:
            with pytest.raises(UpstreamTimeout):
                await upstream.open_stream(_chat(server.base_url))
            with pytest.raises(UpstreamTimeout):
                await upstream.complete(_chat(server.base_url))
        finally:
            await upstream.aclose()


@pytest.mark.parametrize(
    ("header", "expected"),
    [("2", 2.0), ("0.5", 0.5), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)
async def test_retry_after_of_a_429_is_parsed(header: str, expected: float | None) -> None:
    limited = answer(
        429,
        {"error": {"message": "Rate limit reached", "type": "requests"}},
        headers=[("retry-after", header)],
    )
    async with raw_server(limited) as server:
        upstream = _upstream()
        try:
            with pytest.raises(UpstreamRateLimited) as raised:
                await upstream.open_stream(_chat(server.base_url))
        finally:
            await upstream.aclose()
    assert raised.value.retry_after == expected
    assert raised.value.http_status == 429 and raised.value.code == "upstream_rate_limited"


@pytest.mark.parametrize(
    "body",
    [{"choices": []}, {"choices": ["text"]}, {"choices": [{"message": "text"}]}, [1], None],
    ids=["no-choice", "choice-not-an-object", "message-not-an-object", "array", "null"],
)
async def test_a_malformed_whole_answer_is_a_typed_upstream_error(body: object) -> None:
    async with raw_server(answer(200, body)) as server:
        upstream = _upstream()
        try:
            with pytest.raises(UpstreamError) as raised:
                await upstream.complete(_chat(server.base_url))
        finally:
            await upstream.aclose()
    assert "malformed" in raised.value.message
