"""OpenAI-shaped error responses: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import json
from dataclasses import dataclass

Headers = tuple[tuple[bytes, bytes], ...]

_KEYS_URL = "https://platform.openai.com/account/api-keys"
RETRY_AFTER_SECONDS = 1
"""The ``Retry-After`` value (seconds) of every 429 the fake sends."""


@dataclass(frozen=True, slots=True)
class ApiError:
    """One error response: HTTP status, OpenAI error object and extra headers."""

    status: int
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    headers: Headers = ()

    def body(self) -> bytes:
        """The JSON body exactly as OpenAI shapes it."""
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": error}, indent=4).encode() + b"\n"


def mask_key(key: str) -> str:
    """Mask an API key like OpenAI does: a short prefix, stars, the last 4 chars of long keys."""
    prefix = key[: min(5, len(key) // 3)]
    suffix = key[-4:] if len(key) >= 16 else ""
    stars = "*" * min(max(3, len(key) - len(prefix) - len(suffix)), 40)
    return f"{prefix}{stars}{suffix}"


def missing_api_key() -> ApiError:
    return ApiError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization"
        " header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password"
        " field (with blank username) if you're accessing the API from your browser and are"
        f" prompted for a username. You can obtain an API key from {_KEYS_URL}.",
        "invalid_request_error",
        code="invalid_api_key",
    )


def invalid_api_key(key: str) -> ApiError:
    return ApiError(
        401,
        f"Incorrect API key provided: {mask_key(key)}. You can find your API key at {_KEYS_URL}.",
        "invalid_request_error",
        code="invalid_api_key",
    )


def rate_limited(model: str) -> ApiError:
    return ApiError(
        429,
        f"Rate limit reached for {model} in organization org-fakeorchestra on requests per min"
        " (RPM): Limit 500, Used 500, Requested 1. Please try again in"
        f" {RETRY_AFTER_SECONDS}s. Visit https://platform.openai.com/account/rate-limits to"
        " learn more.",
        "requests",
        code="rate_limit_exceeded",
        headers=(
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
            (b"x-ratelimit-limit-requests", b"500"),
            (b"x-ratelimit-remaining-requests", b"0"),
            (b"x-ratelimit-reset-requests", f"{RETRY_AFTER_SECONDS}s".encode()),
        ),
    )


def server_error() -> ApiError:
    return ApiError(
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
    )


def overloaded() -> ApiError:
    return ApiError(503, "The server is overloaded or not ready yet.", "server_error")


def invalid_json() -> ApiError:
    return ApiError(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't"
        " using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was"
        " sent was not valid JSON. If you have trouble figuring out how to fix this, please"
        " contact us through our help center at help.openai.com.)",
        "invalid_request_error",
    )


def missing_parameter(param: str) -> ApiError:
    return ApiError(
        400,
        f"Missing required parameter: '{param}'.",
        "invalid_request_error",
        param=param,
        code="missing_required_parameter",
    )


def invalid_parameter(param: str, message: str, code: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", param=param, code=code)


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        code="model_not_found",
    )


def invalid_url(method: str, path: str) -> ApiError:
    return ApiError(404, f"Invalid URL ({method} {path})", "invalid_request_error")


def for_status(status: int, *, key: str, model: str) -> ApiError:
    """The error a ``[fail:STATUS]`` directive (or ``fail_rate``) answers with."""
    if status == 401:
        return invalid_api_key(key)
    if status == 429:
        return rate_limited(model)
    if status == 500:
        return server_error()
    if status == 503:
        return overloaded()
    if status >= 500:
        return ApiError(status, f"Upstream error {status} (fake).", "server_error")
    return ApiError(status, f"Request failed with status {status} (fake).", "invalid_request_error")
