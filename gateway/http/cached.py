"""The answer cache at the routes: consult it, answer a hit in the route's format, keep misses.

A hit is sent whole at once: JSON, or the complete stream (the same events a live answer
has, the text in one delta) in a single body, so a streaming client gets it at full speed.
Every response of an app with a cache says ``X-Orchestra-Cache: hit`` or ``miss``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson
from fastapi import Request
from starlette.responses import Response

from gateway.core.quota_policy import LimitState
from gateway.http import sse
from gateway.http.json_response import FastJSONResponse
from gateway.http.ratelimit import headers_for
from gateway.http.resources import Resources
from gateway.http.streaming import SSE_HEADERS
from gateway.services.answer_cache import (
    CACHE_HEADER,
    AnswerCache,
    AnswerCapture,
    CachedAnswer,
    CachePlan,
    keepable,
    plan_for,
)
from gateway.services.ask import AnswerEvent, AskInput, CallMeta
from gateway.services.tokens import AppContext
from gateway.upstream.types import Completion


@dataclass
class CacheUse:
    """What the cache did for one request."""

    cache: AnswerCache | None = None
    plan: CachePlan | None = None
    hit: CachedAnswer | None = None
    states: tuple[LimitState, ...] = ()
    #: The app has a cache: the response says hit or miss.
    enabled: bool = False
    _capture: AnswerCapture | None = field(default=None, repr=False)

    def headers(self) -> dict[str, str]:
        if not self.enabled:
            return {}
        return {CACHE_HEADER: "hit" if self.hit is not None else "miss"}

    def capture(self) -> CacheUse | None:
        """Self when a streamed miss should be kept (``see`` each event), else None."""
        if self.cache is None or self.plan is None:
            return None
        self._capture = AnswerCapture()
        return self

    async def see(self, event: AnswerEvent) -> None:
        assert self._capture is not None
        kept = self._capture.see(event)
        if kept is not None and self.cache is not None and self.plan is not None:
            await self.cache.keep(self.plan, kept)

    async def keep(self, completion: Completion) -> None:
        if self.cache is None or self.plan is None:
            return
        kept = keepable(completion)
        if kept is not None:
            await self.cache.keep(self.plan, kept)


async def consult(
    request: Request, resources: Resources, ctx: AppContext, inp: AskInput, meta: CallMeta
) -> CacheUse:
    """Look the request up; a hit is admitted (rpm) and recorded here. Raises QuotaExceeded."""
    cache = resources.answer_cache
    if cache is None or ctx.cache_ttl_s <= 0:
        return CacheUse()
    plan = plan_for(ctx, inp, meta.route, request.headers.get("cache-control"))
    if plan is None:
        return CacheUse(enabled=True)
    hit = await cache.lookup(ctx, plan)
    if hit is None:
        return CacheUse(cache, plan, enabled=True)
    admission = await cache.admit(ctx, plan)
    cache.record_hit(ctx, inp, meta, plan, hit)
    return CacheUse(cache, plan, hit, admission.states, enabled=True)


def openai_hit(use: CacheUse, meta: CallMeta, *, stream: bool, include_usage: bool) -> Response:
    hit = use.hit
    assert hit is not None
    headers = {**headers_for(use.states, openai=True), **use.headers()}
    ident, created = f"chatcmpl-{meta.request_id}", int(time.time())
    if not stream:
        body = {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": hit.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": hit.text},
                    "finish_reason": hit.finish_reason,
                }
            ],
            "usage": hit.usage.to_json(),
        }
        return FastJSONResponse(body, headers=headers)

    def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        data = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": hit.model,
            "choices": [choice],
        }
        return sse.openai_data(orjson.dumps(data).decode())

    parts = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": hit.text}),
        chunk({}, hit.finish_reason),
    ]
    if include_usage:
        usage = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": hit.model,
            "choices": [],
            "usage": hit.usage.to_json(),
        }
        parts.append(sse.openai_data(orjson.dumps(usage).decode()))
    parts.append(sse.OPENAI_DONE)
    return _stream_body(b"".join(parts), headers)


def ask_hit(use: CacheUse, meta: CallMeta, *, stream: bool) -> Response:
    hit = use.hit
    assert hit is not None
    headers = {**headers_for(use.states, openai=False), **use.headers()}
    done = {
        "request_id": meta.request_id,
        "finish_reason": hit.finish_reason,
        "model": hit.model,
        "usage": hit.usage.to_json(),
    }
    if not stream:
        return FastJSONResponse({**done, "text": hit.text}, headers=headers)
    # Numbered like a live answer's events (not resumable: it is whole in this one body).
    text = sse.delta(hit.text, 1) if hit.text else b""
    body = text + sse.event(sse.EVENT_DONE, done, 2 if hit.text else 1)
    return _stream_body(body, headers)


def _stream_body(body: bytes, headers: dict[str, str]) -> Response:
    return Response(body, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
