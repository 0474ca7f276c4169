"""Answers across replicas: resumed, cancelled and followed on another replica through Redis.

The answer is produced on one replica; another replica, which does not hold it, reads its
events from Redis, and a cancel sent there stops the producer. A producer killed with SIGKILL
leaves its readers elsewhere an ``error`` event within seconds, not a stream that never ends.
"""

from __future__ import annotations

import secrets
import time

import anyio
import httpx
import pytest

from gateway.services.views import QuotaLimits
from tests.gateway.http.conftest import SSEEvent, sse_events
from tests.gateway.replicas.conftest import (
    AppHandle,
    Cluster,
    fake_requests,
    poll,
    records_of,
    wait_http_async,
)
from tests.support.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.anyio

CANCEL_BOUND_S = 1.0
DEATH_BOUND_S = 5.0


async def read_events(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    app: AppHandle,
    *,
    body: object = None,
    headers: dict[str, str] | None = None,
    until: int | None = None,
    on_event: object = None,
) -> tuple[str, list[SSEEvent]]:
    """The request id and the events of an SSE response (``until`` events, then the cut)."""
    seen: list[SSEEvent] = []
    async with client.stream(
        method, path, json=body, headers={**app.auth, **(headers or {})}
    ) as response:
        assert response.status_code == 200, await response.aread()
        request_id = response.headers.get("x-request-id", "")
        try:
            async for event in sse_events(response):
                if event.is_comment:
                    continue
                seen.append(event)
                if callable(on_event):
                    await on_event(request_id, seen)
        except (httpx.TransportError, AssertionError):
            if until is None:
                raise
    return request_id, seen


def counter(exposition: str, name: str) -> float:
    """An unlabelled counter's value in a Prometheus exposition (0 when absent)."""
    for line in exposition.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


def text_of(events: list[SSEEvent]) -> str:
    return "".join(e.json["text"] for e in events if e.name == "delta")


async def test_an_answer_cut_on_one_replica_resumes_on_another(cluster: Cluster) -> None:
    a, b, c = cluster.gateways
    app = await cluster.add_app("resume-b")
    prompt = f"Resume me elsewhere {secrets.token_hex(4)} [tokens:60] [token-ms:25]"
    async with tcp_proxy(a.url) as proxy, httpx.AsyncClient(base_url=proxy.url, timeout=10) as via:

        async def cut_after_five(_: str, seen: list[SSEEvent]) -> None:
            if len(seen) == 5:
                proxy.cut()

        request_id, before = await read_events(
            via, "POST", "/ask", app, body={"prompt": prompt}, until=5, on_event=cut_after_five
        )
    assert len(before) >= 5 and all(e.name == "delta" for e in before), before
    assert before[-1].id is not None
    async with httpx.AsyncClient(base_url=b.url, timeout=20) as on_b:
        _, after = await read_events(
            on_b,
            "GET",
            f"/ask/{request_id}/events",
            app,
            headers={"Last-Event-ID": str(before[-1].id)},
        )
        # Once ended, the whole answer replays on B from the start as well.
        _, replay = await read_events(on_b, "GET", f"/ask/{request_id}/events?after=0", app)
    ids = [e.id for e in before + after]
    assert ids == list(range(1, len(ids) + 1)), ids  # no gap, no duplicate
    assert after[-1].name == "done", after[-1]
    async with httpx.AsyncClient(base_url=c.url, timeout=20) as on_c:
        _, uncut = await read_events(on_c, "POST", "/ask", app, body={"prompt": prompt})
    assert text_of(before + after) == text_of(uncut)
    assert [e.data for e in replay] == [e.data for e in before + after]
    async with httpx.AsyncClient(base_url=c.url, timeout=20) as on_c:
        records = await records_of(on_c, app, 2)
    assert [r["request_id"] for r in records].count(request_id) == 1


async def test_a_cancel_sent_to_another_replica_stops_the_upstream_within_a_second(
    cluster: Cluster,
) -> None:
    a, b, _ = cluster.gateways
    # The replicas the cluster starts in the background: not while the 1 s bound is measured.
    starting = [p for p in (cluster.spare, *cluster.pair) if p is not None and p.alive()]
    await wait_http_async(starting, "/status")
    app = await cluster.add_app("cancel-b")
    nonce = secrets.token_hex(4)
    prompt = f"Cancel me from afar {nonce} [tokens:400] [token-ms:20]"
    asked = 0.0
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=20) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=20) as on_b,
    ):

        async def cancel_on_b(request_id: str, seen: list[SSEEvent]) -> None:
            nonlocal asked
            if len(seen) == 3:
                response = await on_b.post(f"/ask/{request_id}/cancel", headers=app.auth)
                assert response.status_code == 202, response.text
                asked = time.time()

        request_id, events = await read_events(
            on_a, "POST", "/ask", app, body={"prompt": prompt}, on_event=cancel_on_b
        )
        records = await records_of(on_b, app, 1)

    async def upstream() -> dict[str, object]:
        return (await fake_requests(cluster, nonce))[0]

    ended = await poll(upstream, lambda rec: rec["status"] != "in_progress")
    assert ended["status"] == "cancelled", ended
    assert float(str(ended["ended_at"])) - asked < CANCEL_BOUND_S
    assert events[-1].name == "error" and events[-1].json["code"] == "cancelled", events[-1]
    assert len(events) < 100  # stopped, not the whole 400-token answer
    mine = [r for r in records if r["request_id"] == request_id]
    assert len(mine) == 1 and mine[0]["outcome"] == "cancelled", mine


