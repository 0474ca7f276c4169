"""The HTTP rendering of the error tree: our JSON shape, and OpenAI's on the /v1 routes."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.core.errors import GatewayError, InvalidRequest, NotFound, QuotaExceeded
from gateway.http.ratelimit import headers_for

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def error_body(error: GatewayError, request_id: str, *, openai_shape: bool) -> dict[str, Any]:
    body: dict[str, Any]
    if openai_shape:
        body = {
            "message": error.message,
            "type": _OPENAI_TYPES.get(error.http_status, "api_error"),
            "param": None,
            "code": error.code,
            "request_id": request_id,
        }
    else:
        body = {"code": error.code, "message": error.message, "request_id": request_id}
    if isinstance(error, QuotaExceeded):
        body["scope"] = error.scope  # "app" (every user of it) or "user" (this user only)
    return {"error": body}


def error_headers(error: GatewayError, *, openai: bool = False) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(error, QuotaExceeded):
        headers.update(headers_for(error.states, openai=openai))
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return headers


def error_response(error: GatewayError, request: Request) -> JSONResponse:
    openai_shape = request.url.path.startswith("/v1/")
    return JSONResponse(
        error_body(error, request_id_of(request), openai_shape=openai_shape),
        status_code=error.http_status,
        headers=error_headers(error, openai=openai_shape),
    )


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return error_response(exc, request)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return http_error_response(exc, request)


def http_error_response(exc: StarletteHTTPException, request: Request) -> JSONResponse:
    error: GatewayError
    if exc.status_code == 404:
        error = NotFound("No such route.")
    elif exc.status_code == 405:
        error = InvalidRequest("Method not allowed on this route.")
    else:
        error = InvalidRequest(str(exc.detail))
    response = error_response(error, request)
    response.status_code = exc.status_code
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Logged with the type only (diagnose is off): values could hold secrets.
    logger.bind(error_type=type(exc).__name__).exception("unhandled error")
    return error_response(GatewayError("Internal error."), request)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
