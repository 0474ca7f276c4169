"""services.logs.log_filter: what `orchestra logs tail` and GET /logs read, by app name."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.core.clock import utcnow
from gateway.core.errors import NotFound
from gateway.services import logs
from gateway.storage.database import Database
from tests.gateway.services.conftest import register

pytestmark = pytest.mark.anyio


async def test_the_filter_names_the_app_by_its_id(database: Database) -> None:
    registered = await register(database, "tailed")
    before = utcnow()
    where = await logs.log_filter(
        database, app_name="tailed", outcome="rejected", user="u-1", since=timedelta(minutes=10)
    )
    assert where.app_id == registered.app.id
    assert (where.outcome, where.user) == ("rejected", "u-1")
    assert where.since is not None
    assert before - timedelta(minutes=10) <= where.since <= utcnow() - timedelta(minutes=10)


async def test_no_filter_reads_everything(database: Database) -> None:
    where = await logs.log_filter(database)
    assert (where.app_id, where.outcome, where.user, where.since) == (None, None, None, None)


async def test_an_unknown_app_is_not_found(database: Database) -> None:
    with pytest.raises(NotFound):
        await logs.log_filter(database, app_name="nobody")
