"""A thousand detached answers stay within the memory bound of the replay logs.

The gateway keeps ``BUFFER`` bytes of events per answer and ``BOUND`` for all of them. Every
answer here is detached right after its headers and runs to its end (the grace is long), so
without eviction the logs would hold ``ANSWERS * BUFFER`` bytes, several times the bound.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import anyio
import httpx
import pytest

from tests.gateway.http.conftest import (
    AppHandle,
    Apps,
    Fake,
    Gateway,
    fresh_gateway,
    poll,
)
from tests.gateway.observability.conftest import scrape

pytestmark = pytest.mark.anyio

ANSWERS = 1000
CONCURRENCY = 20
TOKENS = 100  # about 4.5 KB of events an answer, over a second: detached while running
TOKEN_MS = 10
BUFFER = 4096
BOUND = 512 * 1024
#: RSS the process may gain for everything else a thousand requests leave (allocator arenas,
#: caches); the unbounded logs alone would be ANSWERS * TOKENS * ~45 bytes (~4.5 MB) on top.
RSS_SLACK = 40 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def detach_after_headers(gateway: Gateway, app: AppHandle, prompt: str) -> None:
    async with (
        gateway.client() as client,
        client.stream("POST", "/ask", json={"prompt": prompt}, headers=app.auth) as r,
    ):
        assert r.status_code == 200


async def test_a_thousand_detached_answers_stay_within_the_bound(
    tmp_path: Path, fake: Fake, issued_secrets: set[str]
) -> None:
    async with fresh_gateway(
        tmp_path,
        name="memory-gateway",
        stream_detach_grace_s=600,
        stream_buffer_max_bytes=BUFFER,
        stream_memory_max_bytes=BOUND,
    ) as gateway:
        app = await Apps(gateway, fake, issued_secrets, "memory").add()
        pid = gateway.server.process.pid
        await detach_after_headers(gateway, app, "warm up")
        before = rss_bytes(pid)
        limiter = anyio.CapacityLimiter(CONCURRENCY)

        async def one(i: int) -> None:
            async with limiter:
                prompt = (
                    f"Answer {i} {secrets.token_hex(3)} [tokens:{TOKENS}] [token-ms:{TOKEN_MS}]"
                )
                await detach_after_headers(gateway, app, prompt)

        async with anyio.create_task_group() as tasks:
            for i in range(ANSWERS):
                tasks.start_soon(one, i)
        # Every answer ran to its end although nobody read it, and was recorded as completed.
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
            await wait_completed(http, app, ANSWERS + 1)
        await anyio.sleep(1.5)  # the buffered-bytes gauge is sampled every second
        metrics = await scrape(gateway)
        # Left while running (a few may end before their client's leaving is noticed).
        assert metrics.value("orchestra_streams_detached_total") >= ANSWERS * 0.9
        assert metrics.value("orchestra_streams_buffered_bytes") <= BOUND
        # Most ended answers had to go: at most BOUND / (a few KB) can be kept.
        assert metrics.value("orchestra_streams_evicted_total") >= ANSWERS - BOUND // 2048
        assert metrics.value("orchestra_streams_expired_total") == 0
        grown = rss_bytes(pid) - before
        assert grown < BOUND + RSS_SLACK, grown


async def wait_completed(http: httpx.AsyncClient, app: AppHandle, count: int) -> None:
    async def completed() -> int:
        response = await http.get(
            "/logs", params={"limit": 1000, "outcome": "completed"}, headers=app.auth
        )
        assert response.status_code == 200, response.text
        return len(response.json()["records"])

    await poll(completed, lambda n: n >= min(count, 1000), timeout=120, interval=0.5)
