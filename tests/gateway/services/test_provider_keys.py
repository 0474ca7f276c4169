from __future__ import annotations

import pytest
import sqlalchemy as sa

from gateway.core.errors import ConfigurationError, InvalidRequest, MasterKeyError, NotFound
from gateway.security.keyring import Keyring, generate_master_key
from gateway.services import master_keys, provider_keys
from gateway.storage.database import Database
from tests.gateway.services.conftest import register

pytestmark = pytest.mark.anyio

KEY = "sk-canary-0123456789abcdef"


async def _ciphertexts(db: Database) -> dict[str, str]:
    async with db.engine.connect() as connection:
        rows = await connection.execute(sa.text("SELECT app_id, ciphertext FROM provider_keys"))
        return {str(app_id): str(ciphertext) for app_id, ciphertext in rows.all()}


async def test_a_key_is_stored_encrypted_and_decrypts_for_its_app(
    database: Database, keyring: Keyring
) -> None:
    app = (await register(database, "demo", keyring=keyring, provider_key=KEY)).app
    async with database.engine.connect() as connection:
        rows = (await connection.execute(sa.text("SELECT * FROM provider_keys"))).mappings().all()
    assert len(rows) == 1
    assert KEY not in " ".join(str(value) for value in rows[0].values())
    assert rows[0]["hint"] == "sk-…cdef"
    assert await provider_keys.provider_key_for(database, keyring, app_id=app.id) == KEY


async def test_set_provider_key_replaces_the_key(database: Database, keyring: Keyring) -> None:
    app = (await register(database, "demo")).app
    with pytest.raises(ConfigurationError, match="orchestra keys set"):
        await provider_keys.provider_key_for(database, keyring, app_id=app.id)
    await provider_keys.set_provider_key(database, keyring, app_name="demo", key=f" {KEY}\n")
    assert await provider_keys.provider_key_for(database, keyring, app_id=app.id) == KEY
    await provider_keys.set_provider_key(database, keyring, app_name="demo", key="sk-second")
    assert await provider_keys.provider_key_for(database, keyring, app_id=app.id) == "sk-second"


async def test_set_provider_key_errors(database: Database, keyring: Keyring) -> None:
    await register(database, "demo")
    with pytest.raises(NotFound, match="No app named 'nope'"):
        await provider_keys.set_provider_key(database, keyring, app_name="nope", key=KEY)
    with pytest.raises(InvalidRequest, match="empty"):
        await provider_keys.set_provider_key(database, keyring, app_name="demo", key="  ")
    with pytest.raises(InvalidRequest, match="malformed") as caught:
        await provider_keys.set_provider_key(database, keyring, app_name="demo", key="sk-a b")
    assert "sk-a b" not in caught.value.message


async def test_a_ciphertext_copied_to_another_apps_row_is_refused(
    database: Database, keyring: Keyring
) -> None:
    victim = (await register(database, "victim", keyring=keyring, provider_key=KEY)).app
    thief = (await register(database, "thief", keyring=keyring, provider_key="sk-own")).app
    stolen = (await _ciphertexts(database))[victim.id]
    async with database.engine.begin() as connection:
        await connection.execute(
            sa.text("UPDATE provider_keys SET ciphertext = :c WHERE app_id = :a"),
            {"c": stolen, "a": thief.id},
        )
    with pytest.raises(MasterKeyError, match="another app") as caught:
        await provider_keys.provider_key_for(database, keyring, app_id=thief.id)
    assert KEY not in caught.value.message
    assert await provider_keys.provider_key_for(database, keyring, app_id=victim.id) == KEY


async def test_reencrypt_all_moves_every_key_to_the_new_first_key(
    database: Database, master_key: str, keyring: Keyring
) -> None:
    old = master_key
    ids = {}
    for name in ("a", "b", "c"):
        app = (await register(database, name, keyring=keyring, provider_key=f"sk-{name}-key")).app
        ids[name] = app.id
    await register(database, "keyless")
    before = await _ciphertexts(database)

    new = generate_master_key()
    report = await master_keys.reencrypt_all(database, Keyring([new, old]))
    assert report.reencrypted == 3

    after = await _ciphertexts(database)
    assert set(after) == set(before)
    assert all(after[app_id] != before[app_id] for app_id in after)
    for name, app_id in ids.items():
        assert (
            await provider_keys.provider_key_for(database, Keyring([new]), app_id=app_id)
            == f"sk-{name}-key"
        )
        with pytest.raises(MasterKeyError, match="cannot be decrypted"):
            await provider_keys.provider_key_for(database, Keyring([old]), app_id=app_id)


async def test_reencrypt_all_changes_nothing_when_one_key_cannot_be_read(
    database: Database, master_key: str, keyring: Keyring
) -> None:
    await register(database, "a", keyring=keyring, provider_key="sk-a-key")
    await register(database, "b", keyring=Keyring([generate_master_key()]), provider_key="sk-b")
    before = await _ciphertexts(database)
    # The old key reads "a" but not "b": the rewrite of "a" must be rolled back with the rest.
    with pytest.raises(MasterKeyError):
        await master_keys.reencrypt_all(database, Keyring([generate_master_key(), master_key]))
    assert await _ciphertexts(database) == before


async def test_reencrypt_all_with_no_keys(database: Database, keyring: Keyring) -> None:
    assert (await master_keys.reencrypt_all(database, keyring)).reencrypted == 0
