"""Soak: steady mixed traffic through one gateway for a long time; its memory and its records.

``python -m tests.bench.soak [--minutes 30] [--rate 20]`` starts the fake OpenAI server and
``orchestra serve`` (one worker, a temporary ``ORCHESTRA_HOME`` on SQLite, two apps: one with a
generous quota, one allowed one request a minute), then sends requests OPEN LOOP at ``--rate``
per second for ``--minutes``: a request leaves on schedule whether the previous ones have ended
or not. The mix, in a fixed order repeated every 20 requests: /ask streamed and JSON,
/v1/chat/completions streamed and JSON, a bad token (401), an invalid body (422), the limited
app (429), an upstream 500 (502, after the gateway's retries) and a stream the upstream cuts
(200 with an error event). The gateway's RSS is sampled from /proc every ``--sample-s``.

At the end it waits for the interaction records to be flushed and counts them in the database
(through the storage layer) against the requests sent: every request that reached the gateway
gets exactly one record. Memory is "flat" when RSS grew by at most ``--max-growth-pct`` between
the end of the first 20 % of the run (warm) and the end. Prints a table (RSS over time), the
verdicts, then one JSON line. Not a test: nothing here is collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from sqlmodel import col, select

from gateway.storage.database import Database
from gateway.storage.tables import RequestLog
from tests.bench import procs
from tests.bench.procs import HOST, Server
from tests.bench.scenarios import FAKE_KEY, MODEL

MB = 1024 * 1024
APP, LIMITED_APP = "soak", "soak-limited"
REQUEST_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 90.0
FLUSH_TIMEOUT_S = 60.0
WARM_FRACTION = 0.2

Token = Literal["app", "limited", "bad"]


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of request in the mix, and the answers that count as expected for it."""

    name: str
    path: str
    token: Token
    body: Callable[[str], dict[str, Any]]
    statuses: frozenset[int]
    #: A 200 must contain this (a stream's final event); other statuses are checked by status.
    marker: str | None = None


def _ask(stream: bool) -> Callable[[str], dict[str, Any]]:
    return lambda prompt: {"prompt": prompt, "stream": stream}


def _v1(stream: bool) -> Callable[[str], dict[str, Any]]:
    return lambda prompt: {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    }


def _with(
    directive: str, build: Callable[[str], dict[str, Any]]
) -> Callable[[str], dict[str, Any]]:
    return lambda prompt: build(f"{prompt} {directive}")


OK = frozenset({200})
KINDS = {
    kind.name: kind
    for kind in (
        Kind("ask-stream", "/ask", "app", _ask(True), OK, "event: done"),
        Kind("ask-json", "/ask", "app", _ask(False), OK, '"finish_reason"'),
        Kind("v1-stream", "/v1/chat/completions", "app", _v1(True), OK, "data: [DONE]"),
        Kind("v1-json", "/v1/chat/completions", "app", _v1(False), OK, '"finish_reason"'),
        Kind("bad-token", "/ask", "bad", _ask(True), frozenset({401})),
        Kind("invalid-body", "/ask", "app", lambda _: {"prompt": ""}, frozenset({422})),
        # One request a minute passes; the rest are refused.
        Kind("quota", "/ask", "limited", _ask(False), frozenset({200, 429})),
        # 503 once the circuit breaker opens on repeated failures.
        Kind(
            "upstream-500", "/ask", "app", _with("[fail:500]", _ask(False)), frozenset({502, 503})
        ),
        Kind("upstream-cut", "/ask", "app", _with("[die-after:3]", _ask(True)), OK, "event: error"),
    )
}
# Twenty requests, the failures spread out so that no two upstream failures follow each other.
SCHEDULE = (
    "ask-stream", "v1-json", "ask-json", "v1-stream", "bad-token",
    "ask-stream", "v1-json", "upstream-500", "ask-json", "v1-stream",
    "ask-stream", "invalid-body", "v1-json", "ask-json", "quota",
    "ask-stream", "v1-stream", "upstream-cut", "ask-stream", "v1-stream",
)  # fmt: skip


# ---------------------------------------------------------------------------- the traffic


