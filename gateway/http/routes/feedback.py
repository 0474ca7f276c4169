"""POST /feedback: a user's (or the app's) rating of one answer, by its request id.

Called from the browser like /ask (CORS: the app's origins; the middleware answers the
preflight). Someone else's answer, or an unknown id, is a 404 ``not_found``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.http.body import parse_model, read_body
from gateway.http.deps import authenticate_app, resources_of
from gateway.http.schemas.errors import error_responses
from gateway.http.schemas.feedback import FeedbackRequest
from gateway.http.schemas.openapi import json_request_body
from gateway.services import feedback

router = APIRouter()


@router.post(
    "/feedback",
    status_code=204,
    responses={
        204: {"description": "Rated; a later rating of the same answer replaces this one."},
        **error_responses(400, 401, 403, 404, 413, 422, 503),
    },
    openapi_extra=json_request_body(
        FeedbackRequest,
        up={"request_id": "req_01jd3x5v7q9s2m4k6h8f0c1b3a", "score": 1},
        down={"request_id": "req_01jd3x5v7q9s2m4k6h8f0c1b3a", "score": -1, "comment": "Wrong."},
    ),
)
async def rate_answer(request: Request) -> Response:
    resources = resources_of(request)
    ctx = await authenticate_app(request)
    body = parse_model(await read_body(request, resources.settings.max_body_bytes), FeedbackRequest)
    await feedback.rate(
        resources.db,
        resources.recorder,
        resources.metrics,
        ctx,
        feedback.Rating(body.request_id, body.score, body.comment),
        # Long enough for another replica's batch of records to be written.
        wait=2 * resources.settings.log_flush_interval_s + 1.0,
    )
    return Response(status_code=204)
