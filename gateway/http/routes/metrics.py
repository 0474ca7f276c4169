"""GET /metrics: the Prometheus exposition (optionally behind ORCHESTRA_METRICS_TOKEN)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.core.errors import Unauthenticated
from gateway.http.deps import bearer, resources_of
from gateway.http.schemas.errors import error_responses

router = APIRouter()


# PlainTextResponse only documents the 200 (Prometheus' text format); the route builds its own.
@router.get("/metrics", response_class=PlainTextResponse, responses=error_responses(401))
async def metrics(request: Request) -> Response:
    resources = resources_of(request)
    required = resources.settings.metrics_token
    if required is not None:
        presented = bearer(request) or ""
        if not hmac.compare_digest(presented.encode(), required.get_secret_value().encode()):
            raise Unauthenticated("/metrics needs the metrics token (ORCHESTRA_METRICS_TOKEN).")
    return Response(resources.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
