from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from gateway.core.ids import new_token_id
from gateway.security import tokens as token_secrets
from gateway.storage import tokens as token_rows
from gateway.storage.database import Database
from gateway.storage.tables import ClientToken, utcnow
from tests.gateway.storage.conftest import MakeApp

pytestmark = pytest.mark.anyio


def _token(app_id: str, digest: str, *, label: str | None = None, age_s: int = 0) -> ClientToken:
    return ClientToken(
        id=new_token_id(),
        app_id=app_id,
        digest=digest,
        hint="orc_abcd…",
        label=label,
        created_at=utcnow() - timedelta(seconds=age_s),
    )


async def test_find_by_digest_returns_the_token_and_its_app(
    database: Database, make_app: MakeApp
) -> None:
    app = await make_app("demo")
    digest = token_secrets.digest("orc_secret")
    async with database.session() as session:
        await token_rows.insert_token(session, _token(app.id, digest, label="ci"))
    async with database.session() as session:
        found = await token_rows.find_token_with_app(session, digest)
        missing = await token_rows.find_token_with_app(session, token_secrets.digest("orc_other"))
    assert found is not None
    token, owner = found
    assert token.label == "ci"
    assert owner.id == app.id
    assert owner.name == "demo"
    assert missing is None


async def test_digests_are_unique(database: Database, make_app: MakeApp) -> None:
    app = await make_app("demo")
    async with database.session() as session:
        await token_rows.insert_token(session, _token(app.id, "d" * 64))
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            await token_rows.insert_token(session, _token(app.id, "d" * 64))


async def test_a_token_needs_an_existing_app(database: Database) -> None:
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            await token_rows.insert_token(session, _token("app_missing", "e" * 64))


async def test_list_returns_one_apps_tokens_oldest_first(
    database: Database, make_app: MakeApp
) -> None:
    demo, other = await make_app("demo"), await make_app("other")
    async with database.session() as session:
        await token_rows.insert_token(session, _token(demo.id, "1" * 64, label="new", age_s=0))
        await token_rows.insert_token(session, _token(demo.id, "2" * 64, label="old", age_s=60))
        await token_rows.insert_token(session, _token(other.id, "3" * 64, label="theirs"))
    async with database.session() as session:
        labels = [t.label for t in await token_rows.list_tokens(session, demo.id)]
    assert labels == ["old", "new"]


async def test_mark_revoked(database: Database, make_app: MakeApp) -> None:
    app = await make_app("demo")
    row = _token(app.id, "4" * 64)
    async with database.session() as session:
        await token_rows.insert_token(session, row)
    when = utcnow()
    async with database.session() as session:
        stored = await token_rows.find_token(session, row.id)
        assert stored is not None
        assert stored.revoked_at is None
        await token_rows.mark_revoked(session, stored, when)
    async with database.session() as session:
        again = await token_rows.find_token(session, row.id)
    assert again is not None
    assert again.revoked_at == when
