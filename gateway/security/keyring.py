"""Provider keys encrypted at rest with MultiFernet under the master key(s).

The first master key encrypts, every key decrypts, so a rotation never has a window where
a stored key is unreadable. Each ciphertext is bound to its app: the app id is sealed inside
the token and checked on decryption, so a ciphertext copied to another app's row is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from gateway.core.errors import MasterKeyError


def generate_master_key() -> str:
    return Fernet.generate_key().decode()


def parse_master_keys(text: str) -> list[str]:
    """Split a comma-separated list of Fernet keys and check each one's shape."""
    keys = [part.strip() for part in text.split(",") if part.strip()]
    if not keys:
        raise MasterKeyError("The master key is empty.")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise MasterKeyError(
                f"Master key #{position} is malformed: expected a url-safe base64 Fernet key of "
                "32 bytes (generate one with `orchestra init` or Fernet.generate_key())."
            ) from None
    return keys


class Keyring:
    def __init__(self, master_keys: Sequence[str]) -> None:
        if not master_keys:
            raise MasterKeyError("No master key given.")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in master_keys])
        except (ValueError, TypeError):
            raise MasterKeyError(
                "A master key is malformed: expected a url-safe base64 Fernet key of 32 bytes."
            ) from None

    def encrypt(self, plaintext: str, *, app_id: str) -> str:
        payload = json.dumps({"app": app_id, "key": plaintext}, separators=(",", ":"))
        return self._fernet.encrypt(payload.encode()).decode()

    def decrypt(self, ciphertext: str, *, app_id: str, what: str = "provider key") -> str:
        """The plaintext sealed for ``app_id``; ``what`` names the secret in the errors."""
        try:
            plaintext = self._fernet.decrypt(ciphertext.encode())
        except InvalidToken:
            raise MasterKeyError(
                f"A stored {what} cannot be decrypted with the configured master key(s)."
            ) from None
        try:
            payload = json.loads(plaintext)
        except ValueError:  # not the {"app", "key"} envelope written by encrypt()
            raise MasterKeyError(f"A stored {what} is corrupt.") from None
        if not isinstance(payload, dict) or payload.get("app") != app_id:
            raise MasterKeyError(f"A stored {what} belongs to another app; refusing it.")
        key = payload.get("key")
        if not isinstance(key, str):
            raise MasterKeyError(f"A stored {what} is corrupt.")
        return key

    def rotate(self, ciphertext: str, *, what: str = "provider key") -> str:
        """Re-encrypt under the first (newest) master key, keeping the app binding."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise MasterKeyError(
                f"A stored {what} cannot be decrypted with the configured master key(s)."
            ) from None
