from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.core.errors import MasterKeyError
from gateway.security.keyring import Keyring, generate_master_key
from gateway.services import provider_keys
from tests.cli.conftest import (
    Orchestra,
    add_app,
    fails,
    json_of,
    ok,
    stored_ciphertexts,
    with_database,
)

KEY = "sk-test-0123456789abcdef"


def _key_file(home: Path) -> list[str]:
    return (home / "master.key").read_text().strip().split(",")


def _decrypts(keys: list[str], home: Path) -> dict[str, str]:
    """Every stored provider key, decrypted with exactly these master keys."""
    keyring = Keyring(keys)
    return {
        app_id: keyring.decrypt(ciphertext, app_id=app_id)
        for app_id, ciphertext in stored_ciphertexts(home).items()
    }


def test_set_reads_the_key_from_stdin(orchestra: Orchestra, initialised: Path) -> None:
    app_id = add_app(orchestra, "demo")["app"]["id"]
    result = ok(orchestra("keys", "set", "demo", "--stdin", input=KEY + "\n"))
    assert "stored (encrypted)" in result.stdout
    assert KEY not in result.output
    assert json_of(orchestra("apps", "show", "demo", "--json"))["has_provider_key"] is True
    keyring = Keyring(_key_file(initialised))
    assert (
        with_database(lambda db: provider_keys.provider_key_for(db, keyring, app_id=app_id)) == KEY
    )


def test_set_reads_piped_stdin_without_the_flag(orchestra: Orchestra, initialised: Path) -> None:
    app_id = add_app(orchestra, "demo")["app"]["id"]
    ok(orchestra("keys", "set", "demo", input="sk-second\n"))
    assert _decrypts(_key_file(initialised), initialised) == {app_id: "sk-second"}


def test_set_replaces_the_key(orchestra: Orchestra, initialised: Path) -> None:
    app_id = add_app(orchestra, "demo", key="sk-first")["app"]["id"]
    ok(orchestra("keys", "set", "demo", input="sk-second\n"))
    assert _decrypts(_key_file(initialised), initialised) == {app_id: "sk-second"}


@pytest.mark.parametrize("stdin", ["", "\n", "  \t \n"])
def test_set_an_empty_key(orchestra: Orchestra, initialised: Path, stdin: str) -> None:
    add_app(orchestra, "demo")
    fails(orchestra("keys", "set", "demo", "--stdin", input=stdin), 2, "The OpenAI key is empty.")
    assert json_of(orchestra("apps", "show", "demo", "--json"))["has_provider_key"] is False


def test_set_a_malformed_key(orchestra: Orchestra, initialised: Path) -> None:
    add_app(orchestra, "demo")
    result = fails(orchestra("keys", "set", "demo", input="sk-has space\n"), 2, "malformed")
    assert "sk-has space" not in result.output


def test_set_for_an_unknown_app(orchestra: Orchestra, initialised: Path) -> None:
    fails(orchestra("keys", "set", "nope", input=KEY + "\n"), 3, "No app named 'nope'")


def test_the_key_is_never_an_argument(orchestra: Orchestra, initialised: Path) -> None:
    add_app(orchestra, "demo")
    result = orchestra("keys", "set", "demo", KEY)
    assert result.exit_code == 2
    assert json_of(orchestra("apps", "show", "demo", "--json"))["has_provider_key"] is False


def test_set_without_a_master_key(orchestra: Orchestra, initialised: Path) -> None:
    add_app(orchestra, "demo")
    (initialised / "master.key").unlink()
    fails(orchestra("keys", "set", "demo", input=KEY + "\n"), 5, "Run `orchestra init`")