@dataclass(slots=True)
class Tally:
    """What the load generator sent and got back, per kind."""

    sent: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)  # "kind status"
    transport_errors: Counter[str] = field(default_factory=Counter)  # "kind ExceptionName"
    skipped: int = 0  # not sent: too many requests already in flight
    request_ids: set[str] = field(default_factory=set)
    in_flight: int = 0

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def total_answered(self) -> int:
        return sum(self.answered.values())


@dataclass(frozen=True, slots=True)
class Tokens:
    app: str
    limited: str

    def header(self, token: Token) -> dict[str, str]:
        secret = {"app": self.app, "limited": self.limited, "bad": "orc_" + "x" * 43}[token]
        return {"Authorization": f"Bearer {secret}"}


def _answered_as_expected(kind: Kind, status: int, body: bytes) -> bool:
    if status not in kind.statuses:
        return False
    return status != 200 or kind.marker is None or kind.marker.encode() in body


async def send_one(
    http: httpx.AsyncClient, tokens: Tokens, kind: Kind, prompt: str, tally: Tally
) -> None:
    tally.sent[kind.name] += 1
    tally.in_flight += 1
    try:
        response = await http.post(
            kind.path, json=kind.body(prompt), headers=tokens.header(kind.token)
        )
    except httpx.HTTPError as exc:
        tally.transport_errors[f"{kind.name} {type(exc).__name__}"] += 1
        return
    finally:
        tally.in_flight -= 1
    tally.answered[kind.name] += 1
    request_id = response.headers.get("x-request-id")
    if request_id:
        tally.request_ids.add(request_id)
    if _answered_as_expected(kind, response.status_code, response.content):
        tally.expected[kind.name] += 1
    else:
        tally.unexpected[f"{kind.name} {response.status_code}"] += 1


async def drive(
    http: httpx.AsyncClient,
    tokens: Tokens,
    tally: Tally,
    *,
    rate: float,
    until: float,
    token_ms: int,
    max_in_flight: int,
) -> None:
    """Open loop: request ``i`` leaves at ``start + i / rate``, whatever is still running."""
    start = time.monotonic()
    async with asyncio.TaskGroup() as tasks:
        for i in range(sys.maxsize):
            at = start + i / rate
            if at >= until:
                break
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            if tally.in_flight >= max_in_flight:
                tally.skipped += 1
                continue
            kind = KINDS[SCHEDULE[i % len(SCHEDULE)]]
            prompt = f"Soak request {i}: tell me something. [token-ms:{token_ms}]"
            tasks.create_task(send_one(http, tokens, kind, prompt, tally))


# ---------------------------------------------------------------------------- memory


@dataclass(frozen=True, slots=True)
class Sample:
    at_s: float  # since the traffic started
    rss_mb: float
    sent: int
    answered: int


async def sample_rss(
    gateway: Server, tally: Tally, samples: list[Sample], *, every: float, t0: float
) -> None:
    """Append a sample every ``every`` seconds until cancelled."""
    while True:
        rss = procs.sample(gateway.pids).rss_bytes / MB
        at = time.monotonic() - t0
        samples.append(Sample(round(at, 1), round(rss, 1), tally.total_sent, tally.total_answered))
        await asyncio.sleep(every)


def memory_verdict(
    samples: list[Sample], duration_s: float, max_growth_pct: float
) -> dict[str, Any]:
    """RSS growth from the end of the warm-up (first 20 %) to the end of the traffic."""
    during = [s for s in samples if s.at_s <= duration_s] or samples
    warm_at = WARM_FRACTION * duration_s
    warm = min(during, key=lambda s: abs(s.at_s - warm_at))
    end = during[-1]
    growth = end.rss_mb - warm.rss_mb
    pct = 100 * growth / warm.rss_mb if warm.rss_mb else 0.0
    return {
        "rss_start_mb": during[0].rss_mb,
        "rss_warm_mb": warm.rss_mb,
        "rss_warm_at_s": warm.at_s,
        "rss_end_mb": end.rss_mb,
        "rss_peak_mb": max(s.rss_mb for s in samples),
        "rss_after_drain_mb": samples[-1].rss_mb,
        "rss_growth_mb": round(growth, 1),
        "rss_growth_pct": round(pct, 2),
        "flat": pct <= max_growth_pct,
    }


