"""Streaming through nginx to three replicas: incremental events, spread, exact quotas, records.

Run it under the Redis flock (it uses Redis database 12, as tests/gateway/replicas).
"""

from __future__ import annotations

import time
from collections import Counter

import anyio
import httpx
import pytest

from gateway.services.views import QuotaLimits
from tests.deploy.conftest import Topology
from tests.gateway.replicas.conftest import Outcome, ask, fake_requests, gather, records_of

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
        # The 30 requests reached more than one replica, and still exactly 10 were admitted:
        # one counter, shared. (Which replica's requests win the race is up to the scheduler.)
        served = topology.served_by()
        assert len({served[o.request_id] for o in outcomes}) > 1
        records = await records_of(client, app, len(outcomes))
    assert sorted(r["request_id"] for r in records) == sorted(o.request_id for o in outcomes)
    assert Counter(r["outcome"] for r in records)["completed"] == 10, records


async def test_a_client_that_leaves_is_seen_by_the_replica_through_the_proxy(
    topology: Topology,
) -> None:
    app = await topology.cluster.add_app("leaves")
    marker = f"leaving-{app.id}"
    body = {"prompt": f"{marker} [tokens:100] [token-ms:100]", "stream": True}
    async with (
        httpx.AsyncClient(base_url=topology.url, timeout=30) as client,
        client.stream("POST", "/ask", json=body, headers=app.auth) as response,
    ):
        request_id = response.headers["x-request-id"]
        async for chunk in response.aiter_text():
            if "event: delta" in chunk:
                break  # and leave: the stream is closed with the client
    async with httpx.AsyncClient(base_url=topology.url, timeout=30) as client:
        (record,) = await records_of(client, app, 1)
    # nginx closed its upstream connection when the client went: after the detach grace
    # (1 s here) the replica stopped the answer (and its upstream call) well before the
    # 100 tokens (10 s), and recorded it once.
    assert record["request_id"] == request_id
    assert record["outcome"] == "client_disconnected", record
    assert record["completion_tokens"] < 100, record
    (upstream,) = await fake_requests(topology.cluster, marker)
    assert upstream["status"] == "cancelled", upstream


async def test_a_replica_that_stops_costs_no_request(topology: Topology) -> None:
    """Last in this module: it stops a replica. nginx sends its requests to the others."""
    app = await topology.cluster.add_app("rolling")
    stopped = topology.cluster.gateways[0]
    warm = anyio.Semaphore(0)
    done = anyio.Event()
    during: list[Outcome] = []
    after: list[Outcome] = []

    async def traffic(client: httpx.AsyncClient, worker: int) -> None:
        i = 0
        while not done.is_set():  # before, while and just after the replica stops
            during.append(await ask(client, app, f"rolling {worker}-{i}", stream=i % 2 == 0))
            i += 1
            if i == 3:
                warm.release()
        for j in range(6):  # once it is gone
            after.append(await ask(client, app, f"after {worker}-{j}", stream=j % 2 == 0))

    async with (
        httpx.AsyncClient(base_url=topology.url, timeout=30) as client,
        anyio.create_task_group() as tasks,
    ):
        for worker in range(3):
            tasks.start_soon(traffic, client, worker)
        for _ in range(3):
            await warm.acquire()
        await anyio.to_thread.run_sync(stopped.stop)  # SIGTERM, and wait for it to exit
        done.set()
    assert not stopped.alive()
    assert "shutting down: draining open streams" in stopped.output()  # a graceful stop
    statuses = Counter(o.status for o in during + after)
    assert statuses == {200: len(during) + len(after)}, statuses
    served = topology.served_by()
    assert f"127.0.0.1:{stopped.port}" in {served[o.request_id] for o in during}
    assert f"127.0.0.1:{stopped.port}" not in {served[o.request_id] for o in after}
