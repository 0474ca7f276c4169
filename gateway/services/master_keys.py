"""Moving everything stored under the master key to a new one: provider keys and session
secrets, in one transaction (one secret that cannot be read, and nothing is rewritten)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.security.keyring import Keyring
from gateway.services import provider_keys, sessions
from gateway.storage.database import Database


@dataclass(frozen=True, slots=True)
class RotationReport:
    provider_keys: int
    session_secrets: int

    @property
    def reencrypted(self) -> int:
        return self.provider_keys + self.session_secrets


async def reencrypt_all(db: Database, keyring: Keyring) -> RotationReport:
    """Re-encrypt every stored secret under the keyring's first key."""
    async with db.session() as session:
        keys = await provider_keys.reencrypt_keys(session, keyring)
        secrets = await sessions.reencrypt_secrets(session, keyring)
    return RotationReport(provider_keys=keys, session_secrets=secrets)
