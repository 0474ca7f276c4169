"""``POST /v1/moderations``: flagged when an input contains the word ``FLAGGED``."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from gateway.fakes import encoding, errors
from gateway.fakes.asgi import (
    Receive,
    Scope,
    Send,
    send_bytes,
    send_error,
    watch_disconnect,
)
from gateway.fakes.errors import ApiError
from gateway.fakes.prompt import parse_directives

if TYPE_CHECKING:
    from gateway.fakes.openai_server import FakeOpenAIApp

_FLAGGED_RE = re.compile(r"(?<!\w)FLAGGED(?!\w)")
DEFAULT_MODEL = "omni-moderation-latest"


async def handle_moderation(app: FakeOpenAIApp, scope: Scope, receive: Receive, send: Send) -> None:
    begun = await app.begin(scope, receive, send, id_prefix="modr-", validate=_input_error)
    if begun is None:
        return
    record, body, key = begun
    model = str(body.get("model") or DEFAULT_MODEL)
    texts, has_image = _texts(body["input"])
    directives = parse_directives("\n".join(texts))
    error = app.injected_error(directives.fail_status, key=key, model=model)
    if error is not None:
        await send_error(send, error, record)
    elif directives.hang:
        await watch_disconnect(receive, record, asyncio.Event().wait())
    else:
        flags = [_FLAGGED_RE.search(text) is not None for text in texts]
        payload = encoding.moderation(record.id, model, flags, has_image)
        record.status_code = 200
        await send_bytes(send, 200, payload)
        record.finish("completed")


def _input_error(valid: bool, body: Any) -> ApiError | None:
    if not valid or not isinstance(body, dict):
        return errors.invalid_json()
    value = body.get("input")
    if value is None:
        return errors.missing_parameter("input")
    if isinstance(value, str):
        return None
    if isinstance(value, list) and value and all(isinstance(v, str | dict) for v in value):
        return None
    return errors.invalid_parameter(
        "input", "Invalid 'input': expected a string, an array of strings or an array of parts."
    )


def _texts(value: str | list[Any]) -> tuple[list[str], bool]:
    """One text per result: each string of a list, or all text parts of a multimodal input."""
    if isinstance(value, str):
        return [value], False
    if all(isinstance(item, str) for item in value):
        return list(value), False
    parts = [p for p in value if isinstance(p, dict)]
    text = "\n".join(p["text"] for p in parts if isinstance(p.get("text"), str))
    return [text], any(p.get("type") == "image_url" for p in parts)
