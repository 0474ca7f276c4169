"""Apps registered in-process on a running gateway's database, through ``gateway.services``
(what `orchestra apps add` calls), each with a unique name so tests never share one."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from gateway.services import apps as app_service
from gateway.services import quotas as quota_service
from gateway.services import tokens as token_service
from gateway.services.views import QuotaLimits
from gateway.storage.database import Database
from tests.support.servers import Fake, Gateway

MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class AppHandle:
    name: str
    id: str
    token: str
    token_id: str
    provider_key: str | None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Apps:
    """Registers apps on the session gateway's database, in-process through the services."""

    gateway: Gateway
    default_fake: Fake | None
    secrets: set[str]
    prefix: str
    count: int = field(default=0)

    def unique_name(self) -> str:
        self.count += 1
        return f"{self.prefix}-{self.count}-{secrets.token_hex(3)}"

    async def add(
        self,
        fake: Fake | None = None,
        *,
        base_url: str | None = None,
        origins: tuple[str, ...] = (),
        model: str | None = None,
        allow_models: tuple[str, ...] = (),
        system_prompt: str | None = None,
        max_output_tokens: int | None = None,
        log_content: str | None = None,
        workflow: str | None = None,
        fallback_models: tuple[str, ...] | None = None,
        quota: QuotaLimits | None = None,
        provider_key: str | None = "",
    ) -> AppHandle:
        """A new app on ``fake`` (or ``base_url``) with its own provider key and first token,
        and ``quota`` limits if given.

        ``provider_key=""`` (the default) generates a unique key; ``None`` stores none.
        """
        name = self.unique_name()
        fake = fake or self.default_fake
        if base_url is None:
            assert fake is not None, "an app needs a fake or a base_url"
            base_url = fake.base_url
        if provider_key == "":
            provider_key = f"sk-test-{secrets.token_hex(16)}"
        changes = app_service.AppChanges(
            origins=origins,
            model=model,
            allowed_models=allow_models,
            base_url=base_url,
            system_prompt=system_prompt,
            max_output_tokens=max_output_tokens,
            log_content=log_content,
            workflow=workflow,
            fallback_models=fallback_models,
        )
        defaults = app_service.AppDefaults(
            model=MODEL, base_url="http://127.0.0.1:9/v1", max_output_tokens=1024
        )
        keyring = self.gateway.keyring()

        async def register(db: Database) -> app_service.RegisteredApp:
            registered = await app_service.register_app(
                db,
                keyring,
                name=name,
                changes=changes,
                defaults=defaults,
                provider_key=provider_key,
            )
            if quota is not None:
                await quota_service.set_quota(db, app_name=name, changes=quota)
            return registered

        registered = await self.gateway.with_database(register)
        self.secrets.add(registered.token.secret)
        if provider_key is not None:
            self.secrets.add(provider_key)
        return AppHandle(
            name=name,
            id=registered.app.id,
            token=registered.token.secret,
            token_id=registered.token.info.id,
            provider_key=provider_key,
        )

    async def issue_token(
        self, app: AppHandle, *, expires_in: timedelta | None = None
    ) -> AppHandle:
        """The same app with another, new token."""
        issued = await self.gateway.with_database(
            lambda db: token_service.issue_token(
                db, app_name=app.name, label="test", expires_in=expires_in
            )
        )
        self.secrets.add(issued.secret)
        return AppHandle(app.name, app.id, issued.secret, issued.info.id, app.provider_key)

    async def revoke(self, app: AppHandle) -> None:
        await self.gateway.with_database(lambda db: token_service.revoke_token(db, app.token_id))

    async def set_disabled(self, app: AppHandle, *, disabled: bool) -> None:
        await self.gateway.with_database(
            lambda db: app_service.set_disabled(db, app.name, disabled=disabled)
        )


def slug(text: str) -> str:
    """A name part from a test's name: lower case, dashes, at most 40 characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
