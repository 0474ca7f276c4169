"""The one error tree of Orchestra.

Every error a caller can see is a ``GatewayError``. Each class carries the stable ``code`` that
clients test against and the HTTP status it maps to; the HTTP handler, the SSE encoder and the
CLI all read these two attributes, so a new error cannot be added without a rendering.

    GatewayError
    ├── InvalidRequest (400 invalid_request)
    │   ├── UnprocessableRequest (422 invalid_request)
    │   ├── RequestTooLarge (413 request_too_large)
    │   ├── ModelNotAllowed (400 model_not_allowed)
    │   └── ContentFlagged (400 content_flagged)
    ├── Unauthenticated (401 invalid_token)
    │   └── TokenExpired (401 token_expired: a session or OIDC token past its exp; refresh it)
    ├── Forbidden (403 forbidden)
    │   ├── AppDisabled (403 app_disabled)
    │   └── OriginNotAllowed (403 origin_not_allowed)
    ├── NotFound (404 not_found)
    ├── Conflict (409 conflict)
    ├── QuotaExceeded (429 quota_exceeded, retry_after)
    ├── QuotaUnavailable (503 quota_unavailable)
    ├── ConfigurationError (500 configuration_error)
    │   ├── MasterKeyError (500 master_key_error)
    │   └── NotInitialised (500 not_initialised)
    ├── StorageUnavailable (503 storage_unavailable)
    ├── IdentityProviderUnavailable (503 identity_provider_unavailable)
    ├── ShuttingDown (503 shutting_down)
    └── UpstreamError (502 upstream_error)
        ├── UpstreamRejected (502 upstream_error: the upstream's 4xx, never retried)
        ├── UpstreamAuthFailed (502 upstream_auth_failed)
        ├── UpstreamTimeout (504 upstream_timeout)
        ├── UpstreamRateLimited (429 upstream_rate_limited, retry_after)
        └── UpstreamUnavailable (503 upstream_unavailable)
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    """Base of every error Orchestra reports to a caller."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    #: Whether the same request may succeed if retried later (used by clients and retries).
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class InvalidRequest(GatewayError):
    code = "invalid_request"
    http_status = 400


class UnprocessableRequest(InvalidRequest):
    """Well-formed JSON that does not match the schema."""

    http_status = 422


class RequestTooLarge(InvalidRequest):
    code = "request_too_large"
    http_status = 413


class ModelNotAllowed(InvalidRequest):
    code = "model_not_allowed"
    http_status = 400


class ContentFlagged(InvalidRequest):
    """The moderation step flagged the prompt; the chat model was not called."""

    code = "content_flagged"
    http_status = 400


class Unauthenticated(GatewayError):
    """Unknown, revoked and expired tokens all end here, with the same message."""

    code = "invalid_token"
    http_status = 401


class TokenExpired(Unauthenticated):
    """A well-formed, correctly signed token past its expiry: the client should get a new one.

    Only a token whose signature verified is reported as expired; a forged one is never told apart.
    """

    code = "token_expired"


class Forbidden(GatewayError):
    code = "forbidden"
    http_status = 403


class AppDisabled(Forbidden):
    code = "app_disabled"


class OriginNotAllowed(Forbidden):
    code = "origin_not_allowed"


class InsufficientScope(Forbidden):
    """An end user's token (a session, an OpenID Connect token) on a route for the app's
    backend only: minting sessions, reading the app's records."""

    code = "insufficient_scope"


class NotFound(GatewayError):
    code = "not_found"
    http_status = 404


class Conflict(GatewayError):
    code = "conflict"
    http_status = 409


class QuotaExceeded(GatewayError):
    code = "quota_exceeded"
    http_status = 429
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        limit: str | None = None,
        states: tuple[object, ...] = (),
        scope: str = "app",
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        #: The limit that was hit, and every limit's state for the RateLimit headers.
        self.limit = limit
        self.states = states
        #: Whose limit it was: "app" (every user of the app) or "user" (this user only).
        self.scope = scope

    @property
    def qualified_limit(self) -> str | None:
        """The limit as the metrics label it: ``rpm`` for the app's, ``user_rpm`` for a user's."""
        if self.limit is None or self.scope == "app":
            return self.limit
        return f"{self.scope}_{self.limit}"


class QuotaUnavailable(GatewayError):
    """The shared quota counters cannot be reached and the limit fails closed."""

    code = "quota_unavailable"
    http_status = 503
    retryable = True


class ShuttingDown(GatewayError):
    """The gateway is stopping: the answer was ended after the drain period."""

    code = "shutting_down"
    http_status = 503
    retryable = True


class StreamExpired(GatewayError):
    """The answer ended longer ago than the retention window (or its events were dropped)."""

    code = "stream_expired"
    http_status = 410


class Cancelled(GatewayError):
    """The answer was stopped on request (``POST /ask/{id}/cancel``)."""

    code = "cancelled"
    http_status = 499


class ConfigurationError(GatewayError):
    code = "configuration_error"
    http_status = 500


class MasterKeyError(ConfigurationError):
    code = "master_key_error"


class NotInitialised(ConfigurationError):
    code = "not_initialised"


class StorageUnavailable(GatewayError):
    code = "storage_unavailable"
    http_status = 503
    retryable = True


class IdentityProviderUnavailable(GatewayError):
    """The OpenID provider's discovery document or keys cannot be fetched, and none are cached."""

    code = "identity_provider_unavailable"
    http_status = 503
    retryable = True


class UpstreamError(GatewayError):
    code = "upstream_error"
    http_status = 502
    retryable = True


class UpstreamRejected(UpstreamError):
    """The upstream refused the request itself (a 4xx): retrying it would not help."""

    retryable = False
    #: The upstream's HTTP status (404: the model does not exist there; try a fallback).
    upstream_status: int = 400


class UpstreamAuthFailed(UpstreamError):
    """The app's provider key was refused: the operator's problem, not the caller's token."""

    code = "upstream_auth_failed"
    retryable = False


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"
    http_status = 504


class UpstreamRateLimited(UpstreamError):
    code = "upstream_rate_limited"
    http_status = 429


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"
    http_status = 503


def all_error_classes() -> list[type[GatewayError]]:
    """Every class of the tree, the root included (for the mapping tests)."""
    found: list[type[GatewayError]] = []
    pending: list[type[GatewayError]] = [GatewayError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
