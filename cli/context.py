"""What every command needs: settings, and a bridge from Typer's sync world to async services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import typer

from cli.errors import fail
from gateway.core.errors import GatewayError

if TYPE_CHECKING:
    from gateway.security.keyring import Keyring
    from gateway.services.auth_epochs import Announcer
    from gateway.services.database import Database
    from gateway.settings import Settings

T = TypeVar("T")


def _load_settings() -> Settings:
    from gateway.settings import load_settings

    return load_settings()


# Heavy modules (SQLAlchemy, cryptography, pydantic-settings) are imported on first use, so that
# `orchestra --help` does not pay for them.
@dataclass
class CliContext:
    settings_factory: Callable[[], Settings] = _load_settings
    _settings: Settings | None = field(default=None, init=False)

    @classmethod
    def of(cls, ctx: typer.Context) -> CliContext:
        root = ctx.find_root()
        if not isinstance(root.obj, CliContext):
            root.obj = cls()
        return root.obj

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = self.settings_factory()
            except GatewayError as error:
                fail(error)
        return self._settings

    def keyring(self) -> Keyring:
        from gateway.security.keyring import Keyring
        from gateway.security.master_key import resolve_master_keys

        try:
            return Keyring(
                resolve_master_keys(self.settings.master_key, self.settings.master_key_file)
            )
        except GatewayError as error:
            fail(error)

    def run(self, work: Callable[[Database], Awaitable[T]], *, check_schema: bool = True) -> T:
        """Run one async unit of work against the database, mapping domain errors to exits."""
        import anyio

        from gateway.services.database import Database

        settings = self.settings

        async def main() -> T:
            db = Database.open(
                settings.resolved_database_url, schema=settings.database_schema, pool_size=2
            )
            try:
                if check_schema:
                    await db.ensure_current()
                return await work(db)
            finally:
                await db.close()

        try:
            return anyio.run(main)
        except GatewayError as error:
            fail(error)

    def run_announced(self, work: Callable[[Database, Announcer], Awaitable[T]]) -> T:
        """``run`` for a change that running gateways must see at once (a revocation…): the
        work gets an announcer on Redis when one is configured (a no-op otherwise)."""
        from gateway.services.auth_epochs import announcing

        redis_url = self.settings.redis_url

        async def announced(db: Database) -> T:
            async with announcing(redis_url) as announcer:
                return await work(db, announcer)

        return self.run(announced)
