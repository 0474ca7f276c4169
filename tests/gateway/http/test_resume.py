"""Resumable answers on one real gateway: cut the network, resume, detach, cancel, expire.

The gateway here (``orchestra serve``) keeps a detached answer ``GRACE_S`` and an ended one
``RETENTION_S``; the network between the test and the gateway goes through a ``TcpProxy`` the
test cuts, as a train entering a tunnel would. The fake's answers depend only on the prompt,
so an uncut answer to the same prompt is what a resumed one must equal.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from gateway.services import quotas as quota_service
from gateway.services.views import QuotaLimits
from tests.gateway.http.conftest import (
    TLS,
    AppHandle,
    Apps,
    Fake,
    Gateway,
    SSEEvent,
    ask_stream,
    assert_error,
    fresh_gateway,
    poll,
    sse_events,
    wait_for_records,
)
from tests.gateway.observability.conftest import scrape
from tests.support.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.anyio

GRACE_S = 3.0
RETENTION_S = 3.0
CANCEL_BOUND_S = 1.0
LEASE_TTL_S = 0.6  # quota leases: renewed every ttl / 3 while their answer runs
LONG = "[tokens:60] [token-ms:25]"  # 1.5 s of answer: time to cut it and come back


@pytest.fixture(scope="module")
async def resume_gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    root = tmp_path_factory.mktemp("resume")
    async with fresh_gateway(
        root,
        name="resume-gateway",
        stream_detach_grace_s=GRACE_S,
        stream_retention_s=RETENTION_S,
        reservation_ttl_s=LEASE_TTL_S,
        first_token_timeout_s=30,
        idle_timeout_s=30,
    ) as gateway:
        yield gateway


@pytest.fixture
def resume_apps(
    request: pytest.FixtureRequest, resume_gateway: Gateway, fake: Fake, issued_secrets: set[str]
) -> Apps:
    return Apps(resume_gateway, fake, issued_secrets, f"resume-{request.node.name[5:30]}")


@pytest.fixture
async def http(resume_gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with resume_gateway.client() as client:
        yield client


async def read_until_cut(
    url: str, app: AppHandle, prompt: str, *, deltas: int, cut: Any
) -> tuple[str, list[SSEEvent]]:
    """POST /ask through ``url``, read ``deltas`` deltas, call ``cut()``; (request id, events).

    The events read after the cut (bytes already in flight) count too: what the client saw.
    """
    seen: list[SSEEvent] = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=10, verify=TLS) as client,
        client.stream("POST", "/ask", json={"prompt": prompt}, headers=app.auth) as r,
    ):
        assert r.status_code == 200, await r.aread()
        request_id = r.headers["x-request-id"]
        try:
            async for event in sse_events(r):
                if event.is_comment:
                    continue
                seen.append(event)
                if len(seen) == deltas:
                    cut()
        except (httpx.TransportError, AssertionError):
            pass  # the body ended mid-event: the network was cut
    assert len(seen) >= deltas and all(e.name == "delta" for e in seen), seen
    return request_id, seen


async def follow(
    client: httpx.AsyncClient,
    app: AppHandle,
    request_id: str,
    *,
    last_event_id: int | None = None,
    params: dict[str, str] | None = None,
) -> list[SSEEvent]:
    headers = dict(app.auth)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with client.stream(
        "GET", f"/ask/{request_id}/events", headers=headers, params=params
    ) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        return [e async for e in sse_events(r) if not e.is_comment]


def text_of(events: list[SSEEvent]) -> str:
    return "".join(e.json["text"] for e in events if e.name == "delta")


async def the_record(client: httpx.AsyncClient, app: AppHandle, request_id: str) -> dict[str, Any]:
    records = await wait_for_records(client, [request_id], token=app.token)
    mine = [r for r in records if r["request_id"] == request_id]
    assert len(mine) == 1, mine  # one answer, one record, whatever the readers
    return mine[0]


async def test_a_cut_answer_resumes_from_its_last_event_id_with_no_gap_or_duplicate(
    http: httpx.AsyncClient, resume_gateway: Gateway, resume_apps: Apps, fake: Fake
) -> None:
    app = await resume_apps.add()
    prompt = f"Tell a long story {secrets.token_hex(4)} {LONG}"
    async with tcp_proxy(resume_gateway.url) as proxy:
        request_id, before = await read_until_cut(proxy.url, app, prompt, deltas=5, cut=proxy.cut)
        assert [e.id for e in before] == list(range(1, len(before) + 1))
        # Back on the network (through the proxy again), from the last id seen.
        async with httpx.AsyncClient(base_url=proxy.url, timeout=10, verify=TLS) as again:
            after = await follow(again, app, request_id, last_event_id=before[-1].id)
    assert after[0].id == before[-1].id + 1
    assert [e.id for e in after] == list(range(after[0].id, after[0].id + len(after)))
    assert [e.name for e in after][-1] == "done"
    assert after[-1].json["request_id"] == request_id
    uncut = await ask_stream(http, app, {"prompt": prompt})
    assert text_of(before + after) == uncut.text
    assert text_of(before + after).count(" ") == 60
    record = await the_record(http, app, request_id)
    assert record["outcome"] == "completed", record
    assert record["completion_tokens"] == 60
    first, _uncut = await fake.requests_with(prompt)
    assert first["status"] == "completed", first  # asked once, answered whole


async def test_a_reader_can_replay_a_finished_answer_with_after(
    http: httpx.AsyncClient, resume_apps: Apps
) -> None:
    app = await resume_apps.add()
    streamed = await ask_stream(http, app, {"prompt": f"Short {secrets.token_hex(4)}"})
    whole = await follow(http, app, streamed.request_id)
    assert [(e.id, e.data) for e in whole] == [(e.id, e.data) for e in streamed.events]
    tail = await follow(http, app, streamed.request_id, params={"after": "3"})
    assert [(e.id, e.data) for e in tail] == [(e.id, e.data) for e in streamed.events[3:]]
    assert await follow(http, app, streamed.request_id, last_event_id=len(whole)) == []


async def test_no_reader_within_the_grace_cancels_the_upstream_and_records_the_disconnect(
    http: httpx.AsyncClient, resume_gateway: Gateway, resume_apps: Apps, fake: Fake
) -> None:
    app = await resume_apps.add()
    nonce = secrets.token_hex(4)
    expired_before = (await scrape(resume_gateway)).value("orchestra_streams_expired_total")
    async with tcp_proxy(resume_gateway.url) as proxy:
        request_id, seen = await read_until_cut(
            proxy.url,
            app,
            f"A very long one {nonce} [tokens:400] [token-ms:20]",
            deltas=3,
            cut=proxy.cut,
        )
    left = time.time()
    # The answer goes on meanwhile: a reader coming back within the grace would get it.
    upstream = await fake.request_with(nonce)
    assert upstream["status"] == "in_progress", upstream
    ended = await poll(
        lambda: fake.request_with(nonce),
        lambda r: r["status"] != "in_progress",
        timeout=GRACE_S + 5,
    )
    assert ended["status"] == "cancelled", ended
    assert GRACE_S - 0.2 <= ended["ended_at"] - left < GRACE_S + CANCEL_BOUND_S + 0.5
    record = await the_record(http, app, request_id)
    assert record["outcome"] == "client_disconnected", record
    # The usage so far: more than the client saw, less than the whole answer.
    assert len(seen) < record["completion_tokens"] <= ended["chunks_sent"] < 400
    metrics = await scrape(resume_gateway)
    assert metrics.value("orchestra_streams_expired_total") == expired_before + 1
    # A reader arriving now replays it all, and learns how it ended.
    events = await follow(http, app, request_id)
    assert events[-1].name == "error" and events[-1].json["code"] == "cancelled"


async def test_a_reader_coming_back_within_the_grace_gets_the_rest_and_it_completes(
    http: httpx.AsyncClient, resume_gateway: Gateway, resume_apps: Apps
) -> None:
    app = await resume_apps.add()
    prompt = f"Long again {secrets.token_hex(4)} {LONG}"
    metrics = await scrape(resume_gateway)
    async with tcp_proxy(resume_gateway.url) as proxy:
        request_id, before = await read_until_cut(proxy.url, app, prompt, deltas=2, cut=proxy.cut)
    await anyio.sleep(GRACE_S / 2)  # detached, still generating
    after = await follow(http, app, request_id, last_event_id=before[-1].id)
    assert after[-1].name == "done"
    assert text_of(before + after) == (await ask_stream(http, app, {"prompt": prompt})).text
    assert (await the_record(http, app, request_id))["outcome"] == "completed"
    now = await scrape(resume_gateway)
    for name in ("orchestra_streams_detached_total", "orchestra_streams_resumed_total"):
        assert now.value(name) == metrics.value(name) + 1, name


async def test_cancel_stops_the_upstream_and_every_reader_gets_an_error(
    http: httpx.AsyncClient, resume_gateway: Gateway, resume_apps: Apps, fake: Fake
) -> None:
    app = await resume_apps.add()
    nonce = secrets.token_hex(4)
    prompt = f"Cancel me {nonce} [tokens:400] [token-ms:20]"
    readers: list[list[SSEEvent]] = []
    cancelled = (await scrape(resume_gateway)).value("orchestra_streams_cancelled_total")

    async def second_reader(request_id: str) -> None:
        readers.append(await follow(http, app, request_id))

    async with http.stream("POST", "/ask", json={"prompt": prompt}, headers=app.auth) as r:
        request_id = r.headers["x-request-id"]
        first: list[SSEEvent] = []
        async with anyio.create_task_group() as tasks:
            async for event in sse_events(r):
                if event.is_comment:
                    continue
                first.append(event)
                if len(first) == 3:
                    tasks.start_soon(second_reader, request_id)
                if len(first) == 6:
                    response = await http.post(f"/ask/{request_id}/cancel", headers=app.auth)
                    assert response.status_code == 202, response.text
                    assert response.json() == {"request_id": request_id}
                    asked = time.time()
    ended = await poll(lambda: fake.request_with(nonce), lambda rec: rec["status"] != "in_progress")
    assert ended["status"] == "cancelled", ended
    assert ended["ended_at"] - asked < CANCEL_BOUND_S
    for events in (first, *readers):
        assert events[-1].name == "error", events[-1]
        assert events[-1].json["code"] == "cancelled"
        assert events[-1].json["request_id"] == request_id
        assert [e.name for e in events[:-1]] == ["delta"] * (len(events) - 1)
    assert len(readers) == 1 and readers[0][-1].id == first[-1].id
    record = await the_record(http, app, request_id)
    assert record["outcome"] == "cancelled", record
    assert record["completion_tokens"] >= 5
    # Cancelling again is harmless; the answer is over.
    again = await http.post(f"/ask/{request_id}/cancel", headers=app.auth)
    assert again.status_code == 202
    metrics = await scrape(resume_gateway)
    assert metrics.value("orchestra_streams_cancelled_total") == cancelled + 1


async def test_another_app_gets_404_and_after_the_window_410(
    http: httpx.AsyncClient, resume_apps: Apps
) -> None:
    owner, other = await resume_apps.add(), await resume_apps.add()
    streamed = await ask_stream(http, owner, {"prompt": f"Mine {secrets.token_hex(4)}"})
    request_id = streamed.request_id
    for method, path in (("GET", "events"), ("POST", "cancel")):
        response = await http.request(method, f"/ask/{request_id}/{path}", headers=other.auth)
        assert_error(response, 404, "not_found")
    unknown = await http.get("/ask/req_doesnotexist/events", headers=owner.auth)
    assert_error(unknown, 404, "not_found")
    bad = await http.get(f"/ask/{request_id}/events", headers={**owner.auth, "Last-Event-ID": "-1"})
    assert_error(bad, 400, "invalid_request")
    await anyio.sleep(RETENTION_S + 1.2)  # past the window (and the next sweep)
    for method, path in (("GET", "events"), ("POST", "cancel")):
        response = await http.request(method, f"/ask/{request_id}/{path}", headers=owner.auth)
        assert_error(response, 410, "stream_expired")
        response = await http.request(method, f"/ask/{request_id}/{path}", headers=other.auth)
        assert_error(response, 404, "not_found")


async def session_auth(http: httpx.AsyncClient, app: AppHandle, user: str) -> AppHandle:
    """The app as end user ``user`` (a session token minted by the app's backend)."""
    response = await http.post("/sessions", json={"user": user}, headers=app.auth)
    assert response.status_code == 201, response.text
    return AppHandle(app.name, app.id, response.json()["token"], "", None)


async def test_a_users_answer_is_theirs_alone(http: httpx.AsyncClient, resume_apps: Apps) -> None:
    app = await resume_apps.add()
    alice, bob = await session_auth(http, app, "alice"), await session_auth(http, app, "bob")
    streamed = await ask_stream(http, alice, {"prompt": f"Alice's {secrets.token_hex(4)}"})
    for method, path in (("GET", "events"), ("POST", "cancel")):
        response = await http.request(
            method, f"/ask/{streamed.request_id}/{path}", headers=bob.auth
        )
        assert_error(response, 404, "not_found")
    assert [e.data for e in await follow(http, alice, streamed.request_id)] == [
        e.data for e in streamed.events
    ]
    # The app's own backend (its app token) may read its users' answers.
    assert len(await follow(http, app, streamed.request_id)) == len(streamed.events)


async def test_a_detached_answer_keeps_its_quota_lease_until_it_settles(
    http: httpx.AsyncClient, resume_apps: Apps
) -> None:
    """Nobody reads it for more than two lease ttl: the heartbeat still holds its slot."""
    app = await resume_apps.add()
    await resume_apps.gateway.with_database(
        lambda db: quota_service.set_quota(
            db, app_name=app.name, changes=QuotaLimits(max_concurrent=1)
        )
    )
    silence_ms = 3000
    body = {"prompt": f"think {secrets.token_hex(4)} [first-token-ms:{silence_ms}] [tokens:2]"}
    async with http.stream("POST", "/ask", json=body, headers=app.auth) as response:
        assert response.status_code == 200  # the role chunk came: headers sent, then we leave
        request_id = response.headers["x-request-id"]
    await anyio.sleep(2 * LEASE_TTL_S + 0.3)  # detached, silent, past two lease ttl
    probe = {"prompt": "probe [tokens:1]", "stream": False}
    assert_error(await http.post("/ask", json=probe, headers=app.auth), 429, "quota_exceeded")
    events = await follow(http, app, request_id)  # back within the grace
    assert [e.name for e in events] == ["delta", "delta", "done"], events
    assert (await the_record(http, app, request_id))["outcome"] == "completed"
    assert (await http.post("/ask", json=probe, headers=app.auth)).status_code == 200
