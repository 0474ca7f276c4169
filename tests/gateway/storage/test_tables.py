from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import StatementError

from gateway.storage.database import Database
from gateway.storage.tables import App, RequestLog
from tests.gateway.storage.conftest import MakeApp, app_row

pytestmark = pytest.mark.anyio


async def test_times_come_back_timezone_aware_in_utc(database: Database) -> None:
    paris = timezone(timedelta(hours=2))
    moment = datetime(2030, 5, 1, 14, 30, 15, 123456, tzinfo=paris)
    row = app_row("clock")
    row.created_at = moment
    async with database.session() as session:
        session.add(row)
    async with database.session() as session:
        stored = await session.get(App, row.id)
    assert stored is not None
    assert stored.created_at == moment
    assert stored.created_at.tzinfo == UTC
    assert stored.created_at.hour == 12


async def test_a_naive_datetime_is_refused(database: Database) -> None:
    row = app_row("naive")
    row.created_at = datetime(2030, 5, 1, 12, 0)
    with pytest.raises(StatementError, match="naive datetime"):
        async with database.session() as session:
            session.add(row)


async def test_json_columns_round_trip(database: Database, make_app: MakeApp) -> None:
    app = await make_app("json")
    log = RequestLog(
        time=datetime.now(UTC),
        app_id=app.id,
        app_name=app.name,
        request_id="req_1",
        route="/ask",
        outcome="completed",
        http_status=200,
        request_metadata={"page": "home", "n": 1, "nested": {"ok": True}},
    )
    async with database.session() as session:
        session.add(log)
    async with database.session() as session:
        stored = await session.get(RequestLog, log.id)
        app_again = await session.get(App, app.id)
    assert stored is not None
    assert stored.id is not None
    assert stored.request_metadata == {"page": "home", "n": 1, "nested": {"ok": True}}
    assert app_again is not None
    assert app_again.origins == ["http://localhost:4200"]
