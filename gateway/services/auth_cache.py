"""A short-lived cache in front of token authentication.

The gateway authenticates every request; a lookup per request would put the database on the
hot path. Results (good and bad) are trusted for ``ttl`` seconds, so a revoked token or a
disabled app stops working within that bound (1 s by default).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.core.errors import GatewayError
from gateway.security.tokens import digest
from gateway.services.tokens import AppContext, authenticate
from gateway.storage.database import Database

_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    context: AppContext | None
    error: GatewayError | None


class AuthCache:
    def __init__(self, db: Database, *, ttl: float) -> None:
        self._db = db
        self._ttl = ttl
        self._entries: dict[str, _Entry] = {}

    async def authenticate(self, presented: str) -> AppContext:
        key = digest(presented)
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or entry.expires <= now:
            entry = await self._lookup(presented, now)
            if self._ttl > 0:
                if len(self._entries) >= _MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key] = entry
        if entry.error is not None:
            raise entry.error
        assert entry.context is not None
        return entry.context

    async def _lookup(self, presented: str, now: float) -> _Entry:
        try:
            context = await authenticate(self._db, presented)
        except GatewayError as error:
            if error.retryable:  # storage trouble: do not remember it
                raise
            return _Entry(expires=now + self._ttl, context=None, error=error)
        return _Entry(expires=now + self._ttl, context=context, error=None)
