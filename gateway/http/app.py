"""The application factory: routers, middleware and error handlers; no logic."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gateway import __version__
from gateway.http.errors import install_error_handlers
from gateway.http.hot_routes import HotRoutes
from gateway.http.lifespan import lifespan_for
from gateway.http.middleware import GatewayMiddleware
from gateway.http.routes import (
    answers,
    ask,
    conversations,
    feedback,
    logs,
    metrics,
    openai_compat,
    responses,
    sessions,
    status,
)
from gateway.http.shutdown import ProcessHooks, no_process_hooks
from gateway.observability.logging import configure_logging
from gateway.settings import Settings, load_settings


def create_app(
    settings: Settings | None = None, *, process: ProcessHooks = no_process_hooks
) -> FastAPI:
    """The gateway as an ASGI app. ``process``: what the serving process does while the app
    runs (only `orchestra serve` passes one); by default the app changes nothing process-wide."""
    settings = settings or load_settings()
    configure_logging(
        level=settings.log_level,
        fmt=settings.log_format,
        file=settings.log_file,
        rotation=settings.log_rotation,
        retention=settings.log_retention,
    )
    app = FastAPI(
        title="Orchestra",
        version=__version__,
        lifespan=lifespan_for(settings, process),
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    app.include_router(ask.router)
    app.include_router(answers.router)
    app.include_router(openai_compat.router)
    app.include_router(responses.router)
    app.include_router(status.router)
    app.include_router(logs.router)
    app.include_router(conversations.router)
    app.include_router(feedback.router)
    app.include_router(sessions.router)
    app.include_router(metrics.router)
    if settings.ui_dir is not None:
        # Last, so that the API routes win; html=True serves index.html for "/".
        app.mount("/", StaticFiles(directory=settings.ui_dir, html=True), name="ui")
    # Inside GatewayMiddleware (added last, so outermost): ids, headers and the access log
    # apply to the hot routes too.
    app.add_middleware(
        HotRoutes,
        routes={
            ("POST", "/ask"): ask.ask,
            ("POST", "/v1/chat/completions"): openai_compat.chat_completions,
        },
    )
    app.add_middleware(GatewayMiddleware)
    return app
