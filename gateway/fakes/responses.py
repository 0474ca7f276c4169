"""``POST /v1/responses`` (streamed and not), ``GET`` and ``DELETE /v1/responses/{id}``.

The answer is the chat fake's answer to the same conversation (``instructions`` as a system
message, ``input`` as the user's messages), so the same directives work (``[fail:N]``,
``[die-after:N]``, ``[hang]``, ``[tokens:N]``, the delays); ``max_output_tokens`` cuts it into
an ``incomplete`` response. Stored responses (``store`` is not false) are kept, newest
``record_limit``, for retrieval and deletion; they are not scoped by key (OpenAI scopes them by
project: a gateway in front of many apps must do the per-app scoping itself).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from gateway.fakes import errors
from gateway.fakes.asgi import (
    Receive,
    Scope,
    Send,
    new_id,
    send_bytes,
    send_error,
    watch_disconnect,
)
from gateway.fakes.chat import Plan, due_chunks, make_plan
from gateway.fakes.errors import ApiError
from gateway.fakes.prompt import content_text, last_user_text, parse_directives
from gateway.fakes.recorder import RequestRecord
from gateway.fakes.response_events import EventEncoder, ResponseShape, usage

if TYPE_CHECKING:
    from gateway.fakes.openai_server import FakeOpenAIApp

_SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"openai-version", b"2020-10-01"),
)
#: OpenAI's smallest ``max_output_tokens``.
MIN_OUTPUT_TOKENS = 16


class StoredResponses:
    """The stored response objects, newest ``limit``."""

    def __init__(self, limit: int) -> None:
        self._limit = max(limit, 1)
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def put(self, response: dict[str, Any]) -> None:
        self._items[response["id"]] = response
        while len(self._items) > self._limit:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> dict[str, Any] | None:
        return self._items.get(response_id)

    def pop(self, response_id: str) -> dict[str, Any] | None:
        return self._items.pop(response_id, None)


def messages_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation a Responses request stands for, as chat messages."""
    value = body["input"]
    items = [{"role": "user", "content": value}] if isinstance(value, str) else value
    messages = [
        {"role": item.get("role"), "content": content_text(item.get("content"))}
        for item in items
        if isinstance(item, dict) and isinstance(item.get("role"), str)
    ]
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        messages.insert(0, {"role": "system", "content": instructions})
    return messages


def validate(valid: bool, body: Any, models: tuple[str, ...]) -> ApiError | None:
    if not valid:
        return errors.invalid_json()
    if not isinstance(body, dict):
        return errors.invalid_parameter("body", "Invalid body: expected a JSON object.")
    for name in ("model", "input"):
        if body.get(name) is None:
            return errors.missing_parameter(name)
    value = body["input"]
    if not isinstance(value, str) and not (isinstance(value, list) and value):
        message = "Invalid 'input': expected a string or a non-empty array of input items."
        return errors.invalid_parameter("input", message, "invalid_type")
    if body.get("stream") not in (None, True, False):
        return errors.invalid_parameter("stream", "Invalid 'stream': expected a boolean.")
    limit = body.get("max_output_tokens")
    if limit is not None and (
        not isinstance(limit, int) or isinstance(limit, bool) or limit < MIN_OUTPUT_TOKENS
    ):
        message = (
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{MIN_OUTPUT_TOKENS}, but got {limit!r} instead."
        )
        return errors.invalid_parameter("max_output_tokens", message, "integer_below_min_value")
    if not isinstance(body["model"], str) or body["model"] not in models:
        return errors.model_not_found(str(body["model"]))
    return None


