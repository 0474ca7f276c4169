from __future__ import annotations

import pytest
import sqlalchemy as sa

from gateway.core.errors import Conflict, InvalidRequest, NotFound
from gateway.security.keyring import Keyring
from gateway.services import apps
from gateway.services.apps import AppChanges
from gateway.storage.database import Database
from tests.gateway.services.conftest import register

pytestmark = pytest.mark.anyio


async def _count(db: Database, table: str) -> int:
    query = sa.text(f"SELECT count(*) FROM {table}")  # noqa: S608 (a fixed table name)
    async with db.engine.connect() as connection:
        return int((await connection.execute(query)).scalar_one())


async def test_register_uses_the_defaults_and_issues_a_first_token(database: Database) -> None:
    registered = await register(database, "demo")
    info = registered.app
    assert info.name == "demo"
    assert info.id.startswith("app_")
    assert info.model == "gpt-4o-mini"
    assert info.allowed_models == ("gpt-4o-mini",)
    assert info.base_url == "https://api.openai.com/v1"
    assert info.max_output_tokens == 1024
    assert info.log_content == "metadata"
    assert info.origins == ()
    assert info.disabled is False
    assert info.has_provider_key is False
    assert registered.token.secret.startswith("orc_")
    assert registered.token.info.app_id == info.id
    assert registered.token.info.label == "initial"


async def test_register_with_every_option(database: Database, keyring: Keyring) -> None:
    changes = AppChanges(
        origins=("http://localhost:4200/", "HTTPS://App.Example.com", "http://localhost:4200"),
        model="gpt-4.1",
        allowed_models=("gpt-4o-mini",),
        base_url="http://localhost:11434/v1/",
        system_prompt="Be brief.",
        max_output_tokens=64,
        log_content="full",
    )
    info = (
        await register(database, "full", keyring=keyring, provider_key="sk-x", changes=changes)
    ).app
    assert info.origins == ("http://localhost:4200", "https://app.example.com")
    assert info.model == "gpt-4.1"
    assert info.allowed_models == ("gpt-4.1", "gpt-4o-mini")  # the default model is allowed
    assert info.base_url == "http://localhost:11434/v1"
    assert info.system_prompt == "Be brief."
    assert info.max_output_tokens == 64
    assert info.log_content == "full"
    assert info.has_provider_key is True


async def test_a_duplicate_name_is_a_conflict(database: Database) -> None:
    await register(database, "demo")
    with pytest.raises(Conflict, match="An app named 'demo' already exists"):
        await register(database, "demo")
    assert await _count(database, "apps") == 1
    assert await _count(database, "client_tokens") == 1


INVALID = [
    ("Bad Name", AppChanges(), "Invalid app name"),
    ("demo", AppChanges(origins=("localhost:4200",)), "Invalid origin"),
    ("demo", AppChanges(origins=("http://ok.test", "http://[bad")), "Invalid origin"),
    ("demo", AppChanges(base_url="not a url"), "Invalid base URL"),
    ("demo", AppChanges(model="gpt 4"), "Invalid model name"),
    ("demo", AppChanges(allowed_models=("ok", "not ok")), "Invalid model name"),
    ("demo", AppChanges(max_output_tokens=0), "--max-output-tokens must be greater"),
    ("demo", AppChanges(log_content="everything"), "Invalid log content"),
]


async def test_invalid_input_creates_nothing(database: Database, keyring: Keyring) -> None:
    # One database for every case (each case is also checked through the CLI).
    for name, changes, message in INVALID:
        with pytest.raises(InvalidRequest, match=message):
            await register(database, name, changes=changes)
    for key in ("", "   ", "sk-with space", "sk-" + "x" * 600):
        with pytest.raises(InvalidRequest, match="provider key"):
            await register(database, "demo", keyring=keyring, provider_key=key)
    assert await _count(database, "apps") == 0
    assert await _count(database, "client_tokens") == 0


async def test_a_provider_key_without_a_keyring_is_a_programming_error(
    database: Database,
) -> None:
    with pytest.raises(ValueError, match="keyring"):
        await register(database, "demo", provider_key="sk-test")
    assert await _count(database, "apps") == 0


async def test_get_and_list(database: Database) -> None:
    await register(database, "zulu")
    await register(database, "alpha")
    assert [info.name for info in await apps.list_apps(database)] == ["alpha", "zulu"]
    assert (await apps.get_app(database, "zulu")).name == "zulu"
    with pytest.raises(NotFound, match="No app named 'nope'"):
        await apps.get_app(database, "nope")


async def test_update_changes_only_what_is_given(database: Database) -> None:
    before = (
        await register(
            database,
            "demo",
            changes=AppChanges(origins=("http://localhost:4200",), system_prompt="Be brief."),
        )
    ).app
    after = await apps.update_app(database, "demo", AppChanges(model="gpt-4.1"))
    assert after.model == "gpt-4.1"
    assert after.allowed_models == ("gpt-4.1", "gpt-4o-mini")
    assert after.origins == before.origins
    assert after.system_prompt == "Be brief."
    assert after.updated_at >= before.updated_at
    assert after.created_at == before.created_at
    assert await apps.get_app(database, "demo") == after


async def test_update_with_an_empty_system_prompt_clears_it(database: Database) -> None:
    await register(database, "demo", changes=AppChanges(system_prompt="Be brief."))
    assert (
        await apps.update_app(database, "demo", AppChanges(system_prompt=""))
    ).system_prompt is None


async def test_update_replaces_the_origins(database: Database) -> None:
    await register(database, "demo", changes=AppChanges(origins=("http://a.test",)))
    info = await apps.update_app(database, "demo", AppChanges(origins=("https://b.test",)))
    assert info.origins == ("https://b.test",)


async def test_update_validates_and_needs_an_existing_app(database: Database) -> None:
    await register(database, "demo")
    with pytest.raises(InvalidRequest, match="Invalid origin"):
        await apps.update_app(database, "demo", AppChanges(origins=("nope",)))
    with pytest.raises(NotFound):
        await apps.update_app(database, "nope", AppChanges(model="gpt-4.1"))
    assert (await apps.get_app(database, "demo")).origins == ()


async def test_disable_and_enable(database: Database) -> None:
    await register(database, "demo")
    assert (await apps.set_disabled(database, "demo", disabled=True)).disabled is True
    assert (await apps.get_app(database, "demo")).disabled is True
    assert (await apps.set_disabled(database, "demo", disabled=False)).disabled is False
    with pytest.raises(NotFound):
        await apps.set_disabled(database, "nope", disabled=True)


async def test_remove_deletes_the_tokens_key_and_quota_too(
    database: Database, keyring: Keyring
) -> None:
    from gateway.services import quotas
    from gateway.services.views import QuotaLimits

    await register(database, "demo", keyring=keyring, provider_key="sk-test")
    await register(database, "kept", keyring=keyring, provider_key="sk-test")
    await quotas.set_quota(database, app_name="demo", changes=QuotaLimits(rpm=5))
    await apps.remove_app(database, "demo")
    with pytest.raises(NotFound):
        await apps.get_app(database, "demo")
    assert [info.name for info in await apps.list_apps(database)] == ["kept"]
    assert await _count(database, "client_tokens") == 1
    assert await _count(database, "provider_keys") == 1
    assert await _count(database, "quotas") == 0
    with pytest.raises(NotFound):
        await apps.remove_app(database, "demo")


async def test_a_removed_name_can_be_registered_again(database: Database) -> None:
    first = (await register(database, "demo")).app
    await apps.remove_app(database, "demo")
    second = (await register(database, "demo")).app
    assert second.id != first.id
