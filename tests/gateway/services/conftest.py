"""Apps for the service tests, registered through the service under test."""

from __future__ import annotations

import pytest

from gateway.security.keyring import Keyring, generate_master_key
from gateway.services import apps
from gateway.storage.database import Database

DEFAULTS = apps.AppDefaults(
    model="gpt-4o-mini", base_url="https://api.openai.com/v1", max_output_tokens=1024
)


async def register(
    db: Database,
    name: str,
    *,
    keyring: Keyring | None = None,
    provider_key: str | None = None,
    changes: apps.AppChanges | None = None,
) -> apps.RegisteredApp:
    return await apps.register_app(
        db,
        keyring,
        name=name,
        changes=changes or apps.AppChanges(),
        defaults=DEFAULTS,
        provider_key=provider_key,
    )


@pytest.fixture
def master_key() -> str:
    return generate_master_key()


@pytest.fixture
def keyring(master_key: str) -> Keyring:
    return Keyring([master_key])
