"""POST /feedback: a caller's rating of one of its answers."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    WithJsonSchema,
    field_validator,
)

MAX_FEEDBACK_COMMENT = 2000


def _score(value: int) -> int:
    if value not in (1, -1):
        raise ValueError("the score is 1 (good) or -1 (bad)")
    return value


class FeedbackRequest(BaseModel):
    """``POST /feedback``: the caller's rating of one of its answers (replaces an earlier one)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(
        min_length=1,
        max_length=200,
        description="The answer's request id (the `done` event's, or the `X-Request-Id` header).",
    )
    # A strict integer: JSON true or 1.0 is not a score (a Literal would take both).
    score: Annotated[
        StrictInt,
        AfterValidator(_score),
        WithJsonSchema({"type": "integer", "enum": [1, -1]}),
    ] = Field(description="1: a good answer; -1: a bad one.")
    comment: str | None = Field(
        default=None, max_length=MAX_FEEDBACK_COMMENT, description="Optional; at most 2,000."
    )

    @field_validator("comment")
    @classmethod
    def _no_nul(cls, comment: str | None) -> str | None:
        if comment is not None and "\x00" in comment:  # PostgreSQL refuses NUL in text
            raise ValueError("the comment holds a NUL character")
        return comment
