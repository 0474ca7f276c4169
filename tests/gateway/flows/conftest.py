"""Real servers for the workflow tests: the HTTP suite's fixtures, with a small token budget.

The fixtures (``gateway``, ``fake``, ``slow_fake``, ``client``, ``apps``) are the HTTP suite's,
imported as they are; only ``servers`` is redefined, to start the session gateway with a
``conversation_token_budget`` small enough for the trimming tests to reach it in a few turns.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gateway.flows.checkpoints import open_checkpoints
from gateway.flows.runner import Runner, RunnerSettings
from gateway.services import apps as app_service
from tests.gateway.flows.doubles import WordModerator, request
from tests.gateway.http.conftest import (
    AppHandle,
    Apps,
    Fake,
    Gateway,
    Servers,
    apps,
    client,
    fake,
    gateway,
    issued_secrets,
    poll,
    slow_fake,
    start_servers,
)
from tests.support.upstream import ScriptedUpstream

__all__ = ["apps", "client", "fake", "gateway", "issued_secrets", "slow_fake"]

#: The session gateway's conversation_token_budget (prompt tokens sent upstream per answer).
TOKEN_BUDGET = 400
#: The in-process runner's budget.
IN_PROCESS_BUDGET = 1000


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("flows")
    with start_servers(root, conversation_token_budget=TOKEN_BUDGET) as started:
        yield started


async def set_workflow(gw: Gateway, app: AppHandle, workflow: str) -> None:
    await gw.with_database(
        lambda db: app_service.update_app(db, app.name, app_service.AppChanges(workflow=workflow))
    )


async def add_app(apps: Apps, workflow: str, fake: Fake | None = None, **options: Any) -> AppHandle:
    """A new app bound to ``workflow`` (before its token was ever used, so no cache is stale)."""
    app = await apps.add(fake, **options)
    await set_workflow(apps.gateway, app, workflow)
    return app


async def chat_requests(fake: Fake, marker: str) -> list[dict[str, Any]]:
    """The chat (not moderation) requests the fake received whose body mentions ``marker``."""
    return [r for r in await fake.requests_with(marker) if r["path"].endswith("/chat/completions")]


async def moderation_requests(fake: Fake, marker: str) -> list[dict[str, Any]]:
    return [r for r in await fake.requests_with(marker) if r["path"].endswith("/moderations")]


async def last_chat_request(fake: Fake, marker: str) -> dict[str, Any]:
    """The newest chat request mentioning ``marker`` (waits for one briefly)."""
    found = await poll(lambda: chat_requests(fake, marker), lambda rs: len(rs) > 0)
    return found[-1]


def sent_messages(record: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = record["body"]["messages"]
    return messages


async def ask_json(
    client: httpx.AsyncClient, app: AppHandle, body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post("/ask", json={**body, "stream": False}, headers=app.auth)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def thread_of(
    client: httpx.AsyncClient, app: AppHandle, conversation_id: str
) -> httpx.Response:
    return await client.get(f"/conversations/{conversation_id}", headers=app.auth)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# --- in process: a Runner on a SQLite checkpointer, with the scripted upstream ---------------


@dataclass
class InProcess:
    runner: Runner
    upstream: ScriptedUpstream
    moderator: WordModerator

    async def answer(
        self,
        workflow: str,
        *messages: dict[str, str],
        app_id: str = "app_1",
        conversation_id: str | None = "c1",
    ) -> list[str]:
        """Run ``workflow`` to its end; the texts of the chunks it streamed."""
        stream = await self.runner.open_stream(
            workflow, request(*messages), app_id=app_id, conversation_id=conversation_id
        )
        texts = []
        try:
            while (item := await stream.next_chunk(5)) is not None:
                texts.append(item.text)
        finally:
            await stream.aclose()
        return texts


@pytest.fixture
async def in_process(tmp_path: Path) -> AsyncIterator[InProcess]:
    checkpoints = await open_checkpoints(
        f"sqlite+aiosqlite:///{tmp_path / 'orchestra.db'}", schema=None
    )
    upstream = ScriptedUpstream()
    moderator = WordModerator()
    runner = Runner(
        upstream=upstream,
        moderator=moderator,
        checkpointer=checkpoints.saver,
        settings=RunnerSettings(
            first_token_timeout=5, idle_timeout=5, token_budget=IN_PROCESS_BUDGET
        ),
    )
    try:
        async with anyio.create_task_group() as tasks:
            await tasks.start(runner.run)
            yield InProcess(runner, upstream, moderator)
            tasks.cancel_scope.cancel()
    finally:
        await checkpoints.close()
