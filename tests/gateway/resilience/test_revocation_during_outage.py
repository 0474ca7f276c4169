"""The database down for the gateway: a valid token keeps working from the cache, a revoked
one never does (issue #21).

The gateway reaches PostgreSQL through the test's TCP relay (as in test_database_outage.py) and
has a Redis. The relay is stopped; the operator, who still reaches the database, revokes a
token with the CLI, which announces it on Redis. From then on that token is never answered:
503 ``storage_unavailable`` while the gateway cannot verify it (it cannot tell which of the
app's tokens changed), 401 once the database is back. A token of another app, seen before the
outage, is served from the cache all along.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import httpx
import pytest

from tests.conftest import POSTGRES_URL, PostgresSchema
from tests.gateway.http.conftest import (
    ORCHESTRA,
    AppHandle,
    Fake,
    Gateway,
    gateway_via_proxy,
    poll,
)
from tests.gateway.resilience.conftest import Tenants, call

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

#: Redis database 13 of the machine's Redis (these tests run under the Redis lock).
REDIS_URL = "redis://127.0.0.1:6379/13"
OUTAGE_S = 4.0


async def outcome(http: httpx.AsyncClient, app: AppHandle) -> str:
    return (await call(http, app, {"prompt": "hi", "stream": False})).assert_typed_end()


async def revoke_directly(gateway: Gateway, token_id: str) -> None:
    """`orchestra tokens revoke` on the database itself (not through the stopped relay)."""
    env = {**gateway.env, "ORCHESTRA_DATABASE_URL": POSTGRES_URL}
    result = await anyio.run_process(
        [str(ORCHESTRA), "tokens", "revoke", token_id], env=env, check=False
    )
    assert result.returncode == 0, (result.stdout, result.stderr)


async def test_a_revoked_token_is_never_served_while_the_database_is_down(
    tmp_path: Path, postgres_schema: PostgresSchema, fake: Fake
) -> None:
    async with gateway_via_proxy(
        tmp_path,
        postgres_schema,
        name="revoke-outage-gateway",
        redis_url=REDIS_URL,
        auth_cache_ttl_s=0.5,  # the valid token is served *stale* through the outage
        upstream_attempts=1,
        first_token_timeout_s=10,
    ) as (gateway, relay):
        tenants = Tenants(gateway, fake, "revoke-outage")
        kept, revoked = await tenants.add(), await tenants.add()
        async with gateway.client(timeout=15) as http:
            assert await outcome(http, kept) == "json"
            assert await outcome(http, revoked) == "json"
            relay.stop()  # the database goes away, for the gateway only
            await revoke_directly(gateway, revoked.token_id)
            seen: dict[str, Counter[str]] = {"kept": Counter(), "revoked": Counter()}
            with anyio.move_on_after(OUTAGE_S):
                while True:
                    seen["kept"][await outcome(http, kept)] += 1
                    seen["revoked"][await outcome(http, revoked)] += 1
            await relay.start()
            await poll(lambda: http.get("/status"), lambda r: r.status_code == 200, timeout=10)
            after = Counter([await outcome(http, revoked) for _ in range(3)])
            after_kept = await outcome(http, kept)
    assert set(seen["kept"]) == {"json"}, seen
    assert set(seen["revoked"]) == {"http:503:storage_unavailable"}, seen
    assert after == {"http:401:invalid_token": 3}, after
    assert after_kept == "json"