async def test_another_apps_token_on_another_replica_gets_404(cluster: Cluster) -> None:
    a, b, _ = cluster.gateways
    owner, other = await cluster.add_app("owner-b"), await cluster.add_app("other-b")
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=20) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=20) as on_b,
    ):
        request_id, _ = await read_events(
            on_a, "POST", "/ask", owner, body={"prompt": f"Mine {secrets.token_hex(4)}"}
        )
        for method, path in (("GET", "events"), ("POST", "cancel")):
            response = await on_b.request(method, f"/ask/{request_id}/{path}", headers=other.auth)
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "not_found"
        for unknown_id in ("req_doesnotexist", f"{request_id}:events"):  # not another key
            unknown = await on_b.get(f"/ask/{unknown_id}/events", headers=owner.auth)
            assert unknown.status_code == 404, unknown.text
        # The owner reads it on B: the 404 above was the token's, not the replica's.
        _, replay = await read_events(on_b, "GET", f"/ask/{request_id}/events", owner)
    assert replay[-1].name == "done"


async def test_a_killed_producer_ends_its_remote_readers_with_an_error(cluster: Cluster) -> None:
    victim = cluster.spawn_gateway("answer-victim")
    try:
        await wait_http_async([victim], "/status")
        app = await cluster.add_app("killed-producer")
        prompt = f"Doomed {secrets.token_hex(4)} [tokens:300] [token-ms:100]"
        streaming = anyio.Event()
        request_ids: list[str] = []
        remote: list[SSEEvent] = []
        ended_at = 0.0

        async def produce() -> None:
            async def started(request_id: str, seen: list[SSEEvent]) -> None:
                if len(seen) == 2:
                    request_ids.append(request_id)
                    streaming.set()

            async with httpx.AsyncClient(base_url=victim.url, timeout=30) as http:
                with pytest.raises(httpx.TransportError):  # the connection dies with it
                    await read_events(
                        http, "POST", "/ask", app, body={"prompt": prompt}, on_event=started
                    )

        async def follow_on_b() -> None:
            nonlocal ended_at
            async with httpx.AsyncClient(base_url=cluster.gateways[1].url, timeout=30) as on_b:
                _, events = await read_events(on_b, "GET", f"/ask/{request_ids[0]}/events", app)
            ended_at = time.monotonic()
            remote.extend(events)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(produce)
            with anyio.fail_after(15):
                await streaming.wait()
            tasks.start_soon(follow_on_b)
            await anyio.sleep(4)  # longer than the alive key lasts: the heartbeat keeps it
            assert not remote  # still following: the answer runs for 30 s
            await anyio.to_thread.run_sync(victim.kill)
            killed_at = time.monotonic()
        assert remote[-1].name == "error", remote[-1]
        assert remote[-1].json["code"] == "upstream_error"
        assert [e.name for e in remote[:-1]] == ["delta"] * (len(remote) - 1)
        assert len(remote) > 3  # it followed the answer before the kill
        assert ended_at - killed_at < DEATH_BOUND_S
    finally:
        victim.stop()


async def test_redis_down_leaves_local_answers_whole_and_is_counted(cluster: Cluster) -> None:
    """The relay is a convenience: without Redis, an answer streams and resumes locally."""
    await wait_http_async(cluster.pair, "/status")
    app = await cluster.add_app("relay-down", QuotaLimits(rpm=1000))  # fail_open without Redis
    name = "orchestra_streams_relay_failures_total"
    async with httpx.AsyncClient(base_url=cluster.pair[0].url, timeout=20) as http:
        before = counter((await http.get("/metrics")).text, name)
        cluster.own_redis.stop()
        try:
            request_id, events = await read_events(
                http, "POST", "/ask", app, body={"prompt": "Alone [tokens:8]"}
            )
            _, replay = await read_events(http, "GET", f"/ask/{request_id}/events", app)
        finally:
            cluster.own_redis.start()
        after = counter((await http.get("/metrics")).text, name)
    assert events[-1].name == "done", events[-1]
    assert [e.data for e in replay] == [e.data for e in events]
    assert after > before
