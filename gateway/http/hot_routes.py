"""The two hot routes, answered without FastAPI's router: the same endpoints, the same answers.

``POST /ask`` and ``POST /v1/chat/completions`` take the Request and return a Response (no
dependencies, no response model), so Starlette's router, FastAPI's request handler and its two
exception wrappers only add time to every call. They stay declared on the app (the OpenAPI
document and every other method or path still go through the router); this middleware, inside
GatewayMiddleware, answers them first and renders their errors with the app's own handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.core.errors import GatewayError
from gateway.http.errors import error_response, http_error_response

Endpoint = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], Endpoint]) -> None:
        self.app = app
        self._routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            endpoint = self._routes.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await self._serve(endpoint, scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _serve(endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except GatewayError as error:
            response = error_response(error, request)
        except HTTPException as exc:
            response = http_error_response(exc, request)
        # Anything else goes up to GatewayMiddleware: logged, answered with a 500, as before.
        await response(scope, receive, send)
