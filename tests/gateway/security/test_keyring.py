from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from gateway.core.errors import MasterKeyError
from gateway.security.keyring import Keyring, generate_master_key, parse_master_keys

KEY = "sk-test-0123456789abcdef"


def test_round_trip_and_the_plaintext_is_not_in_the_ciphertext() -> None:
    keyring = Keyring([generate_master_key()])
    ciphertext = keyring.encrypt(KEY, app_id="app_1")
    assert KEY not in ciphertext
    assert keyring.decrypt(ciphertext, app_id="app_1") == KEY


def test_encryption_is_randomised() -> None:
    keyring = Keyring([generate_master_key()])
    assert keyring.encrypt(KEY, app_id="app_1") != keyring.encrypt(KEY, app_id="app_1")


def test_a_ciphertext_copied_to_another_app_is_refused() -> None:
    keyring = Keyring([generate_master_key()])
    ciphertext = keyring.encrypt(KEY, app_id="app_1")
    with pytest.raises(MasterKeyError, match="belongs to another app"):
        keyring.decrypt(ciphertext, app_id="app_2")


def test_a_wrong_master_key_cannot_decrypt() -> None:
    ciphertext = Keyring([generate_master_key()]).encrypt(KEY, app_id="app_1")
    with pytest.raises(MasterKeyError, match="cannot be decrypted") as caught:
        Keyring([generate_master_key()]).decrypt(ciphertext, app_id="app_1")
    assert KEY not in str(caught.value)


def test_a_tampered_ciphertext_is_refused() -> None:
    keyring = Keyring([generate_master_key()])
    ciphertext = keyring.encrypt(KEY, app_id="app_1")
    tampered = ciphertext[:-6] + ("AAAAAA" if ciphertext[-6:] != "AAAAAA" else "BBBBBB")
    with pytest.raises(MasterKeyError):
        keyring.decrypt(tampered, app_id="app_1")
    with pytest.raises(MasterKeyError):
        keyring.decrypt("not a fernet token", app_id="app_1")


def test_a_fernet_token_without_the_app_binding_is_refused() -> None:
    master = generate_master_key()
    bare = Fernet(master.encode()).encrypt(KEY.encode()).decode()
    with pytest.raises(MasterKeyError):
        Keyring([master]).decrypt(bare, app_id="app_1")


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    first, second = generate_master_key(), generate_master_key()
    both = Keyring([first, second])
    ciphertext = both.encrypt(KEY, app_id="app_1")
    assert Keyring([first]).decrypt(ciphertext, app_id="app_1") == KEY
    with pytest.raises(MasterKeyError):
        Keyring([second]).decrypt(ciphertext, app_id="app_1")
    older = Keyring([second]).encrypt(KEY, app_id="app_1")
    assert both.decrypt(older, app_id="app_1") == KEY


def test_rotate_moves_a_ciphertext_to_the_first_key_and_keeps_the_binding() -> None:
    old, new = generate_master_key(), generate_master_key()
    ciphertext = Keyring([old]).encrypt(KEY, app_id="app_1")
    rotated = Keyring([new, old]).rotate(ciphertext)
    assert Keyring([new]).decrypt(rotated, app_id="app_1") == KEY
    with pytest.raises(MasterKeyError):
        Keyring([old]).decrypt(rotated, app_id="app_1")
    with pytest.raises(MasterKeyError, match="another app"):
        Keyring([new]).decrypt(rotated, app_id="app_2")


def test_rotate_without_the_old_key_is_a_master_key_error() -> None:
    ciphertext = Keyring([generate_master_key()]).encrypt(KEY, app_id="app_1")
    with pytest.raises(MasterKeyError):
        Keyring([generate_master_key()]).rotate(ciphertext)


def test_parse_master_keys_splits_on_commas_and_strips() -> None:
    first, second = generate_master_key(), generate_master_key()
    assert parse_master_keys(f" {first} , {second},\n") == [first, second]
    assert parse_master_keys(first + "\n") == [first]


@pytest.mark.parametrize("text", ["", " ", ",", " , ,\n"])
def test_an_empty_master_key_is_a_clear_error(text: str) -> None:
    with pytest.raises(MasterKeyError, match="empty"):
        parse_master_keys(text)


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-key",
        "sk-test",
        "A" * 42 + "==",  # 44 characters of base64, but 31 bytes
        "QUJD",  # valid base64, 3 bytes
        "é" * 44,
    ],
)
def test_a_malformed_master_key_is_a_clear_error_naming_its_position(bad: str) -> None:
    good = generate_master_key()
    with pytest.raises(MasterKeyError, match="Master key #2 is malformed") as caught:
        parse_master_keys(f"{good},{bad}")
    assert bad not in caught.value.message
    assert good not in caught.value.message


def test_a_keyring_needs_a_key() -> None:
    with pytest.raises(MasterKeyError):
        Keyring([])


@pytest.mark.parametrize("bad", ["not-a-key", "", "QUJD"])
def test_a_keyring_refuses_a_malformed_key_with_a_master_key_error(bad: str) -> None:
    with pytest.raises(MasterKeyError):
        Keyring([bad])
