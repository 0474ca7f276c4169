"""Which browser origins any app accepts: answers CORS preflights, which carry no token."""

from __future__ import annotations

import time

from gateway.storage import apps as app_rows
from gateway.storage.database import Database


class KnownOrigins:
    def __init__(self, db: Database, *, ttl: float = 2.0) -> None:
        self._db = db
        self._ttl = ttl
        self._origins: frozenset[str] = frozenset()
        self._expires = 0.0

    async def allows(self, origin: str) -> bool:
        if time.monotonic() >= self._expires:
            async with self._db.read() as session:
                apps = await app_rows.list_apps(session)
            self._origins = frozenset(o for app in apps if not app.disabled for o in app.origins)
            self._expires = time.monotonic() + self._ttl
        return origin in self._origins or "*" in self._origins


def origin_allowed_for_app(origin: str | None, app_origins: tuple[str, ...]) -> bool:
    """Requests without an Origin (servers, the CLI) are allowed; browsers must be listed."""
    return origin is None or origin in app_origins or "*" in app_origins
