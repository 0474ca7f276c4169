"""Ownership of stored responses: remembered once, checked per app and user, forgotten late."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from gateway.services import responses
from gateway.services.tokens import authenticate
from gateway.storage.database import Database
from tests.gateway.services.conftest import register

pytestmark = pytest.mark.anyio


async def test_an_owner_is_its_app_and_user_and_the_first_one_stays(database: Database) -> None:
    first = await authenticate(database, (await register(database, "first")).token.secret)
    second = await authenticate(database, (await register(database, "second")).token.secret)
    alice = replace(first, user="alice")
    await responses.remember_owner(database, alice, "resp_1")
    await responses.remember_owner(database, second, "resp_1")  # an id seen again
    assert await responses.owns(database, alice, "resp_1")
    for stranger in (second, first, replace(first, user="bob")):
        assert not await responses.owns(database, stranger, "resp_1")
    assert not await responses.owns(database, alice, "resp_unknown")


async def test_owners_older_than_the_upstreams_retention_are_forgotten(
    database: Database,
) -> None:
    ctx = await authenticate(database, (await register(database, "app")).token.secret)
    await responses.remember_owner(database, ctx, "resp_old")
    assert await responses.forget_expired_owners(database) == 0
    assert await responses.owns(database, ctx, "resp_old")
    assert await responses.forget_expired_owners(database, older_than=timedelta(0)) == 1
    assert not await responses.owns(database, ctx, "resp_old")
