"""A short-lived cache in front of token authentication.

The gateway authenticates every request; a lookup per request would put the database on the
hot path. Results (good and bad) are trusted for ``ttl`` seconds, so a revoked token or a
disabled app stops working within that bound (1 s by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.errors import GatewayError
from gateway.security.tokens import digest
from gateway.services.tokens import AppContext, authenticate
from gateway.services.ttl_cache import TTLCache
from gateway.storage.database import Database


@dataclass(frozen=True, slots=True)
class _Entry:
    context: AppContext | None
    error: GatewayError | None


class AuthCache:
    def __init__(self, db: Database, *, ttl: float) -> None:
        self._db = db
        self._cache: TTLCache[str, _Entry] = TTLCache(ttl=ttl)

    async def authenticate(self, presented: str) -> AppContext:
        entry = await self._cache.get(digest(presented), lambda: self._lookup(presented))
        if entry.error is not None:
            raise entry.error
        assert entry.context is not None
        return entry.context

    async def _lookup(self, presented: str) -> _Entry:
        try:
            return _Entry(context=await authenticate(self._db, presented), error=None)
        except GatewayError as error:
            if error.retryable:  # storage trouble: raised, so not remembered
                raise
            return _Entry(context=None, error=error)
