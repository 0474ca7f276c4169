"""Public models of ``/v1/responses`` and ``/v1/embeddings`` (the chat ones are in schemas.py).

As for chat completions, the body is checked only where the gateway acts on it (model, input,
streaming, the output bound, the ids it scopes); everything else goes upstream untouched.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from gateway.http.schemas import ANSWER_ERRORS, error_responses, json_request_body

#: OpenAI's bounds: the smallest ``max_output_tokens``, the most embedding inputs.
MIN_OUTPUT_TOKENS = 16
MAX_EMBEDDING_INPUTS = 2048
_ID = r"^resp_[A-Za-z0-9_-]{1,190}$"


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    #: A text, or input items (messages ``{"role", "content"}`` and the API's other items).
    input: str | list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    max_output_tokens: int | None = Field(default=None, ge=MIN_OUTPUT_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    store: bool = True
    previous_response_id: str | None = Field(default=None, pattern=_ID)
    background: Literal[False] | None = Field(
        default=None, description="Background responses are not supported (no quota settles)."
    )
    conversation: None = Field(
        default=None,
        description="OpenAI's conversation objects are not scoped per app: not supported.",
    )

    def messages(self) -> list[dict[str, Any]]:
        """The input as a list of items (a text is one user message)."""
        if isinstance(self.input, str):
            return [{"role": "user", "content": self.input}]
        return self.input


TokenIds = list[StrictInt]


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[str] | TokenIds | list[TokenIds]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _bounded(self) -> EmbeddingsRequest:
        value = self.input
        if isinstance(value, list) and not 0 < len(value) <= MAX_EMBEDDING_INPUTS:
            raise ValueError(f"'input' must hold 1 to {MAX_EMBEDDING_INPUTS} items")
        if isinstance(value, list) and any(isinstance(v, list) and not v for v in value):
            raise ValueError("'input' holds an empty list of token ids")
        return self

    def messages(self) -> list[dict[str, Any]]:
        """One message per input, for counting its tokens (token ids: their numbers as text,
        which counts at least one token each)."""
        value = self.input
        items: list[Any] = [value] if isinstance(value, str) else list(value)
        if items and all(isinstance(v, int) for v in items):
            items = [items]
        return [
            {"role": "user", "content": v if isinstance(v, str) else " ".join(map(str, v))}
            for v in items
        ]


RESPONSES_OPERATION: dict[str, Any] = {
    "responses": {
        200: {
            "description": "OpenAI's response object; with `stream: true`, OpenAI's named "
            "events (`event: response.created` ... `response.completed`), passed through.",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **error_responses(*ANSWER_ERRORS, 404, openai=True),
    },
    "openapi_extra": json_request_body(
        ResponsesRequest,
        json={"model": "gpt-4o-mini", "input": "Say hello."},
        stream={"model": "gpt-4o-mini", "input": "Say hello.", "stream": True},
    ),
}

STORED_RESPONSE_OPERATION: dict[str, Any] = {
    "responses": {
        200: {"description": "The stored response (GET), or OpenAI's deletion answer (DELETE)."},
        **error_responses(401, 403, 404, 502, 503, 504, openai=True),
    },
}

EMBEDDINGS_OPERATION: dict[str, Any] = {
    "responses": {
        200: {"description": "OpenAI's embeddings list, as the upstream sent it."},
        **error_responses(*ANSWER_ERRORS, openai=True),
    },
    "openapi_extra": json_request_body(
        EmbeddingsRequest,
        json={"model": "text-embedding-3-small", "input": ["first text", "second text"]},
    ),
}
