"""Streaming through nginx to three replicas: incremental events, spread, exact quotas, records.

Run it under the Redis flock (it uses Redis database 12, as tests/gateway/replicas).
"""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest

from gateway.services.views import QuotaLimits
from tests.deploy.conftest import Topology
from tests.gateway.replicas.conftest import ask, gather, records_of

pytestmark = pytest.mark.anyio

TOKENS = 6
TOKEN_MS = 200


async def test_events_reach_the_client_as_the_replica_writes_them(topology: Topology) -> None:
    app = await topology.cluster.add_app("stream")
    body = {"prompt": f"slowly [tokens:{TOKENS}] [token-ms:{TOKEN_MS}]", "stream": True}
    arrivals: list[float] = []
    # httpx asks for gzip: an event stream must come back uncompressed all the same.
    async with (
        httpx.AsyncClient(base_url=topology.url, timeout=30) as client,
        client.stream("POST", "/ask", json=body, headers=app.auth) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in response.headers
        async for chunk in response.aiter_text():
            arrivals += [time.monotonic()] * chunk.count("event: delta")
            if "event: done" in chunk:
                break
    assert len(arrivals) == TOKENS
    # The upstream writes a token every 200 ms: unbuffered, the deltas arrive a second apart
    # from first to last; a buffering proxy would deliver them in one burst at the end.
    spread_s = arrivals[-1] - arrivals[0]
    assert spread_s >= 0.5 * (TOKENS - 1) * TOKEN_MS / 1000, spread_s


async def test_requests_are_spread_over_every_replica(topology: Topology) -> None:
    app = await topology.cluster.add_app("spread")
    async with httpx.AsyncClient(base_url=topology.url, timeout=30) as client:
        outcomes = await gather(
            [ask(client, app, f"spread {i}", stream=i % 2 == 0) for i in range(30)]
        )
    assert {o.status for o in outcomes} == {200}
    served = topology.served_by()
    replicas = Counter(served[o.request_id] for o in outcomes)
    print(f"requests per replica: {dict(replicas)}")  # noqa: T201
    assert set(replicas) == topology.replica_addresses(), replicas


async def test_a_limit_holds_across_the_replicas_and_each_request_has_one_record(
    topology: Topology,
) -> None:
    app = await topology.cluster.add_app("rpm", QuotaLimits(rpm=10))
    async with httpx.AsyncClient(base_url=topology.url, timeout=30) as client:
        outcomes = await gather(
            [ask(client, app, f"limited {i}", stream=i % 2 == 0) for i in range(30)]
        )
        statuses = Counter(o.status for o in outcomes)
        assert statuses == {200: 10, 429: 20}, statuses
        assert {o.error_code for o in outcomes if o.status == 429} == {"quota_exceeded"}
        # The admitted answers came from more than one replica: one counter, shared.
        served = topology.served_by()
        assert len({served[o.request_id] for o in outcomes if o.status == 200}) > 1
        records = await records_of(client, app, len(outcomes))
    assert sorted(r["request_id"] for r in records) == sorted(o.request_id for o in outcomes)
    assert Counter(r["outcome"] for r in records)["completed"] == 10, records
