"""The typed bag of long-lived resources, opened in the lifespan and kept on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.flows.lazy import LazyWorkflows
from gateway.http.shutdown import Drain
from gateway.observability.metrics import Metrics
from gateway.observability.tracing import CallTracer
from gateway.security.keyring import Keyring
from gateway.services.answer_cache import AnswerCache
from gateway.services.answer_relay import AnswerRelay
from gateway.services.answer_streams import AnswerStreams
from gateway.services.ask import AskDeps
from gateway.services.auth_cache import AuthCache
from gateway.services.interactions import InteractionRecorder
from gateway.services.limiter import Limiter
from gateway.services.origins import KnownOrigins
from gateway.services.provider_keys import ProviderKeyCache
from gateway.settings import Settings
from gateway.storage.database import Database
from gateway.upstream.client import UpstreamClient
from gateway.upstream.resilience import CircuitBreakers

if TYPE_CHECKING:
    from redis.asyncio import Redis  # ~6 MB that a gateway on the in-memory counters skips


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    db: Database
    keyring: Keyring
    upstream: UpstreamClient
    breakers: CircuitBreakers
    recorder: InteractionRecorder
    limiter: Limiter
    auth: AuthCache
    origins: KnownOrigins
    redis: Redis | None
    metrics: Metrics
    provider_keys: ProviderKeyCache
    drain: Drain
    started_at: float
    #: The answers being streamed or kept for replay (resumable streams).
    streams: AnswerStreams
    workflows: LazyWorkflows | None = None
    #: One span per call; None without an OTLP endpoint.
    tracer: CallTracer | None = None
    #: The per-app answer cache (in memory, or on Redis when there is one).
    answer_cache: AnswerCache | None = None
    #: Answers of other replicas, through Redis (None without Redis).
    relay: AnswerRelay | None = None
    #: What every answer needs, built once.
    ask_deps: AskDeps = field(init=False)

    def __post_init__(self) -> None:
        deps = AskDeps(
            upstream=self.upstream,
            recorder=self.recorder,
            limiter=self.limiter,
            provider_keys=self.provider_keys,
            metrics=self.metrics,
            first_token_timeout=self.settings.first_token_timeout_s,
            idle_timeout=self.settings.idle_timeout_s,
            workflows=self.workflows,
        )
        object.__setattr__(self, "ask_deps", deps)  # frozen: set once, here