# ---------------------------------------------------------------------------- the records


async def read_records(database_url: str) -> tuple[Counter[str], set[str], int]:
    """``(records by outcome, request ids, rows)`` of the gateway's request_logs table."""
    db = Database.open(database_url, pool_size=1)
    try:
        async with db.read() as session:
            result = await session.exec(select(col(RequestLog.request_id), col(RequestLog.outcome)))
            rows = result.all()
    finally:
        await db.close()
    return Counter(outcome for _, outcome in rows), {rid for rid, _ in rows}, len(rows)


async def wait_for_records(database_url: str, wanted: int) -> tuple[Counter[str], set[str], int]:
    """Poll until ``wanted`` records are there, or their count stopped moving for 5 s."""
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    last, still_since = -1, time.monotonic()
    while True:
        outcomes, ids, rows = await read_records(database_url)
        now = time.monotonic()
        if rows != last:
            last, still_since = rows, now
        if rows >= wanted or now - still_since >= 5.0 or now >= deadline:
            return outcomes, ids, rows
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------------------- set-up


def setup_home(home: Path, fake: Server) -> Tokens:
    """Schema, the two apps on the fake, their quotas; their client tokens."""
    procs.run_cli(home, ["init"])
    base_url = f"http://{HOST}:{fake.port}/v1"
    tokens = []
    for name in (APP, LIMITED_APP):
        args = ["apps", "add", name, "--base-url", base_url, "--openai-key-stdin", "--json"]
        created = json.loads(procs.run_cli(home, args, stdin=FAKE_KEY + "\n"))
        tokens.append(str(created["token"]))
    # The main app's quota never refuses, but its checks run on every request.
    procs.run_cli(home, ["quotas", "set", APP, "--rpm", "100000000", "--tpm", "100000000000"])
    procs.run_cli(home, ["quotas", "set", LIMITED_APP, "--rpm", "1"])
    return Tokens(app=tokens[0], limited=tokens[1])


# ---------------------------------------------------------------------------- the run


async def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    home = workdir / "home"
    fake = procs.start_fake(workdir, workers=1, tokens=args.tokens)
    try:
        tokens = setup_home(home, fake)
        gateway = procs.start_gateway(workdir, home, tag="soak", env={})
        try:
            result = await _traffic(args, gateway, tokens)
            result["gateway_ready_s"] = gateway.ready_s
            result["gateway_alive"] = gateway.alive()
            result["gateway_log_errors"] = gateway.log_errors(0, limit=5)
            database_url = f"sqlite+aiosqlite:///{home / 'orchestra.db'}"
            result.update(await _records(database_url, result))
        finally:
            gateway.stop()
    finally:
        fake.stop()
    return result


async def _traffic(args: argparse.Namespace, gateway: Server, tokens: Tokens) -> dict[str, Any]:
    tally, samples = Tally(), list[Sample]()
    duration = args.minutes * 60
    limits = httpx.Limits(max_connections=args.max_in_flight, max_keepalive_connections=64)
    base = f"http://{HOST}:{gateway.port}"
    async with httpx.AsyncClient(
        base_url=base, timeout=REQUEST_TIMEOUT_S, limits=limits, trust_env=False
    ) as http:
        t0 = time.monotonic()
        sampler = asyncio.create_task(
            sample_rss(gateway, tally, samples, every=args.sample_s, t0=t0)
        )
        try:
            await asyncio.wait_for(
                drive(
                    http,
                    tokens,
                    tally,
                    rate=args.rate,
                    until=t0 + duration,
                    token_ms=args.token_ms,
                    max_in_flight=args.max_in_flight,
                ),
                timeout=duration + DRAIN_TIMEOUT_S,
            )
            samples.append(_sample_now(gateway, tally, t0))
        finally:
            sampler.cancel()
    return {
        "minutes": args.minutes,
        "rate": args.rate,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "sent": tally.total_sent,
        "answered": tally.total_answered,
        "skipped": tally.skipped,
        "expected": sum(tally.expected.values()),
        "unexpected": dict(tally.unexpected),
        "transport_errors": dict(tally.transport_errors),
        "per_kind": {name: tally.sent[name] for name in KINDS},
        "memory": memory_verdict(samples, duration, args.max_growth_pct),
        "samples": [[s.at_s, s.rss_mb, s.sent, s.answered] for s in samples],
        "_request_ids": tally.request_ids,
    }


