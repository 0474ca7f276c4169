"""Quota leases on one real gateway: a silent upstream keeps its lease, and nothing leaks.

The gateway here (``orchestra serve``, in-memory counters) has a lease ttl of ``TTL`` and long
upstream timeouts, so that an answer can stay silent for several ttl. Its lease heartbeat
renews every live reservation every ttl / 3; ``orchestra_quota_leases`` (sampled at each beat)
shows how many it holds, which must come back to 0 after any mix of outcomes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import anyio
import httpx
import pytest

from gateway.services import quotas as quota_service
from gateway.services.views import QuotaLimits
from tests.gateway.http.conftest import (
    AppHandle,
    Apps,
    Fake,
    Gateway,
    SSEEvent,
    assert_error,
    fresh_gateway,
    sse_events,
)
from tests.gateway.observability.conftest import scrape, scrape_until

pytestmark = pytest.mark.anyio

TTL = 1.5
LEASES = "orchestra_quota_leases"


@pytest.fixture(scope="module")
async def lease_gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    root = tmp_path_factory.mktemp("leases")
    async with fresh_gateway(
        root,
        name="lease-gateway",
        reservation_ttl_s=TTL,
        first_token_timeout_s=30,
        idle_timeout_s=30,
    ) as gateway:
        yield gateway


@pytest.fixture
def lease_apps(
    request: pytest.FixtureRequest, lease_gateway: Gateway, fake: Fake, issued_secrets: set[str]
) -> Apps:
    return Apps(lease_gateway, fake, issued_secrets, f"lease-{request.node.name[5:30]}")


async def limited(apps: Apps, quota: QuotaLimits) -> AppHandle:
    app = await apps.add()
    await apps.gateway.with_database(
        lambda db: quota_service.set_quota(db, app_name=app.name, changes=quota)
    )
    return app


async def probe(gateway: Gateway, app: AppHandle) -> httpx.Response:
    async with gateway.client() as http:
        return await http.post(
            "/ask", json={"prompt": "probe [tokens:1]", "stream": False}, headers=app.auth
        )


async def test_a_silent_upstream_keeps_its_lease_for_several_ttl(
    lease_gateway: Gateway, lease_apps: Apps
) -> None:
    """Reasoning models think for minutes before the first token: the slot stays taken."""
    app = await limited(lease_apps, QuotaLimits(max_concurrent=1))
    silence_s = 4 * TTL
    opened = anyio.Event()
    names: list[str | None] = []

    async def silent_answer() -> None:
        body = {"prompt": f"think [first-token-ms:{silence_s * 1000:.0f}] [tokens:2]"}
        async with (
            lease_gateway.client(timeout=30) as http,
            http.stream("POST", "/ask", json=body, headers=app.auth) as response,
        ):
            assert response.status_code == 200
            opened.set()  # the role chunk came at once; the first token comes after silence_s
            names.extend([event.name async for event in sse_events(response)])

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(silent_answer)
        with anyio.fail_after(10):
            await opened.wait()
        started = time.monotonic()
        refusals = 0
        # Past two ttl of silence (no chunk, so no per-chunk renewal): still held.
        await anyio.sleep(2 * TTL + 0.5)
        while time.monotonic() - started < silence_s - 0.5:
            assert_error(await probe(lease_gateway, app), 429, "quota_exceeded")
            refusals += 1
            await anyio.sleep(0.3)
    assert refusals >= 1
    assert names[-1] == "done", names
    assert (await probe(lease_gateway, app)).status_code == 200  # released when it settled


async def test_no_reservation_stays_held_after_a_burst_of_mixed_outcomes(
    lease_gateway: Gateway, lease_apps: Apps
) -> None:
    """Completed, failed, cut, disconnected and abandoned answers: every lease is released."""
    app = await limited(lease_apps, QuotaLimits(max_concurrent=50, tpm=10_000_000))
    held = anyio.Event()
    leave = anyio.Event()

    async def streamed(prompt: str) -> None:
        async with lease_gateway.client(timeout=30) as http:
            body = {"prompt": prompt}
            async with http.stream("POST", "/ask", json=body, headers=app.auth) as response:
                await response.aread()

    async def non_streamed(prompt: str) -> None:
        async with lease_gateway.client(timeout=30) as http:
            await http.post("/ask", json={"prompt": prompt, "stream": False}, headers=app.auth)

    async def openai_route(prompt: str) -> None:
        body: dict[str, Any] = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
        }
        async with lease_gateway.client(timeout=30) as http:
            url = "/v1/chat/completions"
            async with http.stream("POST", url, json=body, headers=app.auth) as response:
                await response.aread()

    async def disconnects_mid_stream() -> None:
        async with lease_gateway.client(timeout=30) as http:
            body = {"prompt": "long [tokens:400] [token-ms:20]"}
            async with http.stream("POST", "/ask", json=body, headers=app.auth) as response:
                assert response.status_code == 200
                # Held in a name: a generator left to the collector would close the stream.
                events = cast(AsyncGenerator[SSEEvent, None], sse_events(response))
                async for event in events:
                    if event.name == "delta":
                        break
                held.set()
                await leave.wait()
                await events.aclose()  # then the client goes away mid-stream

    async def gives_up_before_the_headers() -> None:
        with anyio.move_on_after(1.0):  # the upstream hangs: the client cancels its request
            await streamed("never [hang]")

    async with anyio.create_task_group() as tasks:
        for i in range(4):
            tasks.start_soon(streamed, f"ok {i}")
            tasks.start_soon(non_streamed, f"ok json {i}")
            tasks.start_soon(openai_route, f"ok v1 {i}")
        for i in range(2):
            tasks.start_soon(streamed, f"broken {i} [fail:500]")
            tasks.start_soon(non_streamed, f"broken json {i} [fail:503]")
            tasks.start_soon(streamed, f"dies {i} [tokens:20] [die-after:3]")
            tasks.start_soon(disconnects_mid_stream)
            tasks.start_soon(gives_up_before_the_headers)
        with anyio.fail_after(10):
            await held.wait()
        during = await scrape_until(lease_gateway, lambda s: s.value(LEASES) >= 1)
        assert during.value(LEASES) >= 1  # the gauge does see held leases
        leave.set()
    after = await scrape_until(lease_gateway, lambda s: s.value(LEASES) == 0, timeout=3 * TTL)
    assert after.value(LEASES) == 0
    assert (await scrape(lease_gateway)).value(LEASES) == 0
