"""The SSE wire format of `/ask` (event names are a contract) and of the /v1 stream."""

from __future__ import annotations

import json
from typing import Any

from gateway.core.errors import GatewayError

EVENT_DELTA = "delta"
EVENT_DONE = "done"
EVENT_ERROR = "error"
PING = b": ping\n\n"
OPENAI_DONE = b"data: [DONE]\n\n"


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {_dumps(data)}\n\n".encode()


def delta(text: str) -> bytes:
    return event(EVENT_DELTA, {"text": text})


def error_event(error: GatewayError, request_id: str) -> bytes:
    return event(
        EVENT_ERROR, {"code": error.code, "message": error.message, "request_id": request_id}
    )


def openai_data(raw: str) -> bytes:
    return f"data: {raw}\n\n".encode()


def openai_error(error: GatewayError) -> bytes:
    return openai_data(
        _dumps({"error": {"message": error.message, "type": "api_error", "code": error.code}})
    )
