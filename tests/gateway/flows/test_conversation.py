"""The conversation workflow over real sockets: the gateway process, the fake, the database.

What the upstream received is read back from the fake (``GET /_fake/requests``), so each
assertion is on the bytes that left the gateway, not on its own account of them.
"""

from __future__ import annotations

import itertools
import json
import secrets
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

from gateway.security.keyring import generate_master_key
from gateway.services import quotas as quota_service
from gateway.services.views import QuotaLimits
from gateway.storage.database import Database
from gateway.upstream.tokenizer import count_messages
from tests.conftest import POSTGRES_URL, PostgresSchema
from tests.gateway.flows.conftest import (
    TOKEN_BUDGET,
    add_app,
    ask_json,
    chat_requests,
    last_chat_request,
    sent_messages,
    set_workflow,
    thread_of,
)
from tests.gateway.http.conftest import (
    FAST_FAKE_TOKENS,
    MODEL,
    SLOW_FAKE_TOKEN_MS,
    AppHandle,
    Apps,
    Fake,
    Gateway,
    ask_stream,
    assert_error,
    child_env,
    get_logs,
    poll,
    run_cli,
    serving_gateway,
    sse_events,
    wait_for_records,
)

pytestmark = pytest.mark.anyio


def marker(name: str = "m") -> str:
    return f"{name}-{secrets.token_hex(5)}"


def conversation_id() -> str:
    return f"conv-{secrets.token_hex(6)}"


async def exchange(
    client: httpx.AsyncClient, fake: Fake, app: AppHandle, cid: str, prompt: str
) -> tuple[str, list[dict[str, Any]]]:
    """One streamed /ask in the conversation: the answer's text and what the fake was sent."""
    streamed = await ask_stream(client, app, {"prompt": prompt, "conversation_id": cid})
    assert streamed.names[-1] == "done", streamed.names
    return streamed.text, sent_messages(await last_chat_request(fake, prompt))


async def test_a_second_ask_sends_the_first_exchange_upstream(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await add_app(apps, "conversation", system_prompt="You are terse.")
    cid = conversation_id()
    first, second = f"Hello {marker()}", f"And then? {marker()}"
    answer, sent = await exchange(client, fake, app, cid, first)
    assert sent == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": first},
    ]
    _, sent = await exchange(client, fake, app, cid, second)
    assert sent == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": first},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": second},
    ]


async def test_get_returns_the_thread_newest_last_and_delete_removes_it(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await add_app(apps, "conversation", system_prompt="Never saved.")
    cid = conversation_id()
    prompts = [f"one {marker()}", f"two {marker()}"]
    answers = [(await exchange(client, fake, app, cid, p))[0] for p in prompts]

    response = await thread_of(client, app, cid)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "conversation_id": cid,
        "messages": [
            {"role": "user", "content": prompts[0]},
            {"role": "assistant", "content": answers[0]},
            {"role": "user", "content": prompts[1]},
            {"role": "assistant", "content": answers[1]},
        ],
    }

    deleted = await client.delete(f"/conversations/{cid}", headers=app.auth)
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    assert_error(await thread_of(client, app, cid), 404, "not_found")
    assert_error(await client.delete(f"/conversations/{cid}", headers=app.auth), 404, "not_found")
    # The same id again starts a new thread: nothing of the old one is sent.
    fresh = f"three {marker()}"
    _, sent = await exchange(client, fake, app, cid, fresh)
    assert sent[1:] == [{"role": "user", "content": fresh}]


async def test_the_conversation_routes_need_the_app_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/conversations/x"), 401, "invalid_token")
    assert_error(await client.delete("/conversations/x"), 401, "invalid_token")
    bad = {"Authorization": "Bearer orc_nope"}
    assert_error(await client.get("/conversations/x", headers=bad), 401, "invalid_token")


async def test_threads_are_isolated_between_apps(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    alice = await add_app(apps, "conversation")
    bob = await add_app(apps, "conversation")
    cid = conversation_id()
    secret = f"alice's secret {marker()}"
    await exchange(client, fake, alice, cid, secret)

    # Another app naming the same id sees nothing, and cannot remove it.
    assert_error(await thread_of(client, bob, cid), 404, "not_found")
    assert_error(await client.delete(f"/conversations/{cid}", headers=bob.auth), 404, "not_found")
    assert (await thread_of(client, alice, cid)).status_code == 200

    # The same conversation_id in the other app is another thread.
    bobs = f"bob's question {marker()}"
    _, sent = await exchange(client, fake, bob, cid, bobs)
    assert sent == [{"role": "user", "content": bobs}]
    assert secret not in str(sent)
    alices = (await thread_of(client, alice, cid)).json()["messages"]
    assert [m["content"] for m in alices if m["role"] == "user"] == [secret]


async def test_trimming_keeps_the_newest_turns_within_the_budget(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await add_app(apps, "conversation", system_prompt="Be brief.")
    cid = conversation_id()
    filler = " ".join(["padding"] * 40)  # about 45 tokens a turn with the answer
    prompts = [f"turn {i} {marker()} {filler}" for i in range(12)]
    sent: list[dict[str, Any]] = []
    for prompt in prompts:
        _, sent = await exchange(client, fake, app, cid, prompt)
        assert count_messages(sent, MODEL) <= TOKEN_BUDGET

    thread = (await thread_of(client, app, cid)).json()["messages"]
    assert len(thread) == 2 * len(prompts)  # the thread keeps everything...
    history = sent[1:-1]  # ...but the last request carried only its newest turns:
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[-1] == {"role": "user", "content": prompts[-1]}
    assert 2 <= len(history) < len(thread) - 2
    assert history == thread[len(thread) - 2 - len(history) : -2]  # the newest, in order
    assert history[0]["role"] == "user"  # whole turns
    # And the next older turn would not have fitted.
    older = thread[len(thread) - 2 - len(history) - 2 : len(thread) - 2 - len(history)]
    assert count_messages([*sent, *older], MODEL) - count_messages([], MODEL) > TOKEN_BUDGET


async def test_deltas_arrive_incrementally_through_the_graph(
    client: httpx.AsyncClient, apps: Apps, slow_fake: Fake
) -> None:
    app = await add_app(apps, "conversation", slow_fake)
    tokens = 20
    streamed = await ask_stream(
        client,
        app,
        {"prompt": f"Count with me [tokens:{tokens}]", "conversation_id": conversation_id()},
    )
    deltas = [e for e in streamed.events if e.name == "delta"]
    assert len(deltas) == tokens
    spread = deltas[-1].at - deltas[0].at
    generation = (tokens - 1) * SLOW_FAKE_TOKEN_MS / 1000
    assert spread >= 0.6 * generation, [round(d.at - streamed.started, 3) for d in deltas]
    first_half = [d for d in deltas if d.at - deltas[0].at < spread / 2]
    assert 3 <= len(first_half) <= tokens - 3
    assert all(b.at >= a.at for a, b in itertools.pairwise(deltas))


async def test_usage_and_records_have_the_shape_of_the_direct_path(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    direct = await apps.add()
    conv = await add_app(apps, "conversation")
    cid = conversation_id()
    await exchange(client, fake, conv, cid, f"warm up {marker()}")
    streams = {}
    for name, app in (("direct", direct), ("conversation", conv)):
        prompt = f"measure {marker()}"
        streams[name] = await ask_stream(client, app, {"prompt": prompt, "conversation_id": cid})
        assert streams[name].names == ["delta"] * FAST_FAKE_TOKENS + ["done"]
    done = {name: s.events[-1].json for name, s in streams.items()}
    assert set(done["direct"]) == set(done["conversation"])
    usage = done["conversation"]["usage"]
    # The prompt tokens are the upstream's count of what it was sent: the history included.
    assert usage["prompt_tokens"] > done["direct"]["usage"]["prompt_tokens"]
    assert usage["completion_tokens"] == FAST_FAKE_TOKENS

    records = await wait_for_records(client, [s.request_id for s in streams.values()])
    by_id = {r["request_id"]: r for r in records}
    rec = {name: by_id[s.request_id] for name, s in streams.items()}
    assert set(rec["direct"]) == set(rec["conversation"])
    assert rec["direct"]["workflow"] == "direct"
    assert rec["conversation"]["workflow"] == "conversation"
    assert rec["conversation"]["outcome"] == "completed"
    assert rec["conversation"]["prompt_tokens"] == usage["prompt_tokens"]
    assert rec["conversation"]["completion_tokens"] == usage["completion_tokens"]
    assert rec["conversation"]["ttft_ms"] is not None
    own = await get_logs(client, conv.token)
    assert {r["request_id"] for r in own} >= {streams["conversation"].request_id}


async def test_quotas_apply_as_on_the_direct_path(
    client: httpx.AsyncClient, apps: Apps, fake: Fake, gateway: Gateway
) -> None:
    app = await add_app(apps, "conversation")
    await gateway.with_database(
        lambda db: quota_service.set_quota(db, app_name=app.name, changes=QuotaLimits(rpm=1))
    )
    cid = conversation_id()
    await exchange(client, fake, app, cid, f"allowed {marker()}")
    refused = await client.post(
        "/ask", json={"prompt": f"refused {marker()}", "conversation_id": cid}, headers=app.auth
    )
    assert_error(refused, 429, "quota_exceeded")
    records = await wait_for_records(client, [refused.headers["x-request-id"]])
    record = next(r for r in records if r["request_id"] == refused.headers["x-request-id"])
    assert record["error_code"] == "quota_exceeded"


async def test_a_json_answer_continues_the_thread_too(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await add_app(apps, "conversation")
    cid = conversation_id()
    first = f"json one {marker()}"
    data = await ask_json(client, app, {"prompt": first, "conversation_id": cid})
    assert set(data) == {"request_id", "text", "finish_reason", "model", "usage"}
    assert data["usage"]["completion_tokens"] == FAST_FAKE_TOKENS
    second = f"json two {marker()}"
    await ask_json(client, app, {"prompt": second, "conversation_id": cid})
    sent = sent_messages(await last_chat_request(fake, second))
    assert sent == [
        {"role": "user", "content": first},
        {"role": "assistant", "content": data["text"]},
        {"role": "user", "content": second},
    ]


async def test_an_upstream_error_is_the_direct_paths_and_leaves_the_thread_alone(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await add_app(apps, "conversation")
    cid = conversation_id()
    await exchange(client, fake, app, cid, f"fine {marker()}")
    # Once: the upstream's retries count towards its circuit breaker, shared by this session.
    failed = await client.post(
        "/ask", json={"prompt": "[fail:503]", "conversation_id": cid}, headers=app.auth
    )
    assert_error(failed, 503, "upstream_unavailable")
    assert len((await thread_of(client, app, cid)).json()["messages"]) == 2


async def test_without_a_conversation_id_no_thread_is_used(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await add_app(apps, "conversation")
    await ask_stream(client, app, {"prompt": f"alone {marker()}"})
    second = f"alone again {marker()}"
    await ask_stream(client, app, {"prompt": second})
    assert sent_messages(await last_chat_request(fake, second)) == [
        {"role": "user", "content": second}
    ]


async def test_the_openai_route_streams_through_the_workflow(
    client: httpx.AsyncClient, apps: Apps, fake: Fake
) -> None:
    app = await add_app(apps, "conversation")
    prompt = f"v1 {marker()}"
    async with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": MODEL, "stream": True, "messages": [{"role": "user", "content": prompt}]},
        headers=app.auth,
    ) as response:
        assert response.status_code == 200
        body = (await response.aread()).decode()
    data = [block.removeprefix("data: ") for block in body.strip().split("\n\n")]
    assert data[-1] == "[DONE]"
    texts = [
        choice["delta"].get("content") or ""
        for chunk in map(json.loads, data[:-1])
        for choice in chunk["choices"]
    ]
    assert len([t for t in texts if t]) == FAST_FAKE_TOKENS
    assert len(await chat_requests(fake, prompt)) == 1


async def test_a_client_that_leaves_stops_the_upstream_and_saves_nothing(
    client: httpx.AsyncClient, apps: Apps, slow_fake: Fake
) -> None:
    app = await add_app(apps, "conversation", slow_fake)
    cid = conversation_id()
    prompt = f"long answer {marker()} [tokens:200]"
    async with client.stream(
        "POST", "/ask", json={"prompt": prompt, "conversation_id": cid}, headers=app.auth
    ) as response:
        assert response.status_code == 200
        seen = 0
        async for event in sse_events(response):
            seen += event.name == "delta"
            if seen == 3:
                break
        request_id = response.headers["x-request-id"]

    async def upstream_record() -> dict[str, Any]:
        return (await chat_requests(slow_fake, prompt))[0]

    record = await poll(upstream_record, lambda r: r["status"] != "in_progress")
    assert record["status"] == "cancelled"
    assert record["chunks_sent"] < 200
    logs = await wait_for_records(client, [request_id])
    assert next(r for r in logs if r["request_id"] == request_id)["outcome"] == (
        "client_disconnected"
    )
    assert_error(await thread_of(client, app, cid), 404, "not_found")


# --- its own gateway processes: restarts, PostgreSQL ---------------------------------------


async def _init_home(home: Path) -> None:
    await anyio.to_thread.run_sync(run_cli, ["init"], child_env({"home": home}))


async def test_threads_survive_a_gateway_restart(tmp_path: Path, fake: Fake) -> None:
    home, logs = tmp_path / "home", tmp_path / "logs"
    await _init_home(home)
    settings = {"database_url": f"sqlite+aiosqlite:///{home}/orchestra.db"}
    cid = conversation_id()
    first = f"before the restart {marker()}"
    async with serving_gateway(home, logs, name="gw-1", **settings) as gw:
        apps = Apps(gw, fake, set(), "restart")
        app = await apps.add()
        await set_workflow(gw, app, "conversation")
        async with gw.client() as http:
            answer, _ = await exchange(http, fake, app, cid, first)
    second = f"after the restart {marker()}"
    async with serving_gateway(home, logs, name="gw-2", **settings) as gw, gw.client() as http:
        _, sent = await exchange(http, fake, app, cid, second)
        assert sent == [
            {"role": "user", "content": first},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": second},
        ]
        assert len((await thread_of(http, app, cid)).json()["messages"]) == 4


@pytest.mark.postgres
async def test_conversations_on_postgresql(
    tmp_path: Path, fake: Fake, postgres_schema: PostgresSchema
) -> None:
    await postgres_schema.migrate()
    settings = {
        "database_url": POSTGRES_URL,
        "database_schema": postgres_schema.name,
        "master_key": generate_master_key(),
    }
    cid = conversation_id()
    first, second = f"pg one {marker()}", f"pg two {marker()}"
    async with serving_gateway(tmp_path / "home", tmp_path / "logs", name="pg", **settings) as gw:
        apps = Apps(gw, fake, set(), "pg")
        app, other = await apps.add(), await apps.add()
        for each in (app, other):
            await set_workflow(gw, each, "conversation")
        async with gw.client() as http:
            answer, _ = await exchange(http, fake, app, cid, first)
            _, sent = await exchange(http, fake, app, cid, second)
            assert sent == [
                {"role": "user", "content": first},
                {"role": "assistant", "content": answer},
                {"role": "user", "content": second},
            ]
            assert len((await thread_of(http, app, cid)).json()["messages"]) == 4
            assert_error(await thread_of(http, other, cid), 404, "not_found")
            assert (await http.delete(f"/conversations/{cid}", headers=app.auth)).status_code == 204
            assert_error(await thread_of(http, app, cid), 404, "not_found")
    # The checkpointer's tables are in the gateway's schema, nowhere else.
    db = Database.open(POSTGRES_URL, schema=postgres_schema.name)
    try:
        async with db.engine.connect() as connection:
            rows = await connection.execute(
                sa.text(
                    "SELECT table_schema FROM information_schema.tables "
                    "WHERE table_name = 'checkpoints'"
                )
            )
            schemas = {row[0] for row in rows}
    finally:
        await db.close()
    assert postgres_schema.name in schemas
