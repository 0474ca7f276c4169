"""The running fake and gateway as the tests see them: URLs, clients, what the fake received,
the gateway's database and keyring."""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from gateway.security.keyring import Keyring
from gateway.security.master_key import resolve_master_keys
from gateway.storage.database import Database
from tests.support.cli import run_cli_async
from tests.support.polling import poll
from tests.support.processes import Proc, child_env

T = TypeVar("T")

# Every server here is plain HTTP; building an SSL context per client costs ~45 ms of CPU.
TLS = ssl.create_default_context()


@dataclass
class Fake:
    server: Proc

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/v1"

    async def requests(self) -> list[dict[str, Any]]:
        """What the fake received (``GET /_fake/requests``), oldest first."""
        async with httpx.AsyncClient(timeout=5, verify=TLS) as client:
            response = await client.get(f"{self.url}/_fake/requests")
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return records

    async def requests_with(self, marker: str) -> list[dict[str, Any]]:
        """The received chat requests whose messages contain ``marker``."""
        return [r for r in await self.requests() if marker in json.dumps(r["body"])]

    async def request_with(self, marker: str) -> dict[str, Any]:
        """The one chat request whose messages contain ``marker`` (waits for it briefly)."""
        found = await poll(lambda: self.requests_with(marker), lambda rs: len(rs) > 0)
        assert len(found) == 1, found
        return found[0]


@dataclass
class Gateway:
    server: Proc
    home: Path
    env: dict[str, str]
    database_url: str
    database_schema: str | None = None

    @classmethod
    def on_sqlite(cls, server: Proc, home: Path, settings: Mapping[str, object]) -> Gateway:
        """A gateway started with ``settings`` on the SQLite database of ``home``."""
        database_url = f"sqlite+aiosqlite:///{home}/orchestra.db"
        return cls(server, home, child_env(settings), database_url)

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("verify", TLS)
        return httpx.AsyncClient(base_url=self.url, **kwargs)

    async def cli(self, *args: str) -> str:
        """Run `orchestra ARGS` against this gateway's database; its stdout."""
        return await run_cli_async(args, self.env)

    async def with_database(self, work: Callable[[Database], Awaitable[T]]) -> T:
        db = Database.open(self.database_url, schema=self.database_schema, pool_size=2)
        try:
            return await work(db)
        finally:
            await db.close()

    def keyring(self) -> Keyring:
        configured = self.env.get("ORCHESTRA_MASTER_KEY")
        secret = None if configured is None else SecretStr(configured)
        return Keyring(resolve_master_keys(secret, self.home / "master.key"))
