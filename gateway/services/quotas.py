"""Quota limits per app (stored here; enforced by the quota counters)."""

from __future__ import annotations

from gateway.core.errors import InvalidRequest, NotFound
from gateway.services.views import QuotaLimits
from gateway.storage import apps as app_rows
from gateway.storage import quotas as quota_rows
from gateway.storage.database import Database
from gateway.storage.tables import Quota, utcnow


async def set_quota(db: Database, *, app_name: str, changes: QuotaLimits) -> QuotaLimits:
    """Set the given limits; fields left None keep their value. Use 0 to clear a limit."""
    for field, value in changes.numeric().items():
        if value is not None and value < 0:
            raise InvalidRequest(f"--{field.replace('_', '-')} cannot be negative.")
    async with db.session() as session:
        app = await app_rows.find_app_by_name(session, app_name)
        if app is None:
            raise NotFound(f"No app named {app_name!r}. See `orchestra apps list`.")
        quota = await quota_rows.get_quota(session, app.id) or Quota(
            app_id=app.id, updated_at=utcnow()
        )
        for field, value in changes.numeric().items():
            if value is not None:
                setattr(quota, field, value or None)  # 0 clears the limit
        if changes.soft_cap is not None:
            quota.soft_cap = changes.soft_cap
        quota.updated_at = utcnow()
        await quota_rows.save_quota(session, quota)
        return QuotaLimits.of(quota)


async def get_limits(db: Database, *, app_name: str) -> QuotaLimits:
    async with db.read() as session:
        app = await app_rows.find_app_by_name(session, app_name)
        if app is None:
            raise NotFound(f"No app named {app_name!r}. See `orchestra apps list`.")
        return QuotaLimits.of(await quota_rows.get_quota(session, app.id))
