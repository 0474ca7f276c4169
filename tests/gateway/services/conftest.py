"""Apps for the service tests, registered through the service under test; the answer rig.

The rig runs ``services.ask.Answer`` on the scripted upstream (tests/support/upstream.py) with
real parts around it: the provider key decrypted from a real database, a real Limiter on
MemoryCounters (whose settlements ``SettleLog`` counts), a real InteractionRecorder. Its
records are read back from the database (the tests using it run on SQLite).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.core.pricing import PriceTable
from gateway.core.quota_policy import Calendar
from gateway.security.keyring import Keyring, generate_master_key
from gateway.services import apps
from gateway.services.ask import Answer, AskDeps, AskInput, CallMeta
from gateway.services.interactions import InteractionRecorder
from gateway.services.limiter import Limiter
from gateway.services.provider_keys import ProviderKeyCache
from gateway.services.tokens import AppContext
from gateway.services.views import QuotaLimits
from gateway.storage.counters.memory import MemoryCounters
from gateway.storage.database import Database
from tests.support.upstream import ScriptedUpstream

DEFAULTS = apps.AppDefaults(
    model="gpt-4o-mini", base_url="https://api.openai.com/v1", max_output_tokens=1024
)


async def register(
    db: Database,
    name: str,
    *,
    keyring: Keyring | None = None,
    provider_key: str | None = None,
    changes: apps.AppChanges | None = None,
) -> apps.RegisteredApp:
    return await apps.register_app(
        db,
        keyring,
        name=name,
        changes=changes or apps.AppChanges(),
        defaults=DEFAULTS,
        provider_key=provider_key,
    )


@pytest.fixture
def master_key() -> str:
    return generate_master_key()


@pytest.fixture
def keyring(master_key: str) -> Keyring:
    return Keyring([master_key])


MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Tell me three things."}]
#: Admits every request; the reservation holds max_tokens (no token limit: no tokenizer).
HARD_CAP = QuotaLimits(rpm=1000, soft_cap=False)
SOFT_CAP = QuotaLimits(rpm=1000, soft_cap=True)


class SettleLog(MemoryCounters):
    """Real in-memory counters that also keep every settlement they were asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.settled: list[tuple[str, int]] = []

    async def settle(
        self,
        app_id: str,
        reservation_id: str,
        *,
        tokens: int,
        cost_micros: int,
        now: float,
        calendar: Calendar,
        user: str | None = None,
    ) -> None:
        self.settled.append((reservation_id, tokens))
        await super().settle(
            app_id,
            reservation_id,
            tokens=tokens,
            cost_micros=cost_micros,
            now=now,
            calendar=calendar,
            user=user,
        )


@dataclass
class Rig:
    database: Database
    deps: AskDeps
    upstream: ScriptedUpstream
    counters: SettleLog
    ctx: AppContext
    answers: list[Answer] = field(default_factory=list)

    def answer(self, quota: QuotaLimits = HARD_CAP, **inp: Any) -> Answer:
        inp.setdefault("messages", MESSAGES)
        meta = CallMeta(f"req_{len(self.answers)}", "/ask", None, time.perf_counter())
        answer = Answer(self.deps, replace(self.ctx, limits=quota), AskInput(**inp), meta)
        self.answers.append(answer)
        return answer

    async def records(self) -> list[dict[str, Any]]:
        await self.deps.recorder.flush()
        async with self.database.engine.connect() as connection:
            rows = await connection.execute(
                sa.text(
                    "SELECT request_id, outcome, http_status, error_code, prompt_tokens,"
                    " completion_tokens FROM request_logs ORDER BY request_id"
                )
            )
            return [dict(row) for row in rows.mappings().all()]

    async def record(self) -> dict[str, Any]:
        """The one record of the one answer."""
        records = await self.records()
        assert len(records) == 1, records
        return records[0]

    def settled_once(self, tokens: int) -> None:
        assert [t for _, t in self.counters.settled] == [tokens]
        assert self.deps.limiter.leases.held == 0


@pytest.fixture
async def rig(database: Database, keyring: Keyring) -> Rig:
    app = (await register(database, "demo", keyring=keyring, provider_key="sk-scripted")).app
    upstream = ScriptedUpstream()
    counters = SettleLog()
    deps = AskDeps(
        upstream=upstream,
        recorder=InteractionRecorder(database),
        limiter=Limiter(counters, PriceTable({}), ttl=60),
        provider_keys=ProviderKeyCache(database, keyring, ttl=60),
        first_token_timeout=5,
        idle_timeout=5,
    )
    ctx = AppContext(
        app_id=app.id,
        app_name="demo",
        token_id="tok_1",
        origins=(),
        model=MODEL,
        allowed_models=(MODEL,),
        base_url="http://upstream.test/v1",
        system_prompt=None,
        max_output_tokens=1024,
        log_content="metadata",
    )
    return Rig(database, deps, upstream, counters, ctx)