async def handle_create(app: FakeOpenAIApp, scope: Scope, receive: Receive, send: Send) -> None:
    begun = await app.begin(
        scope,
        receive,
        send,
        id_prefix="resp_",
        validate=lambda valid, body: validate(valid, body, app.config.models),
        streams=True,
    )
    if begun is None:
        return
    record, body, key = begun
    messages = messages_of(body)
    directives = parse_directives(last_user_text(messages))
    error = app.injected_error(directives.fail_status, key=key, model=body["model"])
    if error is not None:
        await send_error(send, error, record)
        return
    chat_body = {
        "model": body["model"],
        "messages": messages,
        "max_tokens": body.get("max_output_tokens"),
    }
    plan = make_plan(app.config, chat_body, directives)
    shape = ResponseShape(
        id=record.id,
        created_at=int(time.time()),
        model=body["model"],
        item_id=new_id("msg_"),
        request=body,
    )
    deliver = _stream if record.stream else _complete
    await watch_disconnect(receive, record, deliver(app, send, record, plan, shape))


def _finish(app: FakeOpenAIApp, plan: Plan, shape: ResponseShape) -> str:
    text = "".join(plan.texts)
    shape.text = text
    shape.incomplete = plan.finish_reason == "length"
    shape.status = "incomplete" if shape.incomplete else "completed"
    shape.usage = usage(plan.prompt_tokens, len(plan.deltas))
    if shape.request.get("store", True) is not False:
        app.responses.put(shape.to_json())
    return text


async def _stream(
    app: FakeOpenAIApp, send: Send, record: RequestRecord, plan: Plan, shape: ResponseShape
) -> None:
    headers = [*_SSE_HEADERS, (b"x-request-id", new_id("req_").encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    record.status_code = 200
    if plan.hang:
        await asyncio.Event().wait()
    encoder = EventEncoder(shape)
    count = len(plan.texts) if plan.die_after is None else min(plan.die_after, len(plan.texts))
    loop = asyncio.get_running_loop()
    start = loop.time()
    pending = encoder.opening()
    sent = 0
    while True:
        due = due_chunks(plan, count, loop.time() - start)
        pending.extend(encoder.delta(text) for text in plan.texts[sent:due])
        if due == count:
            break
        if pending:
            await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
            pending.clear()
            record.chunks_sent = sent = due
        next_at = start + plan.first_delay + due * plan.token_delay
        await asyncio.sleep(max(next_at - loop.time(), 0.0))
    record.chunks_sent = count
    if plan.die_after is not None:
        await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
        record.finish("failed")  # returning now makes uvicorn drop the connection
        return
    pending.extend(encoder.closing(_finish(app, plan, shape)))
    await send({"type": "http.response.body", "body": b"".join(pending), "more_body": False})
    record.finish("completed")


async def _complete(
    app: FakeOpenAIApp, send: Send, record: RequestRecord, plan: Plan, shape: ResponseShape
) -> None:
    if plan.hang:
        await asyncio.Event().wait()
    delay = plan.first_delay + max(len(plan.texts) - 1, 0) * plan.token_delay
    if delay > 0:
        await asyncio.sleep(delay)
    _finish(app, plan, shape)
    body = json.dumps(shape.to_json()).encode()
    record.status_code = 200
    if plan.die_after is not None:
        start = {"type": "http.response.start", "status": 200, "headers": _json_headers(body)}
        await send(start)
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        record.finish("failed")
        return
    await send_bytes(send, 200, body)
    record.chunks_sent = len(plan.texts)
    record.finish("completed")


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


def _not_found(response_id: str) -> ApiError:
    return ApiError(
        404, f"Response with id '{response_id}' not found.", "invalid_request_error", "response_id"
    )


async def handle_stored(app: FakeOpenAIApp, scope: Scope, send: Send, response_id: str) -> None:
    """``GET`` (the stored object) or ``DELETE`` (``{"id", "object", "deleted"}``) of one id."""
    header, _, error = app.authorize(scope)
    record = RequestRecord(response_id, scope["path"], header)
    app.requests.add(record)
    if error is None:
        found = (
            app.responses.pop(response_id)
            if scope["method"] == "DELETE"
            else app.responses.get(response_id)
        )
        if found is None:
            error = _not_found(response_id)
    if error is not None:
        await send_error(send, error, record)
        return
    payload = (
        {"id": response_id, "object": "response", "deleted": True}
        if scope["method"] == "DELETE"
        else found
    )
    record.status_code = 200
    await send_bytes(send, 200, json.dumps(payload).encode())
    record.finish("completed")
