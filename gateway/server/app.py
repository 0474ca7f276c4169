"""The application as `orchestra serve` runs it: the gateway, plus what its own process needs."""

from __future__ import annotations

from fastapi import FastAPI

from gateway.http.app import create_app
from gateway.server.process import served_process


def create_served_app() -> FastAPI:
    """uvicorn's factory for `orchestra serve` (each worker process calls it)."""
    return create_app(process=served_process)
