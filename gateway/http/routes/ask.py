"""POST /ask: the streaming contract the Angular client relies on (events delta, done, error)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.core.errors import ContentFlagged
from gateway.http import sse
from gateway.http.body import parse_model, read_body
from gateway.http.calls import Call, check_limits, handle_call, shutting_down
from gateway.http.deps import authenticate_app, call_meta, resources_of
from gateway.http.json_response import FastJSONResponse
from gateway.http.ratelimit import headers_for
from gateway.http.resources import Resources
from gateway.http.schemas.ask import ASK_OPERATION, AskRequest
from gateway.http.streaming import SSEResponse
from gateway.services.ask import Answer, AskInput, CallMeta, Delta, Done

router = APIRouter()


async def _encode(answer: Answer, request_id: str) -> AsyncIterator[bytes]:
    async for event in answer.events():
        if isinstance(event, Delta):
            if event.chunk.text:
                yield sse.delta(event.chunk.text)
        elif isinstance(event, Done):
            yield sse.event(
                sse.EVENT_DONE,
                {
                    "request_id": request_id,
                    "finish_reason": event.finish_reason,
                    "model": event.model,
                    "usage": event.usage.to_json(),
                },
            )
        else:
            yield sse.error_event(event.error, request_id)


async def _only(data: bytes) -> AsyncIterator[bytes]:
    yield data


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
    answer = call.answer = Answer(resources.ask_deps, call.ctx, inp, meta)
    if _wants_json(request, body):
        completion = await call.start_watching(request.receive).run(answer.complete)
        return FastJSONResponse(
            headers=headers_for(answer.limit_states, openai=False),
            content={
                "request_id": meta.request_id,
                "text": completion.text,
                "finish_reason": completion.finish_reason,
                "model": completion.model,
                "usage": completion.usage.to_json(),
            },
        )
    events: AsyncIterator[bytes]
    watch = call.start_watching(request.receive)
    try:
        await watch.run(answer.open)
        events = _encode(answer, meta.request_id)
    except ContentFlagged as flagged:
        # A moderation refusal is part of the stream contract: one `error` event, the end.
        events = _only(sse.error_event(flagged, meta.request_id))
    return SSEResponse(
        events,
        settle=answer.settle,
        ping_interval=settings.ping_interval_s,
        headers=headers_for(answer.limit_states, openai=False),
        drain=resources.drain,
        watch=call.hand_over_watch(),
        more_ready=answer.more_ready,
        finished=answer.finished,
        on_drain=lambda: sse.error_event(shutting_down(answer), meta.request_id),
    )
