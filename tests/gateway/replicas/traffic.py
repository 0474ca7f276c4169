"""Traffic kept on every replica while a change is made, to time when each replica sees it.

Shared by the revocation tests (tokens, apps, end-user sessions) in this package.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import httpx

from tests.gateway.replicas.conftest import AppHandle, Proc, ask

BOUND_S = 2.0
#: After the command, how long the traffic goes on (the bound, then some).
WATCH_S = BOUND_S + 2.0


@dataclass
class Traffic:
    """Requests sent back to back to one replica: when each started, and its status."""

    replica: str
    sent: list[tuple[float, int]] = field(default_factory=list)

    async def drive(self, client: httpx.AsyncClient, app: AppHandle, until: anyio.Event) -> None:
        while not until.is_set():
            started = time.time()
            outcome = await ask(client, app, "still here? [tokens:1]", stream=False)
            self.sent.append((started, outcome.status))

    def check(self, done: float, refused: int) -> None:
        before = [s for at, s in self.sent if at < done]
        assert before and set(before) == {200}, (self.replica, before[-10:])
        answered = [at - done for at, s in self.sent if at >= done and s == 200]
        print(f"{self.replica}: last answer started at +{max(answered, default=0):.3f} s")  # noqa: T201
        late = [round(at - done, 2) for at, s in self.sent if at >= done + BOUND_S and s == 200]
        assert not late, f"{self.replica} answered {len(late)} requests started at +{late[:5]} s"
        after = {s for at, s in self.sent if at >= done + BOUND_S}
        assert after == {refused}, (self.replica, after)


class clients_for:  # noqa: N801 (an async context manager used like a function)
    def __init__(self, replicas: Sequence[Proc]) -> None:
        self._clients = [httpx.AsyncClient(base_url=r.url, timeout=30) for r in replicas]

    async def __aenter__(self) -> list[httpx.AsyncClient]:
        return self._clients

    async def __aexit__(self, *exc: object) -> None:
        for client in self._clients:
            await client.aclose()
