from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.core.errors import MasterKeyError
from gateway.security.keyring import Keyring, generate_master_key
from gateway.security.master_key import (
    create_master_key_file,
    resolve_master_keys,
    write_master_key_file,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_writes_a_0600_file_with_one_valid_key(tmp_path: Path) -> None:
    key_file = tmp_path / "home" / "master.key"
    assert create_master_key_file(key_file) is True
    assert _mode(key_file) == 0o600
    keys = resolve_master_keys(None, key_file)
    assert len(keys) == 1
    Keyring(keys)  # usable


def test_create_is_idempotent_and_never_overwrites(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    create_master_key_file(key_file)
    before = key_file.read_text()
    assert create_master_key_file(key_file) is False
    assert key_file.read_text() == before


def test_create_does_not_depend_on_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o000)
    try:
        key_file = tmp_path / "master.key"
        create_master_key_file(key_file)
    finally:
        os.umask(previous)
    assert _mode(key_file) == 0o600


def test_write_replaces_the_file_and_keeps_0600(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_text("old")
    key_file.chmod(0o644)
    first, second = generate_master_key(), generate_master_key()
    write_master_key_file(key_file, [first, second])
    assert _mode(key_file) == 0o600
    assert resolve_master_keys(None, key_file) == [first, second]
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "master.key"
    old = generate_master_key()
    write_master_key_file(key_file, [old])

    def crash(_fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_master_key_file(key_file, [generate_master_key(), old])
    assert resolve_master_keys(None, key_file) == [old]
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]


def test_the_configured_key_wins_over_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    create_master_key_file(key_file)
    configured = generate_master_key()
    assert resolve_master_keys(SecretStr(configured), key_file) == [configured]


def test_the_configured_key_is_used_without_any_file(tmp_path: Path) -> None:
    new, old = generate_master_key(), generate_master_key()
    keys = resolve_master_keys(SecretStr(f"{new},{old}"), tmp_path / "absent.key")
    assert keys == [new, old]


def test_a_malformed_configured_key_does_not_fall_back_to_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    create_master_key_file(key_file)
    with pytest.raises(MasterKeyError, match="malformed"):
        resolve_master_keys(SecretStr("not-a-fernet-key"), key_file)
    with pytest.raises(MasterKeyError, match="empty"):
        resolve_master_keys(SecretStr(""), key_file)


def test_a_missing_file_is_a_clear_error_naming_the_fix(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    with pytest.raises(MasterKeyError, match="orchestra init") as caught:
        resolve_master_keys(None, key_file)
    assert str(key_file) in caught.value.message
    assert "ORCHESTRA_MASTER_KEY" in caught.value.message


def test_an_unreadable_file_is_a_master_key_error(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    key_file.mkdir()  # reading a directory fails, for root too
    with pytest.raises(MasterKeyError, match="Cannot read the master key file"):
        resolve_master_keys(None, key_file)


@pytest.mark.parametrize("content", ["", "\n", "garbage\n"])
def test_an_empty_or_corrupt_file_is_a_master_key_error(tmp_path: Path, content: str) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_text(content)
    with pytest.raises(MasterKeyError):
        resolve_master_keys(None, key_file)
