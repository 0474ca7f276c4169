"""Rows for the storage tests, inserted through the storage functions under test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from gateway.core.ids import new_app_id
from gateway.storage import apps as app_rows
from gateway.storage.database import Database
from gateway.storage.tables import App, utcnow

MakeApp = Callable[[str], Awaitable[App]]


def app_row(name: str) -> App:
    now = utcnow()
    return App(
        id=new_app_id(),
        name=name,
        origins=["http://localhost:4200"],
        model="gpt-4o-mini",
        allowed_models=["gpt-4o-mini"],
        base_url="https://api.openai.com/v1",
        max_output_tokens=256,
        created_at=now,
        updated_at=now,
    )


@pytest.fixture
def make_app(database: Database) -> MakeApp:
    async def make(name: str) -> App:
        async with database.session() as session:
            return await app_rows.insert_app(session, app_row(name))

    return make
