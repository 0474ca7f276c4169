"""Request-scoped lookups: the resources, the calling app, the admin."""

from __future__ import annotations

import hmac
import time

from fastapi import Request

from gateway.core.errors import InsufficientScope, OriginNotAllowed, Unauthenticated
from gateway.http.resources import Resources
from gateway.services.ask import CallMeta
from gateway.services.origins import origin_allowed_for_app
from gateway.services.tokens import INVALID_TOKEN_MESSAGE, AppContext


def resources_of(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def call_meta(request: Request, route: str) -> CallMeta:
    """The call's identity; with tracing on, its span starts here (ended by its record)."""
    meta = CallMeta(
        request_id=str(request.scope["state"]["request_id"]),
        route=route,
        origin=request.headers.get("origin"),
        started=time.perf_counter(),
    )
    tracer = resources_of(request).tracer
    if tracer is not None:
        headers = request.headers
        tracer.start(
            meta.request_id, headers.get("traceparent"), headers.get("tracestate"), meta.started
        )
    return meta


async def authenticate_app(request: Request, *, end_users: bool = True) -> AppContext:
    """The calling app (and end user, if a session or OpenID token), checked against the
    browser origin; raises 401/403 errors. ``end_users=False``: a route for the app's own
    backend only (403 ``insufficient_scope`` for an end user's token). A session bound to an
    origin is refused from any other origin, and without one."""
    token = bearer(request)
    if token is None:
        raise Unauthenticated(INVALID_TOKEN_MESSAGE)
    ctx = await resources_of(request).auth.authenticate(token)
    origin = request.headers.get("origin")
    if not origin_allowed_for_app(origin, ctx.origins) or (
        ctx.bound_origin is not None and origin != ctx.bound_origin
    ):
        raise OriginNotAllowed(f"The origin {origin!r} is not allowed for this app.")
    if not end_users:
        require_app_token(ctx)
    return ctx


def require_app_token(ctx: AppContext) -> None:
    """403 ``insufficient_scope`` for an end user's token (a route for the app's backend)."""
    if ctx.user is not None:
        raise InsufficientScope(
            "An end user's token cannot be used here; this needs the app's own token."
        )


def is_admin(request: Request) -> bool:
    configured = resources_of(request).settings.admin_token
    token = bearer(request)
    if configured is None or token is None:
        return False
    return hmac.compare_digest(token.encode(), configured.get_secret_value().encode())
