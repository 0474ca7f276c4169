"""OpenAI-compatible upstream over the gateway's own pooled HTTP/1.1 client (upstream/wire/).

Not the SDK on the hot path: it builds pydantic models for every chunk, which costs more than
the rest of the gateway together, and hides the raw bytes the /v1 routes forward; not httpx
either (see upstream/wire/). Every transport error is translated at this boundary, into the
``UpstreamError`` tree (``upstream.errors``); nothing from the transport leaks upward. Chat
streams and answers are parsed in ``upstream.chat``, the Responses API's in ``upstream.responses``.
"""

from __future__ import annotations

import asyncio
import json
import time
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import orjson
from loguru import logger

from gateway.core.errors import UpstreamError, UpstreamTimeout
from gateway.core.redact import Redactor
from gateway.core.trace_context import upstream_traceparent
from gateway.upstream import responses
from gateway.upstream.chat import DEFAULT_MAX_EVENT_BYTES, OpenAIStream, parse_completion
from gateway.upstream.errors import error_for_status, retry_after, transport_error
from gateway.upstream.proxy import ProxyRoutes
from gateway.upstream.tunnel import egress_pool
from gateway.upstream.types import ChatRequest, Completion
from gateway.upstream.wire import Pool, ReadTimedOut, Response, WireError

#: Where each API is, under the app's base URL.
_PATHS = {"chat": "chat/completions", "responses": "responses", "embeddings": "embeddings"}
#: The most a GET or DELETE answer may hold (a stored response, with its output).
_MAX_FETCHED = 16 * 1024 * 1024

_log = logger.opt(depth=0)


@lru_cache(maxsize=256)  # a handful of base URLs; parsed once each, not per call
def _without_credentials(url: str) -> str:
    """The URL as it may be logged: no user:password@, no query (keys have been put there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _dumps(body: Any) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # orjson refuses integers beyond 64 bits, which JSON (and json) allow
        return json.dumps(body, ensure_ascii=False).encode()


class OpenAIUpstream:
    """One connection pool for every app; each request carries its own key and base URL."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        first_token_timeout: float,
        allowed_hosts: tuple[str, ...] = (),
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        proxies: ProxyRoutes | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        self._first_token_timeout = first_token_timeout
        self._max_event_bytes = max_event_bytes
        # Every new connection goes through the SSRF guard, after DNS resolution (and
        # through the egress proxy, when one is configured for its origin).
        self._pool = egress_pool(
            allowed_hosts=allowed_hosts,
            connect_timeout=connect_timeout,
            proxies=proxies,
            ca_bundle=ca_bundle,
        )

    @property
    def pool(self) -> Pool:
        return self._pool

    async def _post(self, url: str, api_key: str, body: Any, *, accept: str) -> Response:
        headers: tuple[tuple[str, str], ...] = (
            ("Authorization", f"Bearer {api_key}"),
            ("Accept", accept),
        )
        traceparent = upstream_traceparent.get()
        if traceparent is not None:
            headers = (*headers, ("traceparent", traceparent))
        started = time.perf_counter()
        try:
            response = await self._pool.post(
                url, _dumps(body), headers, timeout=self._first_token_timeout
            )
        except WireError as exc:
            _log.debug("upstream POST {} failed: {}", _without_credentials(url), type(exc).__name__)
            raise
        # DEBUG: one line per upstream call, inside its request (the id comes from the context).
        _log.debug(
            "upstream POST {} -> {} in {:.1f} ms",
            _without_credentials(url),
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def open_stream(self, request: ChatRequest) -> OpenAIStream:
        try:
            response = await self._post(
                f"{request.base_url}/{_PATHS[request.api]}",
                request.api_key,
                request.body(stream=True),
                accept="text/event-stream",
            )
            if response.status != 200:
                body = await response.read_all(self._first_token_timeout)
                raise error_for_status(
                    response.status, body, retry_after(response), Redactor(request.api_key)
                )
        except ReadTimedOut:
            raise UpstreamTimeout("The upstream did not start answering in time.") from None
        except WireError as exc:
            raise transport_error(exc) from None
        if request.api == "responses":
            return responses.ResponsesStream(response, self._max_event_bytes, request.api_key)
        return OpenAIStream(response, self._max_event_bytes, request.api_key)

    async def _call(self, url: str, api_key: str, body: Any, what: str) -> Any:
        """POST, and read the whole JSON answer within the first-token bound."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._first_token_timeout
        try:
            response = await self._post(url, api_key, body, accept="application/json")
            content = await response.read_all(max(0.0, deadline - loop.time()))
        except ReadTimedOut:
            raise UpstreamTimeout(f"The {what} did not answer in time.") from None
        except WireError as exc:
            raise transport_error(exc) from None
        if response.status != 200:
            raise error_for_status(
                response.status, content, retry_after(response), Redactor(api_key)
            )
        try:
            return orjson.loads(content)
        except ValueError:
            raise UpstreamError(f"The {what} sent a malformed answer.") from None

    async def complete(self, request: ChatRequest) -> Completion:
        data = await self._call(
            f"{request.base_url}/{_PATHS[request.api]}",
            request.api_key,
            request.body(stream=False),
            "upstream",
        )
        if request.api == "chat":
            return parse_completion(data, request.model)
        parse = (
            responses.parse_response if request.api == "responses" else responses.parse_embeddings
        )
        return parse(data, request.model)

    async def fetch_json(self, method: str, url: str, api_key: str) -> Any:
        """GET or DELETE ``url``: its JSON answer; a non-200 raises like a POST's would."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._first_token_timeout
        headers = (("Authorization", f"Bearer {api_key}"), ("Accept", "application/json"))
        try:
            response = await self._pool.bodiless(
                method, url, headers, timeout=self._first_token_timeout
            )
            content = await response.read_all(max(0.0, deadline - loop.time()), _MAX_FETCHED)
        except ReadTimedOut:
            raise UpstreamTimeout("The upstream did not answer in time.") from None
        except WireError as exc:
            raise transport_error(exc) from None
        _log.debug("upstream {} {} -> {}", method, _without_credentials(url), response.status)
        if response.status != 200:
            raise error_for_status(
                response.status, content, retry_after(response), Redactor(api_key)
            )
        try:
            return orjson.loads(content)
        except ValueError:
            raise UpstreamError("The upstream sent a malformed answer.") from None

    async def moderate(self, base_url: str, api_key: str, text: str) -> bool:
        """Whether OpenAI's ``/moderations`` flags ``text``; raises UpstreamError subclasses."""
        data = await self._call(
            f"{base_url}/moderations", api_key, {"input": text}, "moderation endpoint"
        )
        try:
            return any(bool(result["flagged"]) for result in data["results"])
        except (KeyError, TypeError):
            raise UpstreamError("The moderation endpoint sent a malformed answer.") from None

    async def aclose(self) -> None:
        await self._pool.aclose()
