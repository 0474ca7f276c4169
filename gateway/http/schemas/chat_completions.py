"""The OpenAI-compatible routes (/v1/chat/completions, /v1/models): what the gateway checks
of a body, and what it answers (the upstream's own JSON, passed through)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Json, WithJsonSchema

from gateway.http.schemas.errors import ANSWER_ERRORS, OpenAIStreamError, error_responses
from gateway.http.schemas.openapi import json_request_body, sse_content

ChatRole = Literal["system", "developer", "user", "assistant", "tool", "function"]
_CHAT_ROLES = frozenset(get_args(ChatRole))


def _openai_message(message: dict[str, Any]) -> dict[str, Any]:
    # OpenAI refuses other roles and contents with a 400, which the gateway would answer as 502.
    role = message.get("role")
    if not isinstance(role, str) or role not in _CHAT_ROLES:
        raise ValueError(f"'role' must be one of {', '.join(sorted(_CHAT_ROLES))}")
    content = message.get("content")
    if not (content is None or isinstance(content, str | list)):
        raise ValueError("'content' must be a string, an array of parts or null")
    return message


ChatMessage = Annotated[
    dict[str, Any],
    AfterValidator(_openai_message),
    WithJsonSchema(
        {
            "type": "object",
            "required": ["role"],
            "properties": {
                "role": {"enum": sorted(_CHAT_ROLES)},
                "content": {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "array", "items": {"type": "object"}},
                        {"type": "null"},
                    ]
                },
            },
            "additionalProperties": True,
        }
    ),
]
"""One OpenAI message: its role and the type of its content checked, passed on as it came."""


class ChatCompletionRequest(BaseModel):
    """The OpenAI body, checked only where the gateway acts on it; the rest passes through."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream_options: dict[str, Any] | None = None


class ChatCompletion(BaseModel):
    """OpenAI's answer, passed through as the upstream sent it."""

    model_config = ConfigDict(extra="allow")

    choices: list[dict[str, Any]]


class ChatCompletionChunk(BaseModel):
    """One chunk of OpenAI's stream, passed through as the upstream sent it."""

    model_config = ConfigDict(extra="allow")

    choices: list[dict[str, Any]]


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["list"]
    data: list[ModelCard]


# --- the stream: unnamed events, each a chunk (or an error), then ``data: [DONE]`` -------------


class OpenAIStreamChunk(BaseModel):
    event: Literal["message"] = "message"
    data: Json[ChatCompletionChunk | OpenAIStreamError]


class OpenAIStreamDone(BaseModel):
    event: Literal["message"] = "message"
    data: Literal["[DONE]"]


OpenAIStreamEvent = OpenAIStreamChunk | OpenAIStreamDone

CHAT_COMPLETIONS_OPERATION: dict[str, Any] = {
    "responses": {
        200: {
            "model": ChatCompletion,
            "description": "OpenAI's answer; with `stream: true`, OpenAI's SSE stream.",
            "content": {
                "text/event-stream": sse_content(
                    OpenAIStreamEvent,
                    description="Chunks as the upstream sent them, then `data: [DONE]`. A "
                    "failure after the start ends the stream with an `error` chunk.",
                )
            },
        },
        **error_responses(*ANSWER_ERRORS, openai=True),
    },
    "openapi_extra": json_request_body(
        ChatCompletionRequest,
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]},
        stream={
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say hello."}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ),
}
"""The keyword arguments of ``@router.post("/chat/completions", ...)`` (routes/openai_compat.py)."""

MODELS_OPERATION: dict[str, Any] = {
    "responses": {
        200: {"model": ModelList, "description": "The models the calling app may use."},
        **error_responses(401, 403, 503, openai=True),
    },
}
"""The keyword arguments of ``@router.get("/models", ...)`` (routes/openai_compat.py)."""
