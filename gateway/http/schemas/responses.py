"""/v1/responses: what the gateway checks of a body (model, input, streaming, the output bound,
the ids it scopes); everything else goes upstream untouched."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.http.schemas.errors import ANSWER_ERRORS, error_responses
from gateway.http.schemas.openapi import json_request_body

#: OpenAI's smallest ``max_output_tokens``.
MIN_OUTPUT_TOKENS = 16
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
