"""The error bodies (ours, and OpenAI's on /v1) and how routes declare them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    request_id: str
    scope: Literal["app", "user"] | None = Field(
        default=None,
        description="quota_exceeded only: whose limit it was, the app's (every user of it) "
        "or this user's alone.",
    )


class ErrorBody(BaseModel):
    """Our JSON error shape, on every route but /v1 (see gateway/http/errors.py)."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class HeadErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    message: str


class HeadErrorBody(BaseModel):
    """A request head refused by the server before any route (no request id yet)."""

    model_config = ConfigDict(extra="forbid")

    error: HeadErrorDetail


#: ``responses=`` entry of a route whose query can make the request line too long.
URI_TOO_LONG: dict[int | str, dict[str, Any]] = {
    414: {
        "model": HeadErrorBody,
        "description": "The request line is too long (`request_too_large`).",
    }
}


class OpenAIErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str
    type: str
    param: str | None
    code: str
    request_id: str
    scope: Literal["app", "user"] | None = Field(
        default=None,
        description="quota_exceeded only: whose limit it was, the app's (every user of it) "
        "or this user's alone.",
    )


class OpenAIErrorBody(BaseModel):
    """OpenAI's error shape, on the /v1 routes, with our request id added."""

    model_config = ConfigDict(extra="forbid")

    error: OpenAIErrorDetail


class OpenAIStreamErrorDetail(BaseModel):
    message: str
    type: str
    code: str


class OpenAIStreamError(BaseModel):
    """The last data line of a /v1 stream that failed after it started."""

    error: OpenAIStreamErrorDetail


_ERROR_DESCRIPTIONS = {
    400: "Malformed request: not JSON, not an object, a bad parameter, a model the app may not "
    "use (`invalid_request`, `model_not_allowed`, `content_flagged`).",
    401: "No token, or an unknown, revoked or expired one (`invalid_token`).",
    403: "The app is disabled, the browser origin is not allowed, or the token may not do this "
    "(`app_disabled`, `origin_not_allowed`, `forbidden`).",
    404: "No such resource for this app (`not_found`).",
    410: "The answer ended longer ago than its retention window (`stream_expired`).",
    413: "The body, the prompt, the messages or the metadata is too large (`request_too_large`).",
    422: "JSON that does not match the request schema (`invalid_request`).",
    429: "A quota is used up (`quota_exceeded`, with `Retry-After` and `RateLimit-*` headers), "
    "or the upstream rate-limits (`upstream_rate_limited`).",
    502: "The upstream failed or refused the provider key (`upstream_error`, "
    "`upstream_auth_failed`).",
    503: "A dependency is down or the gateway is restarting (`storage_unavailable`, "
    "`quota_unavailable`, `upstream_unavailable`, `shutting_down`).",
    504: "The upstream did not answer in time (`upstream_timeout`).",
}
ANSWER_ERRORS = (400, 401, 403, 413, 422, 429, 502, 503, 504)
"""What /ask and /v1/chat/completions can answer instead of 200."""


def error_responses(*statuses: int, openai: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for these statuses, in our error shape or OpenAI's."""
    model = OpenAIErrorBody if openai else ErrorBody
    return {
        status: {"model": model, "description": _ERROR_DESCRIPTIONS[status]} for status in statuses
    }
