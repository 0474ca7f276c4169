"""``POST /v1/chat/completions``: validation, answer planning, streamed and plain delivery."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from gateway.fakes import encoding, errors, readable
from gateway.fakes.asgi import (
    JSON_HEADERS,
    Receive,
    Scope,
    Send,
    new_id,
    send_error,
    watch_disconnect,
)
from gateway.fakes.errors import ApiError
from gateway.fakes.prompt import (
    WORDS,
    XSS_CHUNKS,
    Directives,
    answer_indices,
    count_prompt_tokens,
    last_user_text,
    parse_directives,
)
from gateway.fakes.recorder import RequestRecord

if TYPE_CHECKING:
    from gateway.fakes.openai_server import FakeOpenAIApp, FakeOpenAIConfig

MAX_TOKENS = 100_000
_WORD_DELTAS = tuple(encoding.content_delta(word) for word in WORDS)
_XSS_DELTAS = tuple(encoding.content_delta(text) for text in XSS_CHUNKS)
_SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"openai-version", b"2020-10-01"),
)
_TIMER_SLACK = 0.001
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything needed to deliver one answer."""

    model: str
    texts: tuple[str, ...]
    deltas: tuple[bytes, ...]
    finish_reason: str
    prompt_tokens: int
    include_usage: bool
    first_delay: float
    token_delay: float
    die_after: int | None
    hang: bool


async def handle_chat(app: FakeOpenAIApp, scope: Scope, receive: Receive, send: Send) -> None:
    begun = await app.begin(
        scope,
        receive,
        send,
        id_prefix="chatcmpl-",
        validate=lambda valid, body: validate(valid, body, app.config.models),
        streams=True,
    )
    if begun is None:
        return
    record, body, key = begun
    directives = parse_directives(last_user_text(body["messages"]))
    error = app.injected_error(directives.fail_status, key=key, model=body["model"])
    if error is not None:
        await send_error(send, error, record)
        return
    plan = make_plan(app.config, body, directives)
    deliver = stream if record.stream else complete
    await watch_disconnect(receive, record, deliver(send, record, plan))


def validate(valid: bool, body: Any, models: tuple[str, ...]) -> ApiError | None:
    """The 400/404 OpenAI would answer for this body, if any."""
    if not valid:
        return errors.invalid_json()
    if not isinstance(body, dict):
        return errors.invalid_parameter("body", "Invalid body: expected a JSON object.")
    for name in ("model", "messages"):
        if body.get(name) is None:
            return errors.missing_parameter(name)
    error = _validate_messages(body["messages"]) or _validate_options(body)
    if error is None and body["model"] not in models:
        return errors.model_not_found(str(body["model"]))
    return error


def _validate_messages(messages: Any) -> ApiError | None:
    if not isinstance(messages, list):
        message = f"Invalid type for 'messages': expected an array, but got {_kind(messages)}."
        return errors.invalid_parameter("messages", message, "invalid_type")
    if not messages:
        message = (
            "Invalid 'messages': empty array. Expected an array with minimum length 1,"
            " but got an empty array instead."
        )
        return errors.invalid_parameter("messages", message, "empty_array")
    for index, item in enumerate(messages):
        if not isinstance(item, dict) or item.get("role") not in _ROLES:
            param = f"messages[{index}].role"
            message = f"Invalid value for '{param}': expected one of {', '.join(sorted(_ROLES))}."
            return errors.invalid_parameter(param, message, "invalid_value")
    return None


def _validate_options(body: dict[str, Any]) -> ApiError | None:
    if not isinstance(body["model"], str):
        message = f"Invalid type for 'model': expected a string, but got {_kind(body['model'])}."
        return errors.invalid_parameter("model", message, "invalid_type")
    if body.get("stream") not in (None, True, False):
        message = f"Invalid type for 'stream': expected a boolean, but got {_kind(body['stream'])}."
        return errors.invalid_parameter("stream", message, "invalid_type")
    if body.get("stream_options") is not None and body.get("stream") is not True:
        message = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        return errors.invalid_parameter("stream_options", message)
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            message = f"Invalid type for '{name}': expected an integer, but got {_kind(value)}."
            return errors.invalid_parameter(name, message, "invalid_type")
        if value < 1:
            message = (
                f"Invalid '{name}': integer below minimum value. Expected a value >= 1,"
                f" but got {value} instead."
            )
            return errors.invalid_parameter(name, message, "integer_below_min_value")
    return None


def _kind(value: Any) -> str:
    kinds = {str: "a string", bool: "a boolean", int: "an integer", float: "a decimal"}
    kinds |= {list: "an array", dict: "an object"}
    return kinds.get(type(value), "null" if value is None else "an unsupported value")


@cache
def _readable(index: int) -> tuple[tuple[str, ...], tuple[bytes, ...]]:
    texts = readable.chunks(index)
    return texts, tuple(encoding.content_delta(text) for text in texts)


