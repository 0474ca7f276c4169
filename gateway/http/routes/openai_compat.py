"""POST /v1/chat/completions and GET /v1/models: OpenAI's API, with the client token as key."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.core.errors import GatewayError
from gateway.http import sse
from gateway.http.body import parse_model, read_body
from gateway.http.cached import consult, openai_hit
from gateway.http.calls import Call, check_limits, handle_call
from gateway.http.deps import authenticate_app, call_meta, resources_of
from gateway.http.json_response import FastJSONResponse
from gateway.http.ratelimit import headers_for
from gateway.http.resources import Resources
from gateway.http.schemas import (
    CHAT_COMPLETIONS_OPERATION,
    MODELS_OPERATION,
    ChatCompletionRequest,
)
from gateway.http.streaming import AnswerResponse
from gateway.services.answer_producer import Encoder
from gateway.services.ask import Answer, AnswerEvent, AskInput, CallMeta, Delta, Done

router = APIRouter(prefix="/v1")

#: Marks a stream event that may carry the upstream's error text (checked on events without
#: content only: one substring test, not a redaction per chunk).
_ERROR = '"error"'

# Fields the gateway sets itself; everything else in the body goes upstream untouched.
_OWN_FIELDS = {
    "model",
    "messages",
    "stream",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "stream_options",
}


def _encoder(answer: Answer, include_usage: bool) -> Encoder:
    """OpenAI's wire format, exactly (no ids: the SDKs' parsers expect none)."""

    def encode(event: AnswerEvent, _event_id: int) -> bytes | None:
        if isinstance(event, Delta):
            chunk = event.chunk
            if chunk.usage_only and not include_usage:
                return None
            raw = chunk.raw
            if not chunk.text and _ERROR in raw:
                # An error object inside the stream (OpenAI sends them): forwarded as it came,
                # but never with the app's key, which upstreams repeat in their errors.
                raw = answer.redact(raw)
            return sse.openai_data(raw)
        if isinstance(event, Done):
            return sse.OPENAI_DONE
        return sse.openai_error(event.error)

    return encode


def _encode_error(error: GatewayError, _event_id: int) -> bytes:
    return sse.openai_error(error)


@router.post("/chat/completions", **CHAT_COMPLETIONS_OPERATION)
async def chat_completions(request: Request) -> Response:
    resources = resources_of(request)
    meta = call_meta(request, "/v1/chat/completions")
    return await handle_call(resources, meta, lambda call: _answer(request, resources, meta, call))


async def _answer(request: Request, resources: Resources, meta: CallMeta, call: Call) -> Response:
    settings = resources.settings
    call.ctx = await authenticate_app(request)
    body = parse_model(await read_body(request, settings.max_body_bytes), ChatCompletionRequest)
    check_limits(settings, body.messages, None)
    extra = {k: v for k, v in (body.model_extra or {}).items() if k not in _OWN_FIELDS}
    inp = AskInput(
        messages=body.messages,
        model=body.model,
        temperature=body.temperature,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        extra=extra,
    )
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    cache = await consult(request, resources, call.ctx, inp, meta)
    if cache.hit is not None:
        return openai_hit(cache, meta, stream=bool(body.stream), include_usage=include_usage)
    answer = call.answer = Answer(resources.ask_deps, call.ctx, inp, meta)
    if not body.stream:
        completion = await call.start_watching(request.receive).run(answer.complete)
        await cache.keep(completion)
        return FastJSONResponse(
            completion.raw,
            headers={**headers_for(answer.limit_states, openai=True), **cache.headers()},
        )
    await call.start_watching(request.receive).run(answer.open)
    # Not resumable (OpenAI's API has no such thing): its reader leaving stops it at once.
    live = resources.streams.start(
        answer,
        request_id=meta.request_id,
        app_id=call.ctx.app_id,
        user=call.ctx.user,
        encode=_encoder(answer, include_usage),
        encode_error=_encode_error,
        resumable=False,
        observe=cache.capture(),
    )
    return AnswerResponse(
        resources.streams,
        live,
        ping_interval=settings.ping_interval_s,
        headers={**headers_for(answer.limit_states, openai=True), **cache.headers()},
        watch=call.hand_over(),
    )


@router.get("/models", **MODELS_OPERATION)
async def models(request: Request) -> JSONResponse:
    ctx = await authenticate_app(request)
    created = int(time.time())
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"id": model, "object": "model", "created": created, "owned_by": "orchestra"}
                for model in ctx.allowed_models
            ],
        }
    )
