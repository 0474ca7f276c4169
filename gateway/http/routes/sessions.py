"""POST /sessions: the app's backend (with its ``orc_`` token) mints a session for one user.

The browser then holds only that short-lived session, never the app's token. A session or
OpenID token cannot mint sessions (403 ``insufficient_scope``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.core.errors import GatewayError
from gateway.http.body import parse_model, read_body
from gateway.http.deps import authenticate_app, require_app_token, resources_of
from gateway.http.schemas.errors import error_responses
from gateway.http.schemas.sessions import SessionRequest, SessionResponse
from gateway.services import sessions
from gateway.services.auth_epochs import Announcer

router = APIRouter()


@router.post(
    "/sessions",
    status_code=201,
    responses={
        201: {"model": SessionResponse, "description": "The session; show it to that user only."},
        **error_responses(400, 401, 403, 422, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SessionRequest.model_json_schema()}},
        }
    },
)
async def create_session(request: Request) -> JSONResponse:
    resources = resources_of(request)
    app = "unknown"  # until the token names one (as the other metrics do)
    try:
        # Authenticated first, the scope checked after: a refusal is counted against its app.
        ctx = await authenticate_app(request)
        app = ctx.app_name
        require_app_token(ctx)
        body = parse_model(
            await read_body(request, resources.settings.max_body_bytes), SessionRequest
        )
        minted = await sessions.mint(
            resources.db,
            resources.keyring,
            ctx,
            user=body.user,
            ttl_s=body.ttl_s,
            origin=body.origin,
            announcer=Announcer(resources.redis),
        )
    except GatewayError:
        resources.metrics.session(app, minted=False)
        raise
    resources.metrics.session(app, minted=True)
    return JSONResponse(
        {
            "token": minted.token,
            "expires_at": minted.expires_at.isoformat().replace("+00:00", "Z"),
            "user": body.user,
        },
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )
