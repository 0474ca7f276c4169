"""POST /feedback over HTTP: rate, rate again, who may rate, validation, /logs, usage, metric.

The gateway under test is the session's real ``orchestra serve``; replicas on the same database
are started where a record must still be on its way to the database (written in batches).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.core.ids import new_request_id
from tests.gateway.http.conftest import (
    ADMIN_TOKEN,
    AppHandle,
    Apps,
    Gateway,
    ask_stream,
    assert_error,
    get_logs,
    serving_gateway,
    wait_for_records,
)
from tests.gateway.http.test_end_user_records import mint
from tests.gateway.observability.conftest import scrape

pytestmark = pytest.mark.anyio


async def answered(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """The request id of one completed /ask answer (from its JSON body)."""
    response = await client.post("/ask", json={"prompt": "hi", "stream": False}, headers=headers)
    assert response.status_code == 200, response.text
    request_id: str = response.json()["request_id"]
    assert request_id == response.headers["x-request-id"]
    return request_id


async def rate(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await client.post("/feedback", json=body, headers=headers)


async def rated(client: httpx.AsyncClient, app: AppHandle, request_id: str) -> Any:
    """The ``feedback`` of the request's record in /logs (waits for the record)."""
    records = await wait_for_records(client, [request_id], token=app.token)
    (record,) = [r for r in records if r["request_id"] == request_id]
    return record["feedback"]


async def test_a_rating_is_kept_and_rating_again_replaces_it(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    streamed = await ask_stream(client, app, {"prompt": "hello"})
    request_id = streamed.events[-1].json["request_id"]
    assert request_id == streamed.request_id
    assert await rated(client, app, request_id) is None

    first = await rate(client, app.auth, request_id=request_id, score=1, comment="Clear, thanks")
    assert first.status_code == 204 and first.content == b"", first.text
    assert await rated(client, app, request_id) == {"score": 1, "comment": "Clear, thanks"}

    again = await rate(client, app.auth, request_id=request_id, score=-1)
    assert again.status_code == 204, again.text
    assert await rated(client, app, request_id) == {"score": -1, "comment": None}


async def test_an_answer_of_the_openai_route_is_rated_by_its_request_id(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    completion = await client.post("/v1/chat/completions", json=chat, headers=app.auth)
    assert completion.status_code == 200, completion.text
    request_id = completion.headers["x-request-id"]
    assert (await rate(client, app.auth, request_id=request_id, score=1)).status_code == 204
    assert await rated(client, app, request_id) == {"score": 1, "comment": None}


async def test_another_app_cannot_rate_an_answer(client: httpx.AsyncClient, apps: Apps) -> None:
    owner, other = await apps.add(), await apps.add()
    request_id = await answered(client, owner.auth)
    await wait_for_records(client, [request_id], token=owner.token)
    refused = await rate(client, other.auth, request_id=request_id, score=-1)
    assert_error(refused, 404, "not_found")
    assert await rated(client, owner, request_id) is None


async def test_only_the_user_who_asked_rates_with_a_session(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    alice, bob = await mint(client, app, "alice"), await mint(client, app, "bob")
    asked_by_alice = await answered(client, alice)
    asked_by_the_app = await answered(client, app.auth)
    await wait_for_records(client, [asked_by_alice, asked_by_the_app], token=app.token)

    assert_error(await rate(client, bob, request_id=asked_by_alice, score=-1), 404, "not_found")
    # An app-token answer belongs to no user: no session may rate it.
    assert_error(await rate(client, alice, request_id=asked_by_the_app, score=1), 404, "not_found")
    assert await rated(client, app, asked_by_alice) is None

    assert (await rate(client, alice, request_id=asked_by_alice, score=1)).status_code == 204
    assert await rated(client, app, asked_by_alice) == {"score": 1, "comment": None}
    # The app's backend (its own token) acts for its users: it may rate any of its answers.
    by_app = await rate(client, app.auth, request_id=asked_by_alice, score=-1, comment="no")
    assert by_app.status_code == 204, by_app.text
    assert await rated(client, app, asked_by_alice) == {"score": -1, "comment": "no"}


async def test_an_unknown_or_impossible_id_is_not_found(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    for request_id in (new_request_id(), "req_nope", "x" * 200, "chatcmpl-" + new_request_id()):
        assert_error(await rate(client, app.auth, request_id=request_id, score=1), 404, "not_found")


async def test_a_refused_request_gave_no_answer_to_rate(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    refused = await client.post(
        "/ask", json={"prompt": "hi", "model": "not-allowed-model"}, headers=app.auth
    )
    assert refused.status_code == 400, refused.text
    request_id = refused.json()["error"]["request_id"]
    await wait_for_records(client, [request_id], token=app.token)
    assert_error(await rate(client, app.auth, request_id=request_id, score=-1), 404, "not_found")
    assert await rated(client, app, request_id) is None


async def test_a_rating_needs_a_token(client: httpx.AsyncClient, apps: Apps) -> None:
    app = await apps.add()
    request_id = await answered(client, app.auth)
    assert_error(await rate(client, {}, request_id=request_id, score=1), 401, "invalid_token")


@pytest.mark.parametrize(
    "body",
    [
        {"score": 1, "comment": "x" * 2001},
        {"score": 0},
        {"score": 2},
        {"score": True},
        {"score": 1.0},
        {"score": "1"},
        {},
        {"score": 1, "comment": 5},
        {"score": 1, "comment": "a\u0000b"},
        {"score": 1, "rating": "good"},
        {"score": 1, "request_id": None},
    ],
)
async def test_a_malformed_rating_is_refused_with_422(
    client: httpx.AsyncClient, apps: Apps, body: dict[str, Any]
) -> None:
    app = await apps.add()
    request_id = await answered(client, app.auth)
    response = await client.post(
        "/feedback", json={"request_id": request_id, **body}, headers=app.auth
    )
    error = assert_error(response, 422, "invalid_request")
    assert "Traceback" not in error["message"]
    assert await rated(client, app, request_id) is None


async def test_a_comment_of_2000_characters_is_kept_whole(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    request_id = await answered(client, app.auth)
    comment = "é" * 1999 + "\n"
    response = await rate(client, app.auth, request_id=request_id, score=-1, comment=comment)
    assert response.status_code == 204, response.text
    assert await rated(client, app, request_id) == {"score": -1, "comment": comment}


async def test_not_json_is_a_400(client: httpx.AsyncClient, apps: Apps) -> None:
    app = await apps.add()
    response = await client.post("/feedback", content=b"{score", headers=app.auth)
    assert_error(response, 400, "invalid_request")


async def test_a_browser_on_an_app_origin_may_rate(client: httpx.AsyncClient, apps: Apps) -> None:
    origin = "https://shop.example"
    app = await apps.add(origins=(origin,))
    preflight = await client.options(
        "/feedback",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    request_id = await answered(client, {**app.auth, "Origin": origin})
    response = await rate(client, {**app.auth, "Origin": origin}, request_id=request_id, score=1)
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == origin
    elsewhere = await rate(
        client, {**app.auth, "Origin": "https://evil.example"}, request_id=request_id, score=-1
    )
    assert_error(elsewhere, 403, "origin_not_allowed")
    assert await rated(client, app, request_id) == {"score": 1, "comment": None}


async def test_usage_shows_the_ratings_per_app(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app, quiet = await apps.add(), await apps.add()
    ids = [await answered(client, app.auth) for _ in range(3)]
    await answered(client, quiet.auth)
    assert (await rate(client, app.auth, request_id=ids[0], score=1)).status_code == 204
    assert (await rate(client, app.auth, request_id=ids[1], score=1)).status_code == 204
    assert (await rate(client, app.auth, request_id=ids[1], score=-1)).status_code == 204
    await wait_for_records(client, ids, token=app.token)

    report = json.loads(await gateway.cli("usage", "--app", app.name, "--json"))
    (row,) = report["apps"]
    assert (row["answers"], row["rated_up"], row["rated_down"]) == (3, 1, 1), row
    assert row["rated_share"] == pytest.approx(2 / 3)
    (unrated,) = json.loads(await gateway.cli("usage", "--app", quiet.name, "--json"))["apps"]
    assert (unrated["rated_up"], unrated["rated_down"], unrated["rated_share"]) == (0, 0, 0.0)

    table = await gateway.cli("usage", "--app", app.name)
    assert "rated up/down" in table and "1/1 (67%)" in table, table


async def test_logs_tail_shows_the_rating(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    good, bad, plain = [await answered(client, app.auth) for _ in range(3)]
    assert (await rate(client, app.auth, request_id=good, score=1)).status_code == 204
    comment = "Wrong [bold]year[/bold]\nand more"
    assert (await rate(client, app.auth, request_id=bad, score=-1, comment=comment)).is_success
    await wait_for_records(client, [good, bad, plain], token=app.token)

    lines = (await gateway.cli("logs", "tail", "--app", app.name)).splitlines()
    by_id = {rid: next(line for line in lines if rid in line) for rid in (good, bad, plain)}
    assert "rated up" in by_id[good]
    assert 'rated down "Wrong [bold]year[/bold] and more"' in by_id[bad]
    assert "rated" not in by_id[plain]
    tail = await gateway.cli("logs", "tail", "--app", app.name, "--json")
    records = {r["request_id"]: r for r in map(json.loads, tail.splitlines())}
    assert records[bad]["feedback"] == {"score": -1, "comment": comment}


async def test_ratings_are_counted_by_app_and_score(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    app = await apps.add()
    first, second = await answered(client, app.auth), await answered(client, app.auth)
    before = await scrape(gateway)
    assert before.value("orchestra_feedback_total", app=app.name, score="up") == 0
    await rate(client, app.auth, request_id=first, score=1)
    await rate(client, app.auth, request_id=second, score=1)
    await rate(client, app.auth, request_id=second, score=-1)
    assert_error(
        await rate(client, app.auth, request_id=new_request_id(), score=1), 404, "not_found"
    )
    after = await scrape(gateway)
    assert after.value("orchestra_feedback_total", app=app.name, score="up") == 2
    assert after.value("orchestra_feedback_total", app=app.name, score="down") == 1
    scores = {s["score"] for s in after.series("orchestra_feedback_total")}
    assert scores <= {"up", "down"}, scores


async def test_an_answer_is_rated_before_its_record_is_written(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps, tmp_path: Path
) -> None:
    """A replica that keeps its records buffered (a long flush interval): the rating is taken
    from the buffer at once, checked against the buffered owner, and shows once written."""
    app, other = await apps.add(), await apps.add()
    async with (
        serving_gateway(
            gateway.home,
            tmp_path,
            name="buffering",
            database_url=gateway.database_url,
            log_flush_interval_s=3600,
            log_batch_size=10_000,
        ) as buffering,
        buffering.client() as replica,
    ):
        request_id = await answered(replica, app.auth)
        assert_error(
            await rate(replica, other.auth, request_id=request_id, score=1), 404, "not_found"
        )
        response = await rate(replica, app.auth, request_id=request_id, score=-1, comment="slow")
        assert response.status_code == 204, response.text
        # Not written yet: this replica holds the record.
        assert request_id not in {r["request_id"] for r in await get_logs(client, ADMIN_TOKEN)}
    # Stopping the replica wrote its buffer.
    assert await rated(client, app, request_id) == {"score": -1, "comment": "slow"}


async def test_a_rating_waits_for_another_replicas_record(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps, tmp_path: Path
) -> None:
    """The answer streamed from a replica that writes its records every 0.6 s; the rating,
    sent at once to another replica, waits for the record instead of answering 404."""
    app = await apps.add()
    async with (
        serving_gateway(
            gateway.home,
            tmp_path,
            name="batching",
            database_url=gateway.database_url,
            log_flush_interval_s=0.6,
            log_batch_size=10_000,
        ) as batching,
        batching.client() as replica,
    ):
        request_id = await answered(replica, app.auth)
        response = await rate(client, app.auth, request_id=request_id, score=1)
        assert response.status_code == 204, response.text
        assert await rated(client, app, request_id) == {"score": 1, "comment": None}
