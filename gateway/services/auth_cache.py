"""A short-lived cache in front of token authentication.

The gateway authenticates every request; a lookup per request would put the database on the
hot path. Verdicts (good and bad) are kept in a ``TTLCache`` (refreshed after ``ttl``, served
stale while a refresh runs or while the database is down), but a verdict is only ever used
while it is still true:

- its app's auth epoch has not changed since it was read (``AuthEpochs``): a revoked token,
  a disabled, updated or removed app is looked up again, waiting for the database, never
  served stale. If the database cannot answer then, the request gets 503
  ``storage_unavailable``: the gateway cannot tell whether this token is the one that changed,
  so it neither serves it nor calls a possibly valid token invalid (a 401 would make a client
  throw away a good credential);
- its token has not expired (checked locally: no database needed to refuse it).

End users' tokens (sessions, OpenID Connect: JWTs) go to ``EndUserAuth``, which keeps one
entry per app under the same epochs.
"""

from __future__ import annotations

import copy
import time

from gateway.core.errors import Unauthenticated
from gateway.security.sessions import looks_like_jwt
from gateway.security.tokens import digest
from gateway.services.auth_epochs import AuthEpochs
from gateway.services.end_users import EndUserAuth
from gateway.services.tokens import INVALID_TOKEN_MESSAGE, AppContext, Verdict, check_token
from gateway.services.ttl_cache import TTLCache
from gateway.storage.database import Database


class AuthCache:
    def __init__(
        self,
        db: Database,
        *,
        ttl: float,
        epochs: AuthEpochs,
        end_users: EndUserAuth | None = None,
    ) -> None:
        self._db = db
        self._epochs = epochs
        self._end_users = end_users
        self._cache: TTLCache[str, Verdict] = TTLCache(ttl=ttl)
        self._current = self._still_current  # bound once: this runs on every request

    async def authenticate(self, presented: str) -> AppContext:
        if self._end_users is not None and looks_like_jwt(presented):
            return await self._end_users.authenticate(presented)
        verdict = await self._cache.get(
            digest(presented), lambda: self._lookup(presented), self._current
        )
        if verdict.expires_at is not None and verdict.expires_at <= time.time():
            raise Unauthenticated(INVALID_TOKEN_MESSAGE)
        if verdict.error is not None:
            # A copy: one stored exception raised again and again would grow its traceback.
            raise copy.copy(verdict.error)
        assert verdict.context is not None
        return verdict.context

    def _still_current(self, verdict: Verdict) -> bool:
        app_id = verdict.app_id
        return app_id is None or self._epochs.current(app_id) == verdict.auth_epoch

    async def _lookup(self, presented: str) -> Verdict:
        verdict = await check_token(self._db, presented)  # raises (uncached) if the DB is down
        if verdict.app_id is not None:
            self._epochs.observe(verdict.app_id, verdict.auth_epoch)
        return verdict
