from __future__ import annotations

import pytest

from gateway.storage import quotas as quota_rows
from gateway.storage.database import Database
from gateway.storage.tables import Quota, utcnow
from tests.gateway.storage.conftest import MakeApp

pytestmark = pytest.mark.anyio


async def test_save_and_get(database: Database, make_app: MakeApp) -> None:
    app = await make_app("demo")
    async with database.session() as session:
        assert await quota_rows.get_quota(session, app.id) is None
        await quota_rows.save_quota(
            session, Quota(app_id=app.id, rpm=60, budget_usd_month=12.5, updated_at=utcnow())
        )
    async with database.session() as session:
        quota = await quota_rows.get_quota(session, app.id)
    assert quota is not None
    assert (quota.rpm, quota.tpm, quota.budget_usd_month) == (60, None, 12.5)