def test_set_with_a_malformed_configured_master_key(
    orchestra: Orchestra, initialised: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_app(orchestra, "demo")
    monkeypatch.setenv("ORCHESTRA_MASTER_KEY", "garbage")
    fails(orchestra("keys", "set", "demo", input=KEY + "\n"), 5, "Master key #1 is malformed")
    assert stored_ciphertexts(initialised) == {}


def test_rotate_master_with_the_key_file(orchestra: Orchestra, initialised: Path) -> None:
    ids = [add_app(orchestra, name, key=f"sk-{name}-key")["app"]["id"] for name in ("a", "b")]
    add_app(orchestra, "keyless")
    [old] = _key_file(initialised)
    before = stored_ciphertexts(initialised)

    result = ok(orchestra("keys", "rotate-master"))
    assert "2 key(s) re-encrypted" in result.stdout

    keys = _key_file(initialised)
    assert len(keys) == 1
    [new] = keys
    assert new != old
    assert new not in result.output
    assert old not in result.output
    assert stat.S_IMODE((initialised / "master.key").stat().st_mode) == 0o600
    after = stored_ciphertexts(initialised)
    assert set(after) == set(before) == set(ids)
    assert all(after[app_id] != before[app_id] for app_id in ids)
    assert _decrypts([new], initialised) == {ids[0]: "sk-a-key", ids[1]: "sk-b-key"}
    with pytest.raises(MasterKeyError):
        _decrypts([old], initialised)
    # The CLI keeps working with the new key.
    ok(orchestra("keys", "set", "a", input="sk-a-again\n"))
    assert _decrypts([new], initialised)[ids[0]] == "sk-a-again"


def test_rotate_master_twice(orchestra: Orchestra, initialised: Path) -> None:
    app_id = add_app(orchestra, "demo", key=KEY)["app"]["id"]
    ok(orchestra("keys", "rotate-master"))
    ok(orchestra("keys", "rotate-master"))
    assert _decrypts(_key_file(initialised), initialised) == {app_id: KEY}


def test_rotate_master_with_the_environment_new_then_old(
    orchestra: Orchestra, initialised: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_id = add_app(orchestra, "demo", key=KEY)["app"]["id"]
    [old] = _key_file(initialised)
    new = generate_master_key()
    monkeypatch.setenv("ORCHESTRA_MASTER_KEY", f"{new},{old}")
    result = ok(orchestra("keys", "rotate-master"))
    assert "1 key(s) re-encrypted under the first key of ORCHESTRA_MASTER_KEY" in result.stdout
    assert _key_file(initialised) == [old]  # a configured key is never written to the file
    assert _decrypts([new], initialised) == {app_id: KEY}
    with pytest.raises(MasterKeyError):
        _decrypts([old], initialised)
    monkeypatch.setenv("ORCHESTRA_MASTER_KEY", new)
    assert json_of(orchestra("apps", "show", "demo", "--json"))["has_provider_key"] is True
    ok(orchestra("keys", "rotate-master"))


def test_rotate_master_with_no_stored_keys(orchestra: Orchestra, initialised: Path) -> None:
    [old] = _key_file(initialised)
    assert "0 key(s) re-encrypted" in ok(orchestra("keys", "rotate-master")).stdout
    assert _key_file(initialised) != [old]


def test_rotate_master_without_a_master_key(orchestra: Orchestra, home: Path) -> None:
    fails(orchestra("keys", "rotate-master"), 5, "Run `orchestra init`")
    assert not (home / "master.key").exists()


def test_a_failed_rotation_keeps_the_old_key(orchestra: Orchestra, initialised: Path) -> None:
    add_app(orchestra, "demo", key=KEY)
    [old] = _key_file(initialised)
    database = initialised / "orchestra.db"
    database.rename(initialised / "elsewhere.db")  # the re-encryption cannot run
    fails(orchestra("keys", "rotate-master"), 5, "orchestra init")
    assert old in _key_file(initialised)  # every stored key is still readable
    (initialised / "elsewhere.db").rename(database)
    ok(orchestra("keys", "rotate-master"))
    assert old not in _key_file(initialised)
    assert list(_decrypts(_key_file(initialised), initialised).values()) == [KEY]


def test_rotate_master_refuses_when_a_key_cannot_be_read(
    orchestra: Orchestra, initialised: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_app(orchestra, "demo", key=KEY)
    before = stored_ciphertexts(initialised)
    monkeypatch.setenv("ORCHESTRA_MASTER_KEY", generate_master_key())  # the wrong key
    fails(orchestra("keys", "rotate-master"), 5, "cannot be decrypted")
    assert stored_ciphertexts(initialised) == before
