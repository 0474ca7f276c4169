"""End users' sessions across three replicas: revocation and secret rotation (issue #14).

Sessions are minted on replica A and then used back to back on all three replicas (each
request's start time and status recorded) while `orchestra sessions revoke` or `orchestra
sessions rotate-secret` runs as a separate process. Every request of a revoked session that
*starts* more than 2 s after the revocation (its ``revoked_before`` in the database; wall
clock, same machine) must be refused, on every replica; every other session must be answered
throughout. A secret rotation without ``--revoke`` refuses nothing, and a session minted on
replica B right after it is accepted by A and C at once.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import anyio
import httpx
import pytest

from gateway.storage import sessions as session_rows
from gateway.storage.database import Database
from gateway.storage.tables import utcnow
from tests.gateway.replicas.conftest import ORCHESTRA, AppHandle, Cluster, Proc, ask
from tests.gateway.replicas.traffic import WATCH_S, Traffic, clients_for

pytestmark = pytest.mark.anyio

USERS = ("alice", "bob")


async def mint(client: httpx.AsyncClient, app: AppHandle, user: str) -> AppHandle:
    """A session of ``user`` minted on this replica, as a handle whose bearer is the session."""
    response = await client.post("/sessions", json={"user": user}, headers=app.auth)
    assert response.status_code == 201, response.text
    return AppHandle(app.name, app.id, response.json()["token"])


def kid_of(session: AppHandle) -> str:
    header = session.token.split(".")[0]
    decoded: dict[str, str] = json.loads(
        base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    )
    return decoded["kid"]


async def orchestra(args: Sequence[str], env: Mapping[str, str]) -> str:
    result = await anyio.run_process([str(ORCHESTRA), *args], env=dict(env), check=False)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout.decode()


async def revoked_before(cluster: Cluster, app: AppHandle) -> float:
    """When the app's newest session revocation took effect (its time in the database)."""

    async def newest(db: Database) -> float:
        async with db.read() as session:
            rows = await session_rows.live_revocations(session, app.id, utcnow())
        assert rows, "no revocation was stored"
        return max(row.revoked_before.timestamp() for row in rows)

    return await cluster.with_database(newest)


async def sessions_under_traffic(
    replicas: Sequence[Proc],
    sessions: Mapping[str, AppHandle],
    command: Sequence[str],
    env: Mapping[str, str],
    then: Callable[[list[httpx.AsyncClient]], Awaitable[None]] | None = None,
) -> dict[str, list[Traffic]]:
    """Keep every replica busy with every session while ``command`` runs (then ``then``),
    and 4 s after; by user, one ``Traffic`` per replica."""
    traffic = {user: [Traffic(f"{r.name}/{user}") for r in replicas] for user in sessions}
    stop = anyio.Event()
    async with clients_for(replicas) as clients, anyio.create_task_group() as tasks:
        for user, session in sessions.items():
            for client, one in zip(clients, traffic[user], strict=True):
                tasks.start_soon(one.drive, client, session, stop)
        await anyio.sleep(1.5)  # every replica's entry for the app is older than a reload
        await orchestra(command, env)
        if then is not None:
            await then(clients)
        await anyio.sleep(WATCH_S)
        stop.set()
    return traffic


def answered_throughout(traffic: Sequence[Traffic]) -> None:
    for one in traffic:
        statuses = [status for _, status in one.sent]
        assert len(statuses) >= 5 and set(statuses) == {200}, (one.replica, statuses[-10:])


async def _minted_on_a(cluster: Cluster, label: str) -> tuple[AppHandle, dict[str, AppHandle]]:
    app = await cluster.add_app(label)
    async with httpx.AsyncClient(base_url=cluster.gateways[0].url, timeout=30) as replica_a:
        sessions = {user: await mint(replica_a, app, user) for user in USERS}
    return app, sessions


@pytest.mark.parametrize("announced", [True, False], ids=["redis", "polling-only"])
async def test_revoking_one_user_reaches_every_replica_within_2_s(
    cluster: Cluster, announced: bool
) -> None:
    app, sessions = await _minted_on_a(cluster, "revoke-user")
    env = cluster.env
    if not announced:  # the CLI cannot announce: the replicas learn of it by polling
        env = {k: v for k, v in env.items() if k != "ORCHESTRA_REDIS_URL"}
    traffic = await sessions_under_traffic(
        cluster.gateways, sessions, ["sessions", "revoke", app.name, "--user", "alice"], env
    )
    done = await revoked_before(cluster, app)
    for one in traffic["alice"]:
        one.check(done, 401)
    answered_throughout(traffic["bob"])


async def test_revoking_every_session_reaches_every_replica_within_2_s(
    cluster: Cluster,
) -> None:
    app, sessions = await _minted_on_a(cluster, "revoke-all")
    traffic = await sessions_under_traffic(
        cluster.gateways, sessions, ["sessions", "revoke", app.name, "--all"], cluster.env
    )
    done = await revoked_before(cluster, app)
    for user in USERS:
        for one in traffic[user]:
            one.check(done, 401)
    async with clients_for(cluster.gateways) as clients:
        for client in clients:  # the app's own token is not a session
            assert (await ask(client, app, "app token [tokens:1]", stream=False)).status == 200


async def test_rotating_the_secret_keeps_old_sessions_and_new_ones_work_everywhere(
    cluster: Cluster,
) -> None:
    app, sessions = await _minted_on_a(cluster, "rotate")
    fresh: list[tuple[str, int]] = []

    async def mint_on_b_use_on_a_and_c(clients: list[httpx.AsyncClient]) -> None:
        replica_a, replica_b, replica_c = clients
        session = await mint(replica_b, app, "carol")
        assert kid_of(session) != kid_of(sessions["alice"])  # signed with the new secret
        for name, client in (("A", replica_a), ("C", replica_c)):
            outcome = await ask(client, session, "fresh [tokens:1]", stream=False)
            fresh.append((name, outcome.status))

    traffic = await sessions_under_traffic(
        cluster.gateways,
        sessions,
        ["sessions", "rotate-secret", app.name],
        cluster.env,
        then=mint_on_b_use_on_a_and_c,
    )
    assert fresh == [("A", 200), ("C", 200)]
    for user in USERS:
        answered_throughout(traffic[user])


async def test_rotating_the_secret_with_revoke_ends_old_sessions_everywhere_within_2_s(
    cluster: Cluster,
) -> None:
    app, sessions = await _minted_on_a(cluster, "rotate-revoke")
    traffic = await sessions_under_traffic(
        cluster.gateways, sessions, ["sessions", "rotate-secret", app.name, "--revoke"], cluster.env
    )
    done = await revoked_before(cluster, app)
    for user in USERS:
        for one in traffic[user]:
            one.check(done, 401)
    await anyio.sleep(max(0.0, done + 1.1 - time.time()))  # revocation is by the second
    async with clients_for(cluster.gateways) as clients:
        session = await mint(clients[1], app, "alice")
        for client in clients:
            assert (await ask(client, session, "again [tokens:1]", stream=False)).status == 200
