"""GET /status: liveness and readiness (database, Redis), plus the caller's app when known."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway import __version__
from gateway.core.errors import GatewayError
from gateway.http.deps import authenticate_app, bearer, resources_of
from gateway.http.schemas import StatusBody
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
    return JSONResponse(body, status_code=200 if healthy else 503)