def make_plan(config: FakeOpenAIConfig, body: dict[str, Any], directives: Directives) -> Plan:
    messages = body["messages"]
    if directives.xss:
        texts, deltas = XSS_CHUNKS, _XSS_DELTAS
    elif config.answers == "readable":
        # The document is the answer; [tokens:N] keeps its first N chunks.
        texts, deltas = _readable(readable.choose(messages))
        if directives.tokens is not None:
            texts, deltas = texts[: directives.tokens], deltas[: directives.tokens]
    else:
        count = directives.tokens if directives.tokens is not None else config.tokens
        indices = answer_indices(messages, min(count, MAX_TOKENS))
        texts = tuple(WORDS[i] for i in indices)
        deltas = tuple(_WORD_DELTAS[i] for i in indices)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    finish_reason = "stop"
    if limit is not None and limit < len(deltas) and not directives.ignore_max_tokens:
        texts, deltas, finish_reason = texts[:limit], deltas[:limit], "length"
    options = body.get("stream_options")
    first_ms = directives.first_token_ms
    token_ms = directives.token_ms
    return Plan(
        model=body["model"],
        texts=texts,
        deltas=deltas,
        finish_reason=finish_reason,
        prompt_tokens=count_prompt_tokens(messages),
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        first_delay=(config.first_token_ms if first_ms is None else first_ms) / 1000,
        token_delay=(config.token_ms if token_ms is None else token_ms) / 1000,
        die_after=directives.die_after,
        hang=directives.hang,
    )


def due_chunks(plan: Plan, count: int, elapsed: float) -> int:
    """How many of the first ``count`` content chunks are due ``elapsed`` s after the role chunk.

    Chunk ``i`` is due at ``first_delay + i * token_delay``, with a 1 ms tolerance so an early
    timer wake-up does not cost an extra sleep.
    """
    since_first = elapsed + _TIMER_SLACK - plan.first_delay
    if since_first < 0:
        return 0
    if plan.token_delay <= 0:
        return count
    return min(count, int(since_first / plan.token_delay) + 1)


async def stream(send: Send, record: RequestRecord, plan: Plan) -> None:
    """Send the answer as OpenAI's server-sent events, each chunk no earlier than it is due.

    Chunks that are due together (all of them without delays, or when the loop runs late)
    go out in one ``send``: same bytes on the wire, far fewer syscalls.
    """
    headers = [*_SSE_HEADERS, (b"x-request-id", new_id("req_").encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    record.status_code = 200
    if plan.hang:
        await asyncio.Event().wait()
    encoder = encoding.ChunkEncoder(record.id, int(time.time()), plan.model, plan.include_usage)
    count = len(plan.deltas) if plan.die_after is None else min(plan.die_after, len(plan.deltas))
    loop = asyncio.get_running_loop()
    start = loop.time()
    pending = [encoder.role()]
    sent = 0
    while True:
        due = due_chunks(plan, count, loop.time() - start)
        pending.extend(encoder.content(delta) for delta in plan.deltas[sent:due])
        if due == count:
            break
        if pending:
            await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
            pending.clear()
            record.chunks_sent = sent = due
        next_at = start + plan.first_delay + due * plan.token_delay
        await asyncio.sleep(max(next_at - loop.time(), 0.0))
    if plan.die_after is not None:
        await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
        record.chunks_sent = count
        record.finish("failed")  # returning now makes uvicorn drop the connection
        return
    pending.append(encoder.finish(plan.finish_reason))
    if plan.include_usage:
        pending.append(encoder.usage(plan.prompt_tokens, count))
    pending.append(encoding.DONE)
    await send({"type": "http.response.body", "body": b"".join(pending), "more_body": False})
    record.chunks_sent = count
    record.finish("completed")


async def complete(send: Send, record: RequestRecord, plan: Plan) -> None:
    """Send the answer as one ``chat.completion`` object once it is "generated"."""
    if plan.hang:
        await asyncio.Event().wait()
    delay = plan.first_delay + max(len(plan.deltas) - 1, 0) * plan.token_delay
    if delay > 0:
        await asyncio.sleep(delay)
    body = encoding.completion(
        completion_id=record.id,
        created=int(time.time()),
        model=plan.model,
        content="".join(plan.texts),
        finish_reason=plan.finish_reason,
        prompt_tokens=plan.prompt_tokens,
        completion_tokens=len(plan.deltas),
    )
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    headers.append((b"x-request-id", new_id("req_").encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    record.status_code = 200
    if plan.die_after is not None:
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        record.finish("failed")  # returning now makes uvicorn drop the connection
        return
    await send({"type": "http.response.body", "body": body, "more_body": False})
    record.chunks_sent = len(plan.deltas)
    record.finish("completed")
