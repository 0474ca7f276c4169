"""The authorization matrix: app tokens reach only their own app's data on every route; the
admin token is never an app token and an app token is never the admin.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx
import pytest

from tests.gateway.http.conftest import ADMIN_TOKEN, AppHandle
from tests.gateway.resilience.conftest import Tenants, call, record_of

pytestmark = pytest.mark.anyio

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Pair:
    a: AppHandle
    b: AppHandle
    a_request: str
    b_request: str
    conversation: str


@pytest.fixture
async def pair(client: httpx.AsyncClient, tenants: Tenants) -> Pair:
    """Two apps with one record each; B (conversation workflow) also has a thread."""
    a = await tenants.add(workflow="conversation", origins=("http://a.example.test",))
    b = await tenants.add(workflow="conversation", origins=("http://b.example.test",))
    conversation = f"conv-{secrets.token_hex(4)}"
    b_ended = await call(
        client, b, {"prompt": "B's secret question", "conversation_id": conversation}
    )
    assert b_ended.assert_typed_end() == "done"
    a_ended = await call(client, a, {"prompt": "A's question"})
    assert a_ended.assert_typed_end() == "done"
    await record_of(client, a, a_ended.request_id)
    await record_of(client, b, b_ended.request_id)
    return Pair(a, b, a_ended.request_id, b_ended.request_id, conversation)


async def _ids(client: httpx.AsyncClient, headers: dict[str, str], **params: str) -> set[str]:
    response = await client.get("/logs", params={"limit": "1000", **params}, headers=headers)
    assert response.status_code == 200, response.text
    return {r["request_id"] for r in response.json()["records"]}


async def test_an_app_token_reads_only_its_own_logs(client: httpx.AsyncClient, pair: Pair) -> None:
    a_sees = await _ids(client, pair.a.auth)
    assert pair.a_request in a_sees and pair.b_request not in a_sees
    b_sees = await _ids(client, pair.b.auth)
    assert pair.b_request in b_sees and pair.a_request not in b_sees
    assert await _ids(client, pair.a.auth, app=pair.a.name) == a_sees


@pytest.mark.parametrize("follow", [False, True], ids=["page", "follow"])
async def test_an_app_token_is_not_admin_on_logs_of_another_app(
    client: httpx.AsyncClient, pair: Pair, follow: bool
) -> None:
    params = {"app": pair.b.name, **({"follow": "true"} if follow else {})}
    response = await client.get("/logs", params=params, headers=pair.a.auth)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"
    assert pair.b_request not in response.text


async def test_the_admin_reads_every_app_and_one_app_on_request(
    client: httpx.AsyncClient, pair: Pair
) -> None:
    everything = await _ids(client, ADMIN)
    assert {pair.a_request, pair.b_request} <= everything
    only_b = await _ids(client, ADMIN, app=pair.b.name)
    assert pair.b_request in only_b and pair.a_request not in only_b


async def test_conversations_are_scoped_to_the_calling_app(
    client: httpx.AsyncClient, pair: Pair
) -> None:
    path = f"/conversations/{pair.conversation}"
    mine = await client.get(path, headers=pair.b.auth)
    assert mine.status_code == 200, mine.text
    assert "B's secret question" in mine.text

    # Another app: exactly like an unknown id (no hint that it exists).
    theirs = await client.get(path, headers=pair.a.auth)
    unknown = await client.get("/conversations/conv-never-was", headers=pair.a.auth)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["code"] == "not_found"
    assert "secret" not in theirs.text
    deleted = await client.delete(path, headers=pair.a.auth)
    assert deleted.status_code == 404

    # The same id used by A is A's own thread; B's is untouched.
    ended = await call(
        client, pair.a, {"prompt": "A reuses the id", "conversation_id": pair.conversation}
    )
    assert ended.assert_typed_end() == "done"
    a_thread = (await client.get(path, headers=pair.a.auth)).json()
    assert "B's secret question" not in str(a_thread["messages"])
    b_thread = (await client.get(path, headers=pair.b.auth)).json()
    assert "A reuses the id" not in str(b_thread["messages"])
    assert "B's secret question" in str(b_thread["messages"])


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/ask", {"prompt": "hi"}),
        ("POST", "/ask", {"prompt": "hi", "stream": False}),
        (
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        ),
        ("GET", "/v1/models", None),
        ("GET", "/conversations/anything", None),
        ("DELETE", "/conversations/anything", None),
    ],
)
async def test_the_admin_token_is_not_an_app_token(
    client: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    response = await client.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_token"


async def test_other_secrets_are_not_tokens_either(client: httpx.AsyncClient, pair: Pair) -> None:
    assert pair.a.provider_key is not None
    for secret in (pair.a.provider_key, pair.a.token[:-1], pair.a.token + "x", pair.a.token_id):
        response = await client.post(
            "/ask", json={"prompt": "hi"}, headers={"Authorization": f"Bearer {secret}"}
        )
        assert response.status_code == 401, (secret[:6], response.text)
        assert response.json()["error"]["code"] == "invalid_token"
        # ...and none of them is the admin either.
        logs = await client.get("/logs", headers={"Authorization": f"Bearer {secret}"})
        assert logs.status_code == 401, logs.text


async def test_an_app_token_from_another_apps_origin_is_refused(
    client: httpx.AsyncClient, pair: Pair
) -> None:
    response = await client.post(
        "/ask", json={"prompt": "hi"}, headers={**pair.a.auth, "Origin": "http://b.example.test"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"


async def test_status_shows_the_callers_app_only(client: httpx.AsyncClient, pair: Pair) -> None:
    body = (await client.get("/status", headers=pair.a.auth)).json()
    assert body["app"]["name"] == pair.a.name
    assert pair.b.name not in str(body)
    assert "app" not in (await client.get("/status", headers=ADMIN)).json()
