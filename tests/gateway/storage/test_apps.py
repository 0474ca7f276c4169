from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from gateway.storage import apps as app_rows
from gateway.storage.database import Database
from tests.gateway.storage.conftest import MakeApp, app_row

pytestmark = pytest.mark.anyio


async def test_insert_then_find_by_name_and_id(database: Database, make_app: MakeApp) -> None:
    app = await make_app("demo")
    async with database.session() as session:
        by_name = await app_rows.find_app_by_name(session, "demo")
        by_id = await app_rows.find_app_by_id(session, app.id)
        missing = await app_rows.find_app_by_name(session, "other")
    assert by_name is not None
    assert by_id is not None
    assert by_name.id == by_id.id == app.id
    assert by_name.origins == ["http://localhost:4200"]
    assert by_name.disabled is False
    assert missing is None


async def test_names_are_unique(database: Database, make_app: MakeApp) -> None:
    await make_app("demo")
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            await app_rows.insert_app(session, app_row("demo"))


async def test_list_is_ordered_by_name(database: Database, make_app: MakeApp) -> None:
    for name in ("charlie", "alpha", "bravo"):
        await make_app(name)
    async with database.session() as session:
        names = [app.name for app in await app_rows.list_apps(session)]
    assert names == ["alpha", "bravo", "charlie"]


async def test_delete(database: Database, make_app: MakeApp) -> None:
    app = await make_app("gone")
    async with database.session() as session:
        row = await app_rows.find_app_by_id(session, app.id)
        assert row is not None
        await app_rows.delete_app(session, row)
    async with database.session() as session:
        assert await app_rows.find_app_by_id(session, app.id) is None


async def test_a_failed_unit_of_work_is_rolled_back(database: Database) -> None:
    class Boom(Exception):
        pass

    async def insert_then_fail() -> None:
        async with database.session() as session:
            await app_rows.insert_app(session, app_row("rolled-back"))
            raise Boom

    with pytest.raises(Boom):
        await insert_then_fail()
    async with database.session() as session:
        assert await app_rows.find_app_by_name(session, "rolled-back") is None