def _sample_now(gateway: Server, tally: Tally, t0: float) -> Sample:
    rss = procs.sample(gateway.pids).rss_bytes / MB
    at = round(time.monotonic() - t0, 1)
    return Sample(at, round(rss, 1), tally.total_sent, tally.total_answered)


async def _records(database_url: str, result: dict[str, Any]) -> dict[str, Any]:
    answered_ids: set[str] = result.pop("_request_ids")
    outcomes, ids, rows = await wait_for_records(database_url, result["sent"])
    return {
        "records": rows,
        "records_by_outcome": dict(outcomes),
        # Answered with a request id but never recorded, and recorded twice.
        "missing_records": len(answered_ids - ids),
        "duplicate_records": rows - len(ids),
        "records_match_sent": rows == result["sent"] and not answered_ids - ids,
    }


# ---------------------------------------------------------------------------- the report


def table(result: dict[str, Any], every_s: float) -> str:
    """RSS over time: a row every ``every_s`` of traffic, its last sample, then after the drain."""
    lines = [f"{'minute':>8} {'RSS MB':>8} {'sent':>8} {'answered':>9}"]
    *during, drained = result["samples"]
    next_at = 0.0
    for index, (at_s, rss, sent, answered) in enumerate(during):
        if at_s + 1e-6 >= next_at or index == len(during) - 1:
            lines.append(f"{at_s / 60:>8.1f} {rss:>8.1f} {sent:>8} {answered:>9}")
            next_at = (int(at_s / every_s) + 1) * every_s
    lines.append(f"{'drained':>8} {drained[1]:>8.1f} {drained[2]:>8} {drained[3]:>9}")
    return "\n".join(lines)


def verdicts(result: dict[str, Any], max_growth_pct: float) -> str:
    memory = result["memory"]
    flat = "FLAT" if memory["flat"] else "GROWING"
    records = "OK" if result["records_match_sent"] else "MISMATCH"
    return "\n".join(
        [
            f"requests: {result['sent']} sent, {result['answered']} answered, "
            f"{result['expected']} as expected, unexpected {result['unexpected'] or 'none'}, "
            f"transport errors {result['transport_errors'] or 'none'}, "
            f"{result['skipped']} skipped",
            f"records: {result['records']} for {result['sent']} requests sent "
            f"({result['missing_records']} answered without a record, "
            f"{result['duplicate_records']} duplicates): {records}",
            f"memory: {memory['rss_warm_mb']} MB at {memory['rss_warm_at_s']} s (end of the first "
            f"{WARM_FRACTION:.0%}) -> {memory['rss_end_mb']} MB at the end: "
            f"{memory['rss_growth_mb']:+.1f} MB ({memory['rss_growth_pct']:+.2f} %, "
            f"limit {max_growth_pct} %): {flat}",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.soak",
        description="Steady mixed traffic through one gateway; RSS over time and the records.",
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="traffic duration (30)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (20)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period (5)")
    parser.add_argument("--table-every-s", type=float, default=60.0, help="table rows (60)")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per answer (20)")
    parser.add_argument("--token-ms", type=int, default=10, help="ms between tokens (10)")
    parser.add_argument(
        "--max-in-flight", type=int, default=500, help="skip a request past this many (500)"
    )
    parser.add_argument(
        "--max-growth-pct", type=float, default=5.0, help="'flat' RSS growth limit (5 %%)"
    )
    parser.add_argument("--json-out", type=Path, help="also write the JSON result here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="orchestra-soak-") as tmp:
        try:
            result = asyncio.run(soak(args, Path(tmp)))
        except (RuntimeError, TimeoutError, OSError) as exc:
            sys.stderr.write(f"soak aborted: {exc}\n")
            return 1
    sys.stdout.write(table(result, args.table_every_s) + "\n\n")
    sys.stdout.write(verdicts(result, args.max_growth_pct) + "\n")
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
