"""POST /ask: the streaming contract the Angular client relies on (events delta, done, error)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.core.errors import ContentFlagged
from gateway.http import sse
from gateway.http.body import parse_model, read_body
from gateway.http.cached import ask_hit, consult
from gateway.http.calls import Call, check_limits, handle_call
from gateway.http.deps import authenticate_app, call_meta, resources_of
from gateway.http.json_response import FastJSONResponse
from gateway.http.ratelimit import headers_for
from gateway.http.resources import Resources
from gateway.http.schemas.ask import ASK_OPERATION, AskRequest
from gateway.http.streaming import AnswerResponse
from gateway.services.answer_producer import Encoder, ErrorEncoder
from gateway.services.ask import Answer, AnswerEvent, AskInput, CallMeta, Delta, Done

router = APIRouter()


def encoder(request_id: str) -> Encoder:
    """The `/ask` wire format of an answer's events, each with its id (1, 2, 3…)."""

    def encode(event: AnswerEvent, event_id: int) -> bytes | None:
        if isinstance(event, Delta):
            text = event.chunk.text
            return sse.delta(text, event_id) if text else None
        if isinstance(event, Done):
            done = {
                "request_id": request_id,
                "finish_reason": event.finish_reason,
                "model": event.model,
                "usage": event.usage.to_json(),
            }
            return sse.event(sse.EVENT_DONE, done, event_id)
        return sse.error_event(event.error, request_id, event_id)

    return encode


def error_encoder(request_id: str) -> ErrorEncoder:
    return lambda error, event_id: sse.error_event(error, request_id, event_id)


def _wants_json(request: Request, body: AskRequest) -> bool:
    accept = request.headers.get("accept", "")
    return not body.stream or ("application/json" in accept and "text/event-stream" not in accept)


@router.post("/ask", **ASK_OPERATION)
async def ask(request: Request) -> Response:
    resources = resources_of(request)
    meta = call_meta(request, "/ask")
    return await handle_call(resources, meta, lambda call: _answer(request, resources, meta, call))


async def _answer(request: Request, resources: Resources, meta: CallMeta, call: Call) -> Response:
    settings = resources.settings
    call.ctx = await authenticate_app(request)
    body = parse_model(await read_body(request, settings.max_body_bytes), AskRequest)
    messages = body.chat_messages()
    check_limits(settings, messages, body.metadata)
    inp = AskInput(
        messages=messages,
        model=body.model,
        temperature=body.temperature,
        max_tokens=body.max_tokens,
        conversation_id=body.conversation_id,
        metadata=body.metadata,
    )
    cache = await consult(request, resources, call.ctx, inp, meta)
    if cache.hit is not None:
        return ask_hit(cache, meta, stream=not _wants_json(request, body))
    answer = call.answer = Answer(resources.ask_deps, call.ctx, inp, meta)
    if _wants_json(request, body):
        completion = await call.start_watching(request.receive).run(answer.complete)
        await cache.keep(completion)
        return FastJSONResponse(
            headers={**headers_for(answer.limit_states, openai=False), **cache.headers()},
            content={
                "request_id": meta.request_id,
                "text": completion.text,
                "finish_reason": completion.finish_reason,
                "model": completion.model,
                "usage": completion.usage.to_json(),
            },
        )
    watch = call.start_watching(request.receive)
    failed: ContentFlagged | None = None
    try:
        await watch.run(answer.open)
    except ContentFlagged as flagged:
        # A moderation refusal is part of the stream contract: one `error` event, the end.
        failed = flagged
    live = resources.streams.start(
        answer,
        request_id=meta.request_id,
        app_id=call.ctx.app_id,
        user=call.ctx.user,
        encode=encoder(meta.request_id),
        encode_error=error_encoder(meta.request_id),
        failed=failed,
        observe=cache.capture(),
    )
    return AnswerResponse(
        resources.streams,
        live,
        ping_interval=settings.ping_interval_s,
        headers={**headers_for(answer.limit_states, openai=False), **cache.headers()},
        watch=call.hand_over(),
    )
