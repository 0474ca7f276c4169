"""Public request and response models of the HTTP API, one module per route (tables live in
storage/tables.py), and the OpenAPI pieces built from them (``openapi``).

The names are re-exported here, so ``from gateway.http.schemas import AskRequest`` keeps working.
"""

from __future__ import annotations

from gateway.http.schemas.ask import (
    ASK_EXAMPLES,
    ASK_OPERATION,
    AskAnswer,
    AskDelta,
    AskDone,
    AskRequest,
    AskStreamEvent,
    Message,
    Usage,
)
from gateway.http.schemas.chat_completions import (
    CHAT_COMPLETIONS_OPERATION,
    MODELS_OPERATION,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    ChatRole,
    ModelCard,
    ModelList,
    OpenAIStreamEvent,
)
from gateway.http.schemas.conversations import Conversation, ConversationMessage
from gateway.http.schemas.errors import (
    ANSWER_ERRORS,
    ErrorBody,
    ErrorDetail,
    OpenAIErrorBody,
    OpenAIErrorDetail,
    OpenAIStreamError,
    OpenAIStreamErrorDetail,
    error_responses,
)
from gateway.http.schemas.logs import LogPage, LogRecord, LogRecordEvent
from gateway.http.schemas.openapi import inline_schema, json_request_body, sse_content
from gateway.http.schemas.sessions import SessionRequest, SessionResponse
from gateway.http.schemas.status import CheckState, StatusApp, StatusBody, StatusUser

__all__ = [
    "ANSWER_ERRORS",
    "ASK_EXAMPLES",
    "ASK_OPERATION",
    "CHAT_COMPLETIONS_OPERATION",
    "MODELS_OPERATION",
    "AskAnswer",
    "AskDelta",
    "AskDone",
    "AskRequest",
    "AskStreamEvent",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "ChatRole",
    "CheckState",
    "Conversation",
    "ConversationMessage",
    "ErrorBody",
    "ErrorDetail",
    "LogPage",
    "LogRecord",
    "LogRecordEvent",
    "Message",
    "ModelCard",
    "ModelList",
    "OpenAIErrorBody",
    "OpenAIErrorDetail",
    "OpenAIStreamError",
    "OpenAIStreamErrorDetail",
    "OpenAIStreamEvent",
    "SessionRequest",
    "SessionResponse",
    "StatusApp",
    "StatusBody",
    "StatusUser",
    "Usage",
    "error_responses",
    "inline_schema",
    "json_request_body",
    "sse_content",
]
