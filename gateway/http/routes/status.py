"""GET /status: liveness and readiness (database, Redis), plus the caller's app when known;
for an end user (session or OIDC token), what is left of the app's limits and the user's."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway import __version__
from gateway.core.errors import GatewayError
from gateway.core.quota_policy import LIMIT_BUDGET, MICROS, SCOPE_APP, SCOPE_USER, LimitState
from gateway.http.deps import authenticate_app, bearer, resources_of
from gateway.http.ratelimit import headers_for
from gateway.http.schemas.status import StatusBody
from gateway.services import quotas

router = APIRouter()


async def _redis_check(request: Request) -> str:
    redis = resources_of(request).redis
    if redis is None:
        return "disabled"
    try:
        await redis.ping()
    except Exception:  # noqa: BLE001 (any failure means "not usable")
        return "error"
    return "ok"


@router.get(
    "/status",
    responses={
        200: {"model": StatusBody, "description": "Every enabled dependency answers."},
        503: {"model": StatusBody, "description": "A dependency is down (`degraded`)."},
    },
)
async def status(request: Request) -> JSONResponse:
    resources = resources_of(request)
    checks = {
        "database": "ok" if await resources.db.ping() else "error",
        "redis": await _redis_check(request),
    }
    for name, state in checks.items():
        if state != "disabled":
            resources.metrics.dependency_up.labels(name).set(1 if state == "ok" else 0)
    healthy = all(value != "error" for value in checks.values())
    body: dict[str, Any] = {
        "status": "ok" if healthy else "degraded",
        "version": __version__,
        "uptime_s": round(time.time() - resources.started_at, 3),
        "checks": checks,
        # Upstreams that failed lately: "open" fails fast, "half_open" lets one probe through.
        "circuits": resources.breakers.states(),
    }
    headers: dict[str, str] = {}
    if healthy and bearer(request) is not None:
        try:
            ctx = await authenticate_app(request)
            limits = await quotas.get_limits(resources.db, app_name=ctx.app_name)
        except GatewayError:
            pass  # /status answers for anyone; the app part only for a valid token
        else:
            body["app"] = {
                "name": ctx.app_name,
                "model": ctx.model,
                "allowed_models": list(ctx.allowed_models),
                "quota": {"limits": limits.to_json()},
            }
            if ctx.user is not None:
                body["user"] = {"id": ctx.user, "credential": ctx.credential}
                states = await resources.limiter.remaining(ctx.app_id, limits, user=ctx.user)
                body["app"]["quota"]["remaining"] = _remaining(states, SCOPE_APP)
                body["user"]["quota"] = {
                    "limits": limits.user_numeric(),
                    "remaining": _remaining(states, SCOPE_USER),
                }
                # The tighter of the app's limits and the user's, as on every answer.
                headers = headers_for(states, openai=False)
    return JSONResponse(body, status_code=200 if healthy else 503, headers=headers)


def _remaining(states: tuple[LimitState, ...], scope: str) -> dict[str, dict[str, Any]]:
    """One scope's limits as they are now: what is left of each, and when it resets."""
    shown: dict[str, dict[str, Any]] = {}
    for state in states:
        if state.scope != scope:
            continue
        unit = MICROS if state.name == LIMIT_BUDGET else 1
        shown[state.name] = {
            "limit": state.limit / unit if unit != 1 else state.limit,
            "remaining": state.remaining / unit if unit != 1 else state.remaining,
            "reset_s": round(state.reset_s, 3),
        }
    return shown
