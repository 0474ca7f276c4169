"""The SSE wire format of `/ask` (event names are a contract) and of the /v1 stream."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.errors import GatewayError, QuotaExceeded

EVENT_DELTA = "delta"
EVENT_DONE = "done"
EVENT_ERROR = "error"
PING = b": ping\n\n"
OPENAI_DONE = b"data: [DONE]\n\n"


def _dumps(data: Any) -> bytes:
    # orjson: compact UTF-8 like json.dumps(ensure_ascii=False), at a fifth of the cost; it
    # runs once per streamed token.
    return orjson.dumps(data)


def event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


_DELTA_HEAD = b"event: " + EVENT_DELTA.encode() + b'\ndata: {"text":'


def delta(text: str) -> bytes:
    return _DELTA_HEAD + orjson.dumps(text) + b"}\n\n"


def error_event(error: GatewayError, request_id: str) -> bytes:
    data = {"code": error.code, "message": error.message, "request_id": request_id}
    if isinstance(error, QuotaExceeded):
        data["scope"] = error.scope
    return event(EVENT_ERROR, data)


def openai_data(raw: str) -> bytes:
    if "\n" in raw:  # the upstream split its data over several lines: one data line each
        raw = raw.replace("\n", "\ndata: ")
    return b"data: " + raw.encode() + b"\n\n"


def openai_error(error: GatewayError) -> bytes:
    inner = {"message": error.message, "type": "api_error", "code": error.code}
    if isinstance(error, QuotaExceeded):
        inner["scope"] = error.scope
    return b"data: " + _dumps({"error": inner}) + b"\n\n"
