"""GET /logs: a page of records, or a stream of them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Json


class LogFeedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    score: Literal[1, -1]
    comment: str | None


class LogRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    time: str
    app: str | None
    user: str | None = Field(
        default=None, description="The end user (a session's, a sign-in's); null: the app token."
    )
    request_id: str
    route: str
    model: str | None
    workflow: str | None
    outcome: str
    http_status: int
    error_code: str | None
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float | None
    duration_ms: float
    origin: str | None
    metadata: dict[str, Any] | None
    cached: bool = Field(
        default=False,
        description="Answered from the app's answer cache: no upstream call, tokens or cost.",
    )
    prompt: str | None = Field(default=None, description="Only for apps that log content.")
    answer: str | None = Field(default=None, description="Only for apps that log content.")
    feedback: LogFeedback | None = Field(
        default=None, description="The answer's rating (POST /feedback); null: not rated."
    )


class LogPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[LogRecord]
    next_cursor: str | None


class LogRecordEvent(BaseModel):
    """One event of ``GET /logs?follow=true``."""

    event: Literal["record"]
    data: Json[LogRecord]
