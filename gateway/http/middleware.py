"""Pure ASGI middleware (streaming-safe): request id, CORS, access log.

CORS: a preflight carries no token, so it is answered for any origin some enabled app
accepts; the route then checks the origin against the calling app (403 origin_not_allowed).
Responses to allowed origins carry the CORS headers even when they are errors, so that the
browser lets the Angular client read the error code.
"""

from __future__ import annotations

import json
import time

from loguru import logger
from starlette.datastructures import MutableHeaders
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
ALLOW_HEADERS = "Authorization, Content-Type, Accept"
EXPOSE_HEADERS = "X-Request-Id, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"


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
                headers = MutableHeaders(scope=message)
                headers["X-Request-Id"] = request_id
                headers.update(SECURITY_HEADERS)
                if not headers.get("content-type", "").startswith("text/html"):
                    # API answers load nothing; the served UI (HTML) keeps its own policy.
                    headers["Content-Security-Policy"] = API_CSP
                if allowed and origin is not None:
                    headers["Access-Control-Allow-Origin"] = origin
                    headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
                    headers.add_vary_header("Origin")
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
            *((name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()),
            (b"content-security-policy", API_CSP.encode()),
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
