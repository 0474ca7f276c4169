from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.core.errors import AppDisabled, NotFound, Unauthenticated
from gateway.security import tokens as token_secrets
from gateway.services import apps, tokens
from gateway.services.tokens import INVALID_TOKEN_MESSAGE, authenticate
from gateway.storage.database import Database
from gateway.storage.tables import utcnow
from tests.gateway.services.conftest import register

pytestmark = pytest.mark.anyio


async def test_the_first_token_authenticates(database: Database) -> None:
    registered = await register(database, "demo")
    ctx = await authenticate(database, registered.token.secret)
    assert ctx.app_id == registered.app.id
    assert ctx.app_name == "demo"
    assert ctx.token_id == registered.token.info.id
    assert ctx.model == "gpt-4o-mini"
    assert ctx.allowed_models == ("gpt-4o-mini",)
    assert ctx.base_url == "https://api.openai.com/v1"
    assert ctx.max_output_tokens == 1024
    assert ctx.log_content == "metadata"


async def test_issue_list_and_revoke(database: Database) -> None:
    await register(database, "demo")
    issued = await tokens.issue_token(
        database, app_name="demo", label="ci", expires_in=timedelta(days=30)
    )
    assert issued.secret.startswith("orc_")
    assert issued.info.label == "ci"
    assert issued.info.expires_at is not None
    assert issued.info.expires_at - issued.info.created_at == timedelta(days=30)
    listed = await tokens.list_tokens(database, app_name="demo")
    assert [t.label for t in listed] == ["initial", "ci"]
    assert all(t.state(utcnow()) == "active" for t in listed)
    await authenticate(database, issued.secret)

    revoked = await tokens.revoke_token(database, issued.info.id)
    assert revoked.revoked_at is not None
    assert revoked.state(utcnow()) == "revoked"
    # Revoking twice keeps the first revocation time.
    assert (await tokens.revoke_token(database, issued.info.id)).revoked_at == revoked.revoked_at
    states = {t.id: t.state(utcnow()) for t in await tokens.list_tokens(database, app_name="demo")}
    assert states == {listed[0].id: "active", issued.info.id: "revoked"}


async def test_unknown_app_and_unknown_token_are_not_found(database: Database) -> None:
    with pytest.raises(NotFound, match="No app named 'nope'"):
        await tokens.issue_token(database, app_name="nope", label=None, expires_in=None)
    with pytest.raises(NotFound, match="No app named 'nope'"):
        await tokens.list_tokens(database, app_name="nope")
    with pytest.raises(NotFound, match="No token with id 'tok_missing'"):
        await tokens.revoke_token(database, "tok_missing")


async def test_unknown_revoked_and_expired_tokens_look_the_same(database: Database) -> None:
    await register(database, "demo")
    revoked = await tokens.issue_token(database, app_name="demo", label=None, expires_in=None)
    await tokens.revoke_token(database, revoked.info.id)
    expiring = await tokens.issue_token(
        database, app_name="demo", label=None, expires_in=timedelta(minutes=5)
    )
    await authenticate(database, expiring.secret)  # valid until it expires
    later = utcnow() + timedelta(minutes=5, seconds=1)

    presented = {
        "malformed": ("not-a-token", None),
        "empty": ("", None),
        "unknown": (token_secrets.generate().secret, None),
        "revoked": (revoked.secret, None),
        "expired": (expiring.secret, later),
        "truncated": (expiring.secret[:-1], None),
    }
    failures: dict[str, tuple[type[Exception], str, str, int]] = {}
    for case, (secret, now) in presented.items():
        with pytest.raises(Unauthenticated) as caught:
            await authenticate(database, secret, now=now)
        error = caught.value
        failures[case] = (type(error), error.message, error.code, error.http_status)
    assert set(failures.values()) == {
        (Unauthenticated, INVALID_TOKEN_MESSAGE, "invalid_token", 401)
    }, failures


async def test_expiry_is_exact(database: Database) -> None:
    await register(database, "demo")
    issued = await tokens.issue_token(
        database, app_name="demo", label=None, expires_in=timedelta(hours=1)
    )
    expires_at = issued.info.expires_at
    assert expires_at is not None
    await authenticate(database, issued.secret, now=expires_at - timedelta(microseconds=1))
    with pytest.raises(Unauthenticated):
        await authenticate(database, issued.secret, now=expires_at)


async def test_a_disabled_apps_valid_token_is_app_disabled_and_works_again_once_enabled(
    database: Database,
) -> None:
    secret = (await register(database, "demo")).token.secret
    await apps.set_disabled(database, "demo", disabled=True)
    with pytest.raises(AppDisabled) as caught:
        await authenticate(database, secret)
    assert caught.value.code == "app_disabled"
    assert caught.value.http_status == 403
    assert secret not in caught.value.message
    await apps.set_disabled(database, "demo", disabled=False)
    assert (await authenticate(database, secret)).app_name == "demo"


async def test_a_disabled_apps_revoked_token_is_still_just_invalid(database: Database) -> None:
    registered = await register(database, "demo")
    await tokens.revoke_token(database, registered.token.info.id)
    await apps.set_disabled(database, "demo", disabled=True)
    with pytest.raises(Unauthenticated, match="unknown, revoked or expired"):
        await authenticate(database, registered.token.secret)


async def test_a_removed_apps_token_is_invalid(database: Database) -> None:
    secret = (await register(database, "demo")).token.secret
    await apps.remove_app(database, "demo")
    with pytest.raises(Unauthenticated):
        await authenticate(database, secret)


async def test_a_token_only_opens_its_own_app(database: Database) -> None:
    demo = await register(database, "demo")
    other = await register(database, "other")
    assert (await authenticate(database, demo.token.secret)).app_id == demo.app.id
    assert (await authenticate(database, other.token.secret)).app_id == other.app.id
    await apps.set_disabled(database, "other", disabled=True)
    assert (await authenticate(database, demo.token.secret)).app_name == "demo"


async def test_tokens_are_stored_only_as_digests(database: Database) -> None:
    registered = await register(database, "demo")
    issued = await tokens.issue_token(database, app_name="demo", label="ci", expires_in=None)
    async with database.engine.connect() as connection:
        rows = (await connection.execute(sa.text("SELECT * FROM client_tokens"))).mappings().all()
    assert len(rows) == 2
    stored = " ".join(str(value) for row in rows for value in row.values())
    for secret in (registered.token.secret, issued.secret):
        assert secret not in stored
        assert secret.removeprefix("orc_") not in stored
        assert secret[4:16] not in stored  # no more than the short hint
        assert token_secrets.digest(secret) in {row["digest"] for row in rows}


async def test_views_never_carry_the_secret(database: Database) -> None:
    registered = await register(database, "demo")
    secret = registered.token.secret
    listed = await tokens.list_tokens(database, app_name="demo")
    assert secret not in repr(listed)
    assert secret not in str([t.to_json(utcnow()) for t in listed])
    assert secret not in str(registered.app.to_json())
    assert registered.token.to_json()["token"] == secret  # only the freshly issued token
