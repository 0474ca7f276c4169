"""The lease heartbeat across replicas: a replica's live answers keep their concurrency slots
however long their upstream stays silent, and a replica killed with SIGKILL gives its slots back
within the lease's ttl.

The replicas run with ``reservation_ttl_s`` = RESERVATION_TTL_S (3 s): each renews all of its
live reservations in one Redis round trip every ttl / 3.
"""

from __future__ import annotations

import secrets
import time

import anyio
import httpx
import pytest

from gateway.services.views import QuotaLimits
from tests.gateway.replicas.conftest import (
    RESERVATION_TTL_S,
    AppHandle,
    Cluster,
    Outcome,
    Proc,
    ask,
    wait_http_async,
)

pytestmark = pytest.mark.anyio

SLOTS = 5
#: How long after the kill the app must be served again: the ttl, plus a heartbeat interval
#: (the last renewal may have come just before the kill) and room for a loaded machine.
RECOVERY_BOUND_S = RESERVATION_TTL_S + RESERVATION_TTL_S / 3 + 3.0


async def silent_stream(
    victim: Proc, app: AppHandle, opened: anyio.Event, count: list[int]
) -> None:
    """An answer whose first token would come after a minute (a reasoning model thinking)."""
    body = {"prompt": f"think {secrets.token_hex(3)} [first-token-ms:60000] [tokens:2]"}
    async with httpx.AsyncClient(base_url=victim.url, timeout=90) as http:
        try:
            async with http.stream("POST", "/ask", json=body, headers=app.auth) as response:
                assert response.status_code == 200, await response.aread()
                count.append(1)
                if len(count) == SLOTS:
                    opened.set()
                async for _ in response.aiter_bytes():
                    pass  # only pings until the replica dies
        except httpx.HTTPError:
            return  # the connection dies with the replica
    raise AssertionError("a silent answer ended although its replica was killed")


async def test_silent_answers_keep_their_slots_and_a_killed_replica_frees_them(
    cluster: Cluster,
) -> None:
    victim = cluster.spawn_gateway("heartbeat-victim")
    try:
        await wait_http_async([victim], "/status")
        app = await cluster.add_app("heartbeat", QuotaLimits(max_concurrent=SLOTS))
        others = cluster.spread()
        async with others, anyio.create_task_group() as tasks:
            opened, count = anyio.Event(), list[int]()
            for _ in range(SLOTS):
                tasks.start_soon(silent_stream, victim, app, opened, count)
            with anyio.fail_after(20):
                await opened.wait()
            # More than twice the ttl without a single chunk: the slots are still taken,
            # on every other replica.
            await anyio.sleep(2 * RESERVATION_TTL_S + 1)
            for _ in range(len(others.urls)):
                held = await ask(others.next(), app, "probe [tokens:1]", stream=False)
                assert (held.status, held.error_code) == (429, "quota_exceeded"), held.body
            await anyio.to_thread.run_sync(victim.kill)
            killed_at = time.monotonic()

            admitted: Outcome | None = None
            while time.monotonic() < killed_at + RESERVATION_TTL_S + 15:
                outcome = await ask(others.next(), app, "probe [tokens:1]", stream=False)
                if outcome.status == 200:
                    admitted = outcome
                    break
                assert (outcome.status, outcome.error_code) == (429, "quota_exceeded")
                await anyio.sleep(0.1)
            recovered_after = time.monotonic() - killed_at
        assert admitted is not None, f"still refused {recovered_after:.1f} s after the kill"
        assert recovered_after <= RECOVERY_BOUND_S, recovered_after
    finally:
        victim.stop()
