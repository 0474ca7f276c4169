"""POST /ask: its body, its JSON answer and its stream events."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Json, model_validator

from gateway.http.schemas.errors import ANSWER_ERRORS, ErrorDetail, error_responses
from gateway.http.schemas.openapi import json_request_body, sse_content


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


_PROMPT_OR_MESSAGES = "give exactly one of 'prompt' or 'messages'"


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str | None = None
    messages: list[Message] | None = None
    model: str | None = Field(default=None, min_length=1, max_length=200)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    # No control characters: PostgreSQL refuses NUL, and the id shows in logs and URLs.
    conversation_id: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"
    )
    metadata: dict[str, Any] | None = None
    stream: bool = True

    @model_validator(mode="before")
    @classmethod
    def _prompt_or_messages_given(cls, data: Any) -> Any:
        # Before the fields: with neither key, an unknown one alone ("text") would be the only
        # error, and it would not say what is missing.
        if isinstance(data, dict) and "prompt" not in data and "messages" not in data:
            unknown = ", ".join(repr(str(key)) for key in data if key not in cls.model_fields)
            raise ValueError(
                _PROMPT_OR_MESSAGES + (f" (unknown field(s): {unknown})" if unknown else "")
            )
        return data

    @model_validator(mode="after")
    def _prompt_xor_messages(self) -> AskRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError(_PROMPT_OR_MESSAGES)
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("'prompt' is empty")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' is empty")
        return self

    def chat_messages(self) -> list[dict[str, Any]]:
        if self.prompt is not None:
            return [{"role": "user", "content": self.prompt}]
        assert self.messages is not None
        return [m.model_dump() for m in self.messages]


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AskAnswer(BaseModel):
    """POST /ask with ``stream: false`` (or ``Accept: application/json``)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    text: str
    finish_reason: str | None
    model: str
    usage: Usage


class AskDelta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str


class AskDone(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str
    finish_reason: str | None
    model: str
    usage: Usage


# --- the stream, one model per event: ``event: NAME`` then ``data: JSON`` ------------------------


class AskDeltaEvent(BaseModel):
    event: Literal["delta"]
    data: Json[AskDelta]


class AskDoneEvent(BaseModel):
    event: Literal["done"]
    data: Json[AskDone]


class AskErrorEvent(BaseModel):
    event: Literal["error"]
    data: Json[ErrorDetail]


AskStreamEvent = AskDeltaEvent | AskDoneEvent | AskErrorEvent

ASK_EXAMPLES: dict[str, dict[str, Any]] = {
    "stream": {"prompt": "Say hello."},
    "json": {"prompt": "Say hello.", "stream": False},
    "messages": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        "stream": False,
    },
}

ASK_OPERATION: dict[str, Any] = {
    "responses": {
        200: {
            "model": AskAnswer,
            "description": "The answer: an SSE stream (the default), or one JSON object for "
            "`stream: false` or `Accept: application/json`.",
            "content": {
                "text/event-stream": sse_content(
                    AskStreamEvent,
                    description="`delta` events, then exactly one `done` or `error` event.",
                )
            },
        },
        **error_responses(*ANSWER_ERRORS),
    },
    "openapi_extra": json_request_body(AskRequest, **ASK_EXAMPLES),
}
"""The keyword arguments of ``@router.post("/ask", ...)`` (gateway/http/routes/ask.py)."""
