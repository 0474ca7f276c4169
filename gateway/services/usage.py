"""Usage per app over a period, from the interaction records (the source of truth)."""

from __future__ import annotations

from datetime import datetime

from gateway.core.clock import utcnow
from gateway.core.errors import InvalidRequest, NotFound
from gateway.storage import apps as app_rows
from gateway.storage import request_logs
from gateway.storage.database import Database
from gateway.storage.request_logs import UsageRow

__all__ = ["PERIODS", "UsageRow", "period_start", "usage_report"]

PERIODS = ("day", "month")


def period_start(period: str, now: datetime | None = None) -> datetime:
    now = now or utcnow()
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raise InvalidRequest(f"Unknown period {period!r}: use 'day' or 'month'.")


async def usage_report(
    db: Database, *, period: str, app_name: str | None = None, by_user: bool = False
) -> tuple[datetime, list[UsageRow]]:
    """Usage per app (per app and end user with ``by_user``) since the period began."""
    since = period_start(period)
    async with db.read() as session:
        app_id = None
        if app_name is not None:
            app = await app_rows.find_app_by_name(session, app_name)
            if app is None:
                raise NotFound(f"No app named {app_name!r}. See `orchestra apps list`.")
            app_id = app.id
        return since, await request_logs.sum_usage(
            session, since=since, app_id=app_id, by_user=by_user
        )
