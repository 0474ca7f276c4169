"""The scenarios: what load, against which route and quota backend, for how long.

Names read ``ROUTE-MODE-TOKENMSms-cCONCURRENCY-BACKEND``, e.g. ``ask-stream-20ms-c200-memory``:
ROUTE ``ask`` (``POST /ask``) or ``v1`` (``POST /v1/chat/completions``), MODE ``stream`` or
``json`` (non-streaming), TOKENMS the fake's delay between tokens, BACKEND the gateway's quota
backend (``memory``, or ``redis`` with ``ORCHESTRA_REDIS_URL`` set). ``streams1000-memory`` holds
1,000 slow streams open at once. The direct equivalent of every scenario is the fake's own
``/v1/chat/completions`` with the same mode, timing and concurrency; it depends on neither the
route nor the backend, so it is measured once per run and shared.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Literal

Route = Literal["ask", "v1"]
Backend = Literal["memory", "redis"]

TOKENS = 50
ROUTES: tuple[Route, ...] = ("ask", "v1")
BACKENDS: tuple[Backend, ...] = ("memory", "redis")
TOKEN_MS = (0, 20)
CONCURRENCY = (1, 10, 50, 200)
MODEL = "gpt-4o-mini"
FAKE_KEY = "sk-bench"
SLOW_STREAMS = 1000
SLOW_TOKEN_MS = 200  # 50 tokens: every stream stays open about 10 s


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    route: Route
    stream: bool
    token_ms: int
    concurrency: int
    backend: Backend
    warmup_s: float
    measure_s: float
    hold: bool = False  # the slow-streams scenario: one request per connection, all open at once
    tokens: int = TOKENS

    @property
    def mode(self) -> str:
        return "stream" if self.stream else "json"

    @property
    def direct_key(self) -> tuple[object, ...]:
        """Scenarios with the same key share one direct measurement."""
        return (self.mode, self.token_ms, self.concurrency, self.hold, self.tokens)

    def prompt(self) -> str:
        return f"Benchmark prompt: tell me something. [token-ms:{self.token_ms}]"

    def direct_body(self) -> bytes:
        return _v1_body(self.prompt(), self.stream)

    def gateway_request(self) -> tuple[str, bytes]:
        """``(path, body)`` of the request sent through the gateway."""
        if self.route == "v1":
            return "/v1/chat/completions", _v1_body(self.prompt(), self.stream)
        body: dict[str, object] = {"prompt": self.prompt()}
        if not self.stream:
            body["stream"] = False
        return "/ask", json.dumps(body).encode()

    @property
    def expect_gateway(self) -> Literal["ask", "v1", "json"]:
        if not self.stream:
            return "json"
        return "ask" if self.route == "ask" else "v1"

    @property
    def expect_direct(self) -> Literal["v1", "json"]:
        return "v1" if self.stream else "json"


def _v1_body(prompt: str, stream: bool) -> bytes:
    body: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def _durations(token_ms: int, concurrency: int, quick: bool) -> tuple[float, float]:
    """``(warm-up, measurement)`` seconds: long enough for a few hundred answers, or for
    20 ms streams (one answer takes about 1 s) for the pipeline to fill and turn over."""
    if token_ms == 0:
        return (0.5, 2.5) if quick else (1.0, 4.0)
    if concurrency == 1:
        return (1.5, 5.0) if quick else (2.0, 10.0)
    return (1.5, 4.0) if quick else (2.0, 6.0)


def load_scenario(
    route: Route, stream: bool, token_ms: int, concurrency: int, backend: Backend, quick: bool
) -> Scenario:
    warmup, measure = _durations(token_ms, concurrency, quick)
    mode = "stream" if stream else "json"
    return Scenario(
        name=f"{route}-{mode}-{token_ms}ms-c{concurrency}-{backend}",
        route=route,
        stream=stream,
        token_ms=token_ms,
        concurrency=concurrency,
        backend=backend,
        warmup_s=warmup,
        measure_s=measure,
    )


def streams_scenario(backend: Backend, quick: bool) -> Scenario:
    return Scenario(
        name=f"streams{SLOW_STREAMS}-{backend}",
        route="ask",
        stream=True,
        token_ms=SLOW_TOKEN_MS // 2 if quick else SLOW_TOKEN_MS,
        concurrency=SLOW_STREAMS,
        backend=backend,
        warmup_s=0.0,
        measure_s=0.0,
        hold=True,
    )


def all_scenarios(quick: bool = False) -> list[Scenario]:
    """Every scenario there is (the full cross product); select with :func:`select`."""
    out = [
        load_scenario(route, stream, token_ms, concurrency, backend, quick)
        for backend in BACKENDS
        for token_ms in TOKEN_MS
        for concurrency in CONCURRENCY
        for stream in (True, False)
        for route in ROUTES
    ]
    out += [streams_scenario(backend, quick) for backend in BACKENDS]
    return out


# The default full run: the whole matrix on the memory backend, the target-setting cells on
# Redis, and the open-streams memory test.
DEFAULT = (
    "*-memory",
    "*-stream-0ms-c1-redis",
    "*-stream-0ms-c50-redis",
    "*-json-0ms-c50-redis",
    "*-stream-20ms-c200-redis",
)
QUICK = (
    "ask-stream-0ms-c1-memory",
    "v1-stream-0ms-c1-memory",
    "ask-stream-0ms-c50-memory",
    "ask-json-0ms-c50-memory",
    "ask-stream-20ms-c200-memory",
    "ask-stream-0ms-c1-redis",
    "streams1000-memory",
)


def select(patterns: tuple[str, ...] | list[str], quick: bool) -> list[Scenario]:
    """The scenarios whose names match any pattern (shell-style), in a stable order: by backend,
    then the direct measurement they share, so that direct and gateway runs sit side by side."""
    chosen = [
        s for s in all_scenarios(quick) if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)
    ]
    if not chosen:
        raise ValueError(f"no scenario matches {' '.join(patterns)} (see --list)")
    return sorted(
        chosen,
        key=lambda s: (
            BACKENDS.index(s.backend),
            s.hold,
            s.token_ms,
            s.concurrency,
            not s.stream,
            ROUTES.index(s.route),
        ),
    )
