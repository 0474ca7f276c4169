"""The demo's own app backend: what a real app's server does for Orchestra, and no more.

`orchestra demo` runs it (``orchestra demo-backend``) next to the gateway, so that the page
never receives the app's ``orc_`` token: this process holds it, server-side, like any app's
backend would. A raw ASGI app on uvicorn (no framework: the CLI must not import one), with
httpx as the client of the gateway. Production code never imports it.

- ``GET /`` and the other files of the built demo UI (``index.html``, ``main-….js``, …); the
  first visit gets a random pseudonymous user id in an HttpOnly, SameSite=Lax cookie.
- ``GET /config.json``: ``{"baseUrl": <gateway URL>, "sessionUrl": "/api/orchestra/session",
  "notice": …}``; no token.
- ``POST /api/orchestra/session``: a session for this browser's user id, minted with the app
  token (``POST {gateway}/sessions``); answers ``{"token", "expires_at"}``, ``no-store``.
  The endpoint has no CORS headers: another site can make a browser post to it but cannot read
  the answer (and under SameSite=Lax, that browser's cookie is not even sent).
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import re
import secrets
import socket
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

import httpx

from gateway.fakes.asgi import Receive, Scope, Send, run_blocking

SESSION_PATH = "/api/orchestra/session"
USER_COOKIE = "demo_user"
#: A year: the pseudonymous user of this browser stays the same across visits.
_COOKIE_MAX_AGE_S = 365 * 24 * 3600
_USER_ID = re.compile(r"^u-[0-9a-f]{32}$")
_GATEWAY_TIMEOUT_S = 10.0
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

logger = logging.getLogger("orchestra.demo_backend")


@dataclass(frozen=True, slots=True)
class DemoBackendConfig:
    ui_dir: Path
    #: The gateway's base URL as the browser reaches it, e.g. ``http://127.0.0.1:8001``.
    gateway_url: str
    #: The demo app's ``orc_`` token: used here, server-side, never sent to a browser.
    app_token: str
    #: Lifetime of the sessions minted for the page (the app's ``session_max_ttl_s`` at most).
    session_ttl_s: int = 900
    notice: str | None = None


def new_user_id() -> str:
    return "u-" + secrets.token_hex(16)


def user_from_cookie(header: str | None) -> str | None:
    """The user id in the ``Cookie`` header, or None (no cookie, or not one we made)."""
    if not header:
        return None
    try:
        cookie = SimpleCookie(header)
    except CookieError:
        return None
    morsel = cookie.get(USER_COOKIE)
    if morsel is None or not _USER_ID.match(morsel.value):
        return None
    return morsel.value


def _set_cookie(user: str) -> tuple[bytes, bytes]:
    value = f"{USER_COOKIE}={user}; Path=/; Max-Age={_COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax"
    return (b"set-cookie", value.encode())


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
    *,
    head: bool = False,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *_SECURITY_HEADERS,
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _send_json(
    send: Send, status: int, value: object, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    no_store = [(b"cache-control", b"no-store"), *(extra or [])]
    await _send(send, status, json.dumps(value).encode(), b"application/json", no_store)


def _error(code: str, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message}}


async def _drain(receive: Receive) -> None:
    """Reads (and ignores) a request body: the session endpoint takes none."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


class DemoBackend:
    """The ASGI app; one httpx client to the gateway, opened and closed by the lifespan."""

    def __init__(self, config: DemoBackendConfig) -> None:
        self.config = config
        self.ui_root = config.ui_dir.resolve()
        self.gateway_url = config.gateway_url.rstrip("/")
        self.client: httpx.AsyncClient | None = None
        self.runtime_config = json.dumps(
            {
                "baseUrl": self.gateway_url,
                "sessionUrl": SESSION_PATH,
                **({"notice": config.notice} if config.notice else {}),
            }
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.client = httpx.AsyncClient(timeout=_GATEWAY_TIMEOUT_S)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        user = user_from_cookie(_header(scope, b"cookie"))
        if path == SESSION_PATH:
            if method != "POST":
                await _send_json(send, 405, _error("method_not_allowed", "Use POST."))
                return
            await _drain(receive)
            await self._session(send, user)
            return
        if method not in ("GET", "HEAD"):
            await _send_json(send, 405, _error("method_not_allowed", "Use GET."))
            return
        head = method == "HEAD"
        if path == "/config.json":
            await _send(
                send,
                200,
                self.runtime_config,
                b"application/json",
                [(b"cache-control", b"no-store")],
                head=head,
            )
            return
        await self._static(send, path, user, head=head)

    async def _static(self, send: Send, path: str, user: str | None, *, head: bool) -> None:
        relative = "index.html" if path in ("", "/") else path.lstrip("/")
        target = (self.ui_root / relative).resolve()
        if not target.is_relative_to(self.ui_root) or not target.is_file():
            await _send(send, 404, b"Not found\n", b"text/plain; charset=utf-8", head=head)
            return
        body = await asyncio.to_thread(target.read_bytes)
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type == "application/javascript":
            content_type += "; charset=utf-8"
        extra: list[tuple[bytes, bytes]] = []
        if target.name == "index.html":
            extra.append((b"cache-control", b"no-cache"))
            if user is None:  # the first visit: this browser's pseudonymous user from now on
                extra.append(_set_cookie(new_user_id()))
        await _send(send, 200, body, content_type.encode(), extra, head=head)

    async def _session(self, send: Send, user: str | None) -> None:
        extra: list[tuple[bytes, bytes]] = []
        if user is None:  # e.g. cookies cleared since the page was loaded
            user = new_user_id()
            extra.append(_set_cookie(user))
        minted = await self._mint(user)
        if minted is None:
            await _send_json(
                send,
                502,
                _error("session_unavailable", "The gateway did not give a session; see its log."),
                extra,
            )
            return
        await _send_json(send, 200, minted, extra)

    async def _mint(self, user: str) -> dict[str, str] | None:
        """``{"token", "expires_at"}`` from the gateway's ``POST /sessions``, or None."""
        assert self.client is not None, "the lifespan opens the client"
        try:
            response = await self.client.post(
                f"{self.gateway_url}/sessions",
                json={"user": user, "ttl_s": self.config.session_ttl_s},
                headers={"Authorization": f"Bearer {self.config.app_token}"},
            )
        except httpx.HTTPError as exc:
            logger.warning("minting a session failed: %s", type(exc).__name__)
            return None
        if response.status_code != 201:
            logger.warning("the gateway refused to mint a session: HTTP %s", response.status_code)
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return None
        token, expires_at = body.get("token"), body.get("expires_at")
        if not isinstance(token, str) or not isinstance(expires_at, str):
            return None
        return {"token": token, "expires_at": expires_at}


def create_app(config: DemoBackendConfig) -> DemoBackend:
    return DemoBackend(config)


def serve(
    config: DemoBackendConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    sock: socket.socket | None = None,
) -> None:
    """Run the demo backend with uvicorn until interrupted (blocking); on ``sock`` if given."""
    run_blocking(create_app(config), host=host, port=port, sock=sock)
