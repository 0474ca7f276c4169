"""OpenAI-compatible upstream over a shared ``httpx.AsyncClient``.

Plain httpx rather than the SDK on the hot path: the SDK builds pydantic models for every
chunk, which costs more than the rest of the gateway together, and hides the raw bytes the
/v1 routes forward. Every httpx error is translated here, at the boundary, into the
``UpstreamError`` tree; nothing from httpx leaks upward.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx

from gateway.core.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.core.redact import redact_text
from gateway.upstream.egress import GuardedBackend
from gateway.upstream.types import ChatRequest, Chunk, Completion, Usage

_DATA_BYTES = b"data:"


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    return Usage(
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
    )


def parse_chunk(raw: str) -> Chunk:
    data = json.loads(raw)
    choices = data.get("choices") or []
    usage = _usage(data.get("usage"))
    if not choices:
        return Chunk(raw=raw, model=data.get("model"), usage=usage, usage_only=usage is not None)
    choice = choices[0]
    delta = choice.get("delta") or {}
    return Chunk(
        raw=raw,
        text=delta.get("content") or "",
        finish_reason=choice.get("finish_reason"),
        model=data.get("model"),
        usage=usage,
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _upstream_message(body: bytes) -> str:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return redact_text(str(message))[:300]


def error_for_status(status: int, body: bytes, retry_after: float | None) -> UpstreamError:
    detail = _upstream_message(body)
    suffix = f": {detail}" if detail else ""
    if status in (401, 403):
        return UpstreamAuthFailed(
            f"The upstream refused this app's provider key (HTTP {status}); "
            "the operator must update it with `orchestra keys set`."
        )
    if status == 429:
        return UpstreamRateLimited(
            f"The upstream is rate limiting this app (HTTP 429){suffix}", retry_after=retry_after
        )
    if status in (502, 503):
        return UpstreamUnavailable(f"The upstream is unavailable (HTTP {status}){suffix}")
    if status == 504:
        return UpstreamTimeout(f"The upstream timed out (HTTP 504){suffix}")
    if status < 500:
        rejected = UpstreamRejected(f"The upstream refused the request (HTTP {status}){suffix}")
        rejected.upstream_status = status
        return rejected
    return UpstreamError(f"The upstream answered HTTP {status}{suffix}")


def _transport_error(exc: httpx.HTTPError) -> UpstreamError:
    # ConnectTimeout is a TimeoutException too: a connection that never opens is an
    # unreachable upstream (retried, counted by the circuit breaker), not a slow answer.
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return UpstreamUnavailable("The upstream cannot be reached.")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout("The upstream did not answer in time.")
    return UpstreamError("The connection to the upstream failed.")


class OpenAIStream:
    """The upstream's SSE body, parsed from raw network reads.

    One deadline (first token, then idle) per network read rather than per event: a read
    often carries many events, and they are handed out without waiting again.
    """

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        # aiter_bytes, not aiter_raw: a compressed (gzip) stream is decoded.
        self._raw: AsyncIterator[bytes] = response.aiter_bytes()
        self._buffer = b""
        self._payloads: deque[bytes] = deque()
        self._done = False

    async def next_chunk(self, timeout: float) -> Chunk | None:
        while not self._payloads:
            if self._done:
                return None
            await self._read(timeout)
        payload = self._payloads.popleft()
        if payload == b"[DONE]":
            self._done = True
            self._payloads.clear()
            await self._drain()
            return None
        try:
            return parse_chunk(payload.decode())
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UpstreamError("The upstream sent a malformed stream event.") from None

    async def _read(self, timeout: float) -> None:
        try:
            with anyio.fail_after(timeout):
                block = await self._raw.__anext__()
        except TimeoutError:
            raise UpstreamTimeout(f"The upstream sent nothing for {timeout:g} s.") from None
        except StopAsyncIteration:
            # The connection ended without [DONE]: the answer is cut, not complete.
            raise UpstreamError("The upstream stream ended before it was complete.") from None
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        buffer = self._buffer + block
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *events, self._buffer = buffer.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(_DATA_BYTES):
                    self._payloads.append(line[len(_DATA_BYTES) :].strip())

    async def _drain(self) -> None:
        """Read the end of the body after [DONE], so the connection goes back to the pool.

        Closing a response that was not read to its end closes its connection, and every
        answer would then pay a new TCP (and TLS) handshake to the upstream.
        """
        async for _ in self._raw:
            pass

    async def aclose(self) -> None:
        await self._response.aclose()


class OpenAIUpstream:
    """One connection pool for every app; each request carries its own key and base URL."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        first_token_timeout: float,
        allowed_hosts: tuple[str, ...] = (),
    ) -> None:
        self._first_token_timeout = first_token_timeout
        transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200),
        )
        # httpx has no public hook for the connect step: the SSRF guard wraps the pool's
        # network backend, so every new connection is checked after DNS resolution.
        pool = transport._pool
        pool._network_backend = GuardedBackend(pool._network_backend, allowed_hosts)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(
                connect=connect_timeout, read=None, write=30.0, pool=connect_timeout
            ),
            follow_redirects=False,
            trust_env=False,
        )

    def _build(self, request: ChatRequest, *, stream: bool) -> httpx.Request:
        return self._client.build_request(
            "POST",
            f"{request.base_url}/chat/completions",
            json=request.body(stream=stream),
            headers={
                "Authorization": f"Bearer {request.api_key}",
                "Accept": "text/event-stream" if stream else "application/json",
            },
        )

    async def open_stream(self, request: ChatRequest) -> OpenAIStream:
        try:
            with anyio.fail_after(self._first_token_timeout):
                response = await self._client.send(self._build(request, stream=True), stream=True)
                if response.status_code != 200:
                    body = await response.aread()
                    await response.aclose()
                    raise error_for_status(response.status_code, body, _retry_after(response))
        except TimeoutError:
            raise UpstreamTimeout("The upstream did not start answering in time.") from None
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        return OpenAIStream(response)

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            with anyio.fail_after(self._first_token_timeout):
                response = await self._client.send(self._build(request, stream=False))
        except TimeoutError:
            raise UpstreamTimeout("The upstream did not answer in time.") from None
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        if response.status_code != 200:
            raise error_for_status(response.status_code, response.content, _retry_after(response))
        try:
            data = response.json()
            choice = data["choices"][0]
            return Completion(
                raw=data,
                text=(choice.get("message") or {}).get("content") or "",
                finish_reason=choice.get("finish_reason"),
                model=str(data.get("model") or request.model),
                usage=_usage(data.get("usage")) or Usage(),
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            raise UpstreamError("The upstream sent a malformed answer.") from None

    async def moderate(self, base_url: str, api_key: str, text: str) -> bool:
        """Whether OpenAI's ``/moderations`` flags ``text``; raises UpstreamError subclasses."""
        try:
            with anyio.fail_after(self._first_token_timeout):
                response = await self._client.post(
                    f"{base_url}/moderations",
                    json={"input": text},
                    headers={"Authorization": f"Bearer {api_key}"},
                )
        except TimeoutError:
            raise UpstreamTimeout("The moderation endpoint did not answer in time.") from None
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        if response.status_code != 200:
            raise error_for_status(response.status_code, response.content, _retry_after(response))
        try:
            return any(bool(result["flagged"]) for result in response.json()["results"])
        except (ValueError, KeyError, TypeError):
            raise UpstreamError("The moderation endpoint sent a malformed answer.") from None

    async def aclose(self) -> None:
        await self._client.aclose()
