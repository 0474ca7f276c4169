"""/v1/embeddings: the inputs checked (their number, no empty token list), the rest passed on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from gateway.http.schemas.errors import ANSWER_ERRORS, error_responses
from gateway.http.schemas.openapi import json_request_body

#: OpenAI's most embedding inputs.
MAX_EMBEDDING_INPUTS = 2048

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
