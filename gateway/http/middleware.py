"""Pure ASGI middleware (streaming-safe): request id, CORS, access log.

CORS: a preflight carries no token, so it is answered for any origin some enabled app
accepts; the route then checks the origin against the calling app (403 origin_not_allowed).
Responses to allowed origins carry the CORS headers even when they are errors, so that the
browser lets the Angular client read the error code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from loguru import logger
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.core.ids import new_request_id

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-site",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
# traceparent, tracestate: the W3C trace context a traced web app sends along.
ALLOW_HEADERS = "Authorization, Content-Type, Accept, traceparent, tracestate"
EXPOSE_HEADERS = "X-Request-Id, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"
#: Scope key: the ``send`` this middleware was given, below every wrapper that only looks at
#: ``http.response.start``. A streamed answer sends its body messages there directly, once its
#: start went through the whole chain (status and headers seen and completed by everyone).
BODY_SEND = "orchestra.body_send"


_SECURITY_RAW = [
    (name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()
]
_CSP_RAW = (b"content-security-policy", API_CSP.encode())
_EXPOSE_RAW = (b"access-control-expose-headers", EXPOSE_HEADERS.encode())


def _with_gateway_headers(
    raw: Iterable[tuple[bytes, bytes]], request_id: str, cors_origin: str | None
) -> list[tuple[bytes, bytes]]:
    """An answer's headers plus ours, replacing any of the same name; Vary gains Origin.

    Built on the raw list in one pass (every answer goes through here; Starlette's
    MutableHeaders rescans the list for every header it sets).
    """
    ours = {b"x-request-id", *(name for name, _ in _SECURITY_RAW)}
    if cors_origin is not None:
        ours |= {b"access-control-allow-origin", b"access-control-expose-headers"}
    headers: list[tuple[bytes, bytes]] = []
    vary: bytes | None = None
    html = False
    for name, value in raw:
        if name in ours:
            continue
        if name == b"vary":
            vary = value
            continue
        if name == b"content-type":
            html = value.startswith(b"text/html")
        headers.append((name, value))
    headers.append((b"x-request-id", request_id.encode()))
    headers.extend(_SECURITY_RAW)
    if not html:
        # API answers load nothing; the served UI (HTML) keeps its own policy.
        headers = [(name, value) for name, value in headers if name != _CSP_RAW[0]]
        headers.append(_CSP_RAW)
    if cors_origin is not None:
        headers.append((b"access-control-allow-origin", cors_origin.encode("latin-1")))
        headers.append(_EXPOSE_RAW)
        vary = b"Origin" if vary is None else vary + b", Origin"
    if vary is not None:
        headers.append((b"vary", vary))
    return headers


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class GatewayMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        scope[BODY_SEND] = send
        origin = _header(scope, b"origin")
        allowed = origin is not None and await self._origin_known(scope, origin)
        if scope["method"] == "OPTIONS" and origin is not None:
            await self._preflight(send, request_id, origin, allowed=allowed)
            return
        started = time.perf_counter()
        status = 500

        started_response = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                message["headers"] = _with_gateway_headers(
                    message.get("headers", ()), request_id, origin if allowed else None
                )
            await send(message)

        with logger.contextualize(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception as exc:  # noqa: BLE001 (the last line of defence: answer, log)
                # Caught here, inside the request's context: the log line has the request id,
                # and the 500 has our headers. No traceback reaches the client.
                logger.bind(error_type=type(exc).__name__).exception("unhandled error")
                if status == 500 and not started_response:
                    await _internal_error(send_with_headers, request_id)
            finally:
                logger.bind(
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                ).info("request")

    @staticmethod
    async def _origin_known(scope: Scope, origin: str) -> bool:
        app = scope.get("app")
        resources = getattr(getattr(app, "state", None), "resources", None)
        if resources is None:
            return False
        try:
            return bool(await resources.origins.allows(origin))
        except Exception:  # noqa: BLE001 (the database may be down; deny, do not crash)
            return False

    @staticmethod
    async def _preflight(send: Send, request_id: str, origin: str, *, allowed: bool) -> None:
        # Answered here, not by the app: the security headers are added explicitly.
        security = [
            *_SECURITY_RAW,
            _CSP_RAW,
        ]
        if allowed:
            headers = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                (b"access-control-max-age", b"600"),
                (b"vary", b"Origin"),
                (b"x-request-id", request_id.encode()),
                (b"content-length", b"0"),
                *security,
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        await _send_error(
            send,
            403,
            "origin_not_allowed",
            "This origin is not allowed to call the gateway.",
            request_id,
            extra_headers=[(b"x-request-id", request_id.encode()), *security],
        )


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    request_id: str,
    *,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A whole JSON error answer in our shape, sent from the middleware itself."""
    body = json.dumps(
        {"error": {"code": code, "message": message, "request_id": request_id}}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _internal_error(send: Send, request_id: str) -> None:
    # Sent through the request's own wrapper, which adds X-Request-Id and the security headers.
    await _send_error(send, 500, "internal_error", "Internal error.", request_id)
