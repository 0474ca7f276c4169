"""The upstream's failures translated, at the boundary, into the ``UpstreamError`` tree.

One table per kind: an HTTP status (``error_for_status``), a transport failure
(``transport_error``), an error event or chunk inside a stream (``stream_error``). Upstream
messages are kept (they say what went wrong) but redacted of the call's key and cut.
"""

from __future__ import annotations

import orjson

from gateway.core.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.core.redact import Redactor
from gateway.upstream.tunnel import TunnelRefused
from gateway.upstream.wire import (
    ConnectFailed,
    ProtocolViolation,
    ReadTimedOut,
    Response,
    WireError,
)


def retry_after(response: Response) -> float | None:
    """The upstream's Retry-After in seconds (None if absent or not a number of seconds)."""
    value = response.header(b"retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


#: Of an upstream's error message: how much is read (and redacted), how much is kept.
_MESSAGE_READ = 2000
_MESSAGE_KEPT = 300


def _upstream_message(body: bytes, redact: Redactor) -> str:
    """The upstream's own error message, without the key of the call (nor any secret shape).

    Upstreams repeat the key they were given ("Incorrect API key provided: …"), whole, masked
    or in part, whatever its form (OpenAI's sk-…, Azure's 32 hex digits, anything): ``redact``
    holds that key. Redacted before it is cut, so a cut never leaves a key's start behind.
    """
    try:
        message = orjson.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return redact(str(message)[:_MESSAGE_READ])[:_MESSAGE_KEPT]


def _stream_error_detail(data: bytes, redact: Redactor) -> str:
    """The message of an upstream's error event or error chunk, redacted and cut."""
    try:
        body = orjson.loads(data)
    except ValueError:  # plain text
        return redact(data.decode(errors="replace").strip()[:_MESSAGE_READ])[:_MESSAGE_KEPT]
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message") if isinstance(error, dict) else error
    return (
        redact(message.strip()[:_MESSAGE_READ])[:_MESSAGE_KEPT] if isinstance(message, str) else ""
    )


def stream_error(data: bytes, redact: Redactor) -> UpstreamError:
    detail = _stream_error_detail(data, redact)
    suffix = f": {detail}" if detail else "."
    return UpstreamError(f"The upstream reported an error mid-stream{suffix}")


def error_for_status(
    status: int, body: bytes, retry_after: float | None, redact: Redactor
) -> UpstreamError:
    """The error for an upstream's non-200 answer; ``redact`` holds the key of the call."""
    detail = _upstream_message(body, redact)
    suffix = f": {detail}" if detail else ""
    if status in (401, 403):
        return UpstreamAuthFailed(
            f"The upstream refused this app's provider key (HTTP {status}); "
            "the operator must update it with `orchestra keys set`."
        )
    if status == 429:
        return UpstreamRateLimited(
            f"The upstream is rate limiting this app (HTTP 429){suffix}", retry_after=retry_after
        )
    if status in (502, 503):
        return UpstreamUnavailable(f"The upstream is unavailable (HTTP {status}){suffix}")
    if status == 504:
        return UpstreamTimeout(f"The upstream timed out (HTTP 504){suffix}")
    if status < 500:
        rejected = UpstreamRejected(f"The upstream refused the request (HTTP {status}){suffix}")
        rejected.upstream_status = status
        return rejected
    return UpstreamError(f"The upstream answered HTTP {status}{suffix}")


def transport_error(exc: WireError) -> UpstreamError:
    # A connect timeout too: a connection that never opens is an unreachable upstream
    # (retried, counted by the circuit breaker), not a slow answer.
    if isinstance(exc, TunnelRefused):
        return UpstreamError(str(exc))  # names the proxy and the upstream, no credentials
    if isinstance(exc, ConnectFailed):
        return UpstreamUnavailable("The upstream cannot be reached.")
    if isinstance(exc, ReadTimedOut):
        return UpstreamTimeout("The upstream did not answer in time.")
    if isinstance(exc, ProtocolViolation):
        return UpstreamError("The upstream sent an invalid HTTP answer.")
    return UpstreamError("The connection to the upstream failed.")
