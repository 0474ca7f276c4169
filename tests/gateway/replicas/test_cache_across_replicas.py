"""The answer cache on Redis: what one replica kept, the others answer (#17)."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from gateway.services import apps as app_service
from tests.gateway.replicas.conftest import MODEL, Cluster

pytestmark = pytest.mark.anyio


async def test_an_answer_kept_by_one_replica_is_a_hit_on_the_others(cluster: Cluster) -> None:
    app = await cluster.add_app("cache")
    changes = app_service.AppChanges(cache_ttl_s=600)
    await cluster.with_database(lambda db: app_service.update_app(db, app.name, changes))
    marker = f"replica-cache-{secrets.token_hex(4)}"
    body = {"model": MODEL, "messages": [{"role": "user", "content": marker}]}
    seen: list[tuple[str, str]] = []
    async with httpx.AsyncClient(timeout=15) as client:
        for gateway in cluster.gateways:
            response = await client.post(
                f"{gateway.url}/v1/chat/completions", json=body, headers=app.auth
            )
            assert response.status_code == 200, response.text
            text = response.json()["choices"][0]["message"]["content"]
            seen.append((response.headers["x-orchestra-cache"], text))
        received = (await client.get(f"{cluster.fake.url}/_fake/requests")).json()
    assert [status for status, _ in seen] == ["miss", "hit", "hit"]
    assert len({text for _, text in seen}) == 1
    assert sum(marker in json.dumps(r["body"]) for r in received) == 1
