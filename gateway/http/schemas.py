"""Public request and response models of the HTTP API (tables live in storage/tables.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    WithJsonSchema,
    field_validator,
    model_validator,
)


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


# --- response bodies: documentation only (the routes build their JSON themselves) -------------


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


CheckState = Literal["ok", "error", "disabled"]


class StatusApp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    model: str
    allowed_models: list[str]
    quota: dict[str, Any]


class StatusUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    credential: str
    quota: dict[str, Any] = Field(
        default_factory=dict, description="The per-user limits and what is left of them."
    )


class StatusBody(BaseModel):
    """GET /status: 200 when every enabled dependency answers, 503 (``degraded``) otherwise."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "degraded"]
    version: str
    uptime_s: float
    checks: dict[str, CheckState]
    circuits: dict[str, Literal["closed", "open", "half_open"]]
    app: StatusApp | None = Field(default=None, description="Only for a valid app token.")
    user: StatusUser | None = Field(
        default=None, description="Only for an end user's token (a session, a sign-in)."
    )


class SessionRequest(BaseModel):
    """``POST /sessions``: a session for one of the app's signed-in users."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(description="The app's own pseudonymous id of the user (1-128 printable).")
    ttl_s: StrictInt = Field(default=900, description="At most the app's session_max_ttl_s.")
    origin: str | None = Field(default=None, description="Bind the session to this app origin.")


class SessionResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str
    expires_at: str = Field(description="ISO-8601, UTC.")
    user: str


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
    prompt: str | None = Field(default=None, description="Only for apps that log content.")
    answer: str | None = Field(default=None, description="Only for apps that log content.")
    feedback: LogFeedback | None = Field(
        default=None, description="The answer's rating (POST /feedback); null: not rated."
    )


class LogPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[LogRecord]
    next_cursor: str | None


class ConversationMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str
    content: str


class Conversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: str
    messages: list[ConversationMessage]


# --- OpenAPI declarations -----------------------------------------------------------------------
# The answering routes read and validate their body themselves (our error shape, our limits), so
# FastAPI cannot infer their request bodies or responses: they are declared here, once.

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


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` inlined (for ``openapi_extra``, where
    FastAPI registers no components)."""
    schema = model.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def error_responses(*statuses: int, openai: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for these statuses, in our error shape or OpenAI's."""
    model = OpenAIErrorBody if openai else ErrorBody
    return {
        status: {"model": model, "description": _ERROR_DESCRIPTIONS[status]} for status in statuses
    }


def json_request_body(model: type[BaseModel], **examples: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra=`` for a JSON body the route parses itself (see gateway/http/body.py)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": inline_schema(model),
                    "examples": {name: {"value": value} for name, value in examples.items()},
                }
            },
        }
    }


def _json_text(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


def sse_content(events: dict[str, dict[str, Any]], *, description: str) -> dict[str, Any]:
    """A ``text/event-stream`` media type whose named events carry one JSON document each.

    Before OpenAPI 3.2 (``itemSchema``) ``schema`` describes ONE event as ``{event, data}``,
    which is how Schemathesis validates every event of the stream.
    """
    return {
        "description": description,
        "schema": {
            "type": "object",
            "required": ["event", "data"],
            "properties": {"event": {"enum": list(events)}, "data": {"type": "string"}},
            "allOf": [
                {
                    "if": {"properties": {"event": {"const": name}}},
                    "then": {"properties": {"data": _json_text(schema)}},
                }
                for name, schema in events.items()
            ],
        },
    }


def openai_sse_content() -> dict[str, Any]:
    """OpenAI's stream: unnamed events, each a chunk (or an error), then ``data: [DONE]``."""
    return {
        "description": "Chunks as the upstream sent them, then `data: [DONE]`. A failure after "
        "the start ends the stream with an `error` chunk.",
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {"event": {"const": "message"}},
            "if": {"properties": {"data": {"const": "[DONE]"}}},
            "else": {
                "properties": {
                    "data": _json_text(
                        {
                            "anyOf": [
                                inline_schema(ChatCompletionChunk),
                                inline_schema(OpenAIStreamError),
                            ]
                        }
                    )
                }
            },
        },
    }


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
                    {
                        "delta": inline_schema(AskDelta),
                        "done": inline_schema(AskDone),
                        "error": inline_schema(ErrorDetail),
                    },
                    description="`delta` events, then exactly one `done` or `error` event.",
                )
            },
        },
        **error_responses(*ANSWER_ERRORS),
    },
    "openapi_extra": json_request_body(AskRequest, **ASK_EXAMPLES),
}
"""The keyword arguments of ``@router.post("/ask", ...)`` (gateway/http/routes/ask.py)."""

CHAT_COMPLETIONS_OPERATION: dict[str, Any] = {
    "responses": {
        200: {
            "model": ChatCompletion,
            "description": "OpenAI's answer; with `stream: true`, OpenAI's SSE stream.",
            "content": {"text/event-stream": openai_sse_content()},
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
