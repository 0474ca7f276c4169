"""Ratings of answers (POST /feedback): who may rate which answer, and where it is kept.

Only requests that gave an answer can be rated (completed, or cut by a quota or by the client;
not a refused one). Only the app that made the request may rate it, and with a session or
OpenID token only the end user who made it; anyone else is told there is no such answer (404,
as for an unknown id), so request ids of other apps and users cannot be probed. With the
app's own token, the app's backend may rate any answer of the app (it acts for its users).

The record of the request is written in batches (``InteractionRecorder``), so a rating can
arrive before its record is in the database. The request's owner is then found in this
process's buffer; a record buffered by another replica (or worker) is waited for, up to
``wait`` seconds (a couple of flush intervals), before the answer is "not found".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio

from gateway.core.clock import utcnow
from gateway.core.errors import NotFound
from gateway.core.ids import parse_request_id
from gateway.observability.metrics import Metrics
from gateway.services.interactions import InteractionRecorder
from gateway.services.tokens import AppContext
from gateway.storage import feedback as feedback_rows
from gateway.storage import request_logs
from gateway.storage.database import Database
from gateway.storage.tables import Feedback

SCORE_LABELS = {1: "up", -1: "down"}
_POLL_S = 0.05

Owner = tuple[str | None, str | None]


@dataclass(frozen=True, slots=True)
class Rating:
    request_id: str
    score: int  # 1 or -1 (validated at the boundary)
    comment: str | None = None


def _not_found() -> NotFound:
    return NotFound("No answer with this request id to rate for this app (or user).")


async def _owner_now(db: Database, recorder: InteractionRecorder, request_id: str) -> Owner | None:
    # The buffer first: a record leaves it only once committed (see pending_owner).
    buffered = recorder.pending_owner(request_id)
    if buffered is not None:
        return buffered
    async with db.read() as session:
        return await request_logs.record_owner(session, request_id)


async def request_owner(
    db: Database, recorder: InteractionRecorder, request_id: str, *, wait: float
) -> Owner | None:
    """``(app_id, user)`` of the request's record, waiting up to ``wait`` s for it to be
    written (by another replica); None if it does not appear."""
    deadline = time.monotonic() + wait
    while True:
        owner = await _owner_now(db, recorder, request_id)
        if owner is not None or time.monotonic() >= deadline:
            return owner
        await anyio.sleep(_POLL_S)


def may_rate(ctx: AppContext, owner: Owner) -> bool:
    app_id, user = owner
    return app_id == ctx.app_id and (ctx.user is None or user == ctx.user)


async def rate(
    db: Database,
    recorder: InteractionRecorder,
    metrics: Metrics,
    ctx: AppContext,
    rating: Rating,
    *,
    wait: float,
) -> None:
    """Keep the rating (replacing an earlier one of the same answer); NotFound if the caller
    may not rate this request or there is no such request."""
    request_id = parse_request_id(rating.request_id)
    if request_id is None:  # no request of this gateway has such an id: no need to wait
        raise _not_found()
    owner = await request_owner(db, recorder, request_id, wait=wait)
    if owner is None or not may_rate(ctx, owner):
        raise _not_found()
    row = Feedback(
        request_id=request_id,
        app_id=ctx.app_id,
        user=owner[1],
        score=rating.score,
        comment=rating.comment or None,
        rated_at=utcnow(),
    )
    async with db.session() as session:
        await feedback_rows.upsert_feedback(session, row)
    metrics.feedback.labels(ctx.app_name, SCORE_LABELS[rating.score]).inc()
