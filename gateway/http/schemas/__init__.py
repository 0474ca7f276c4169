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
from gateway.http.schemas.embeddings import EMBEDDINGS_OPERATION, EmbeddingsRequest
from gateway.http.schemas.errors import (
    ANSWER_ERRORS,
    URI_TOO_LONG,
    ErrorBody,
    ErrorDetail,
    HeadErrorBody,
    HeadErrorDetail,
    OpenAIErrorBody,
    OpenAIErrorDetail,
    OpenAIStreamError,
    OpenAIStreamErrorDetail,
    error_responses,
)
from gateway.http.schemas.feedback import MAX_FEEDBACK_COMMENT, FeedbackRequest
from gateway.http.schemas.logs import LogFeedback, LogPage, LogRecord, LogRecordEvent
from gateway.http.schemas.openapi import inline_schema, json_request_body, sse_content
from gateway.http.schemas.responses import (
    RESPONSES_OPERATION,
    STORED_RESPONSE_OPERATION,
    ResponsesRequest,
)
from gateway.http.schemas.sessions import SessionRequest, SessionResponse
from gateway.http.schemas.status import CheckState, StatusApp, StatusBody, StatusUser

__all__ = [
    "ANSWER_ERRORS",
    "ASK_EXAMPLES",
    "ASK_OPERATION",
    "CHAT_COMPLETIONS_OPERATION",
    "EMBEDDINGS_OPERATION",
    "MAX_FEEDBACK_COMMENT",
    "MODELS_OPERATION",
    "RESPONSES_OPERATION",
    "STORED_RESPONSE_OPERATION",
    "URI_TOO_LONG",
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
    "EmbeddingsRequest",
    "ErrorBody",
    "ErrorDetail",
    "FeedbackRequest",
    "HeadErrorBody",
    "HeadErrorDetail",
    "LogFeedback",
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
    "ResponsesRequest",
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
