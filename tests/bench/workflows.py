"""What the ``conversation`` workflow adds to an answer's latency, against ``direct``.

``python -m tests.bench.workflows [--requests N] [--tokens T] [--postgres URL]`` starts the
project's fake OpenAI server and one gateway (``orchestra serve``, one worker), registers three
apps on the same fake, and sends N sequential streamed ``/ask`` requests to each, interleaved
(so machine noise hits all three alike):

- ``direct``: the plain path, no graph;
- ``conversation/new``: the conversation workflow, a new ``conversation_id`` each time (graph
  run, empty thread read, one checkpoint write);
- ``conversation/thread``: every request continues one thread (its history is loaded, trimmed
  to the token budget and sent, and the grown thread saved).

It prints p50/p99 of the time to the first ``delta`` event (TTFT) and to the ``done`` event
(total), in milliseconds, measured by the client, and each workflow's difference from direct:
of the medians, and the median of the paired differences (request i of a workflow against
request i of direct, sent right before it), which is steadier on a busy machine.
The fake answers T tokens at once (no delay), so the figures are the gateway's own cost.
Not collected by pytest (its name does not start with ``test_``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.bench import procs
from tests.bench.stats import percentile

FAKE_KEY = "sk-bench-workflows"
VARIANTS = ("direct", "conversation/new", "conversation/thread")


def add_app(home: Path, env: dict[str, str], name: str, fake_port: int, workflow: str) -> str:
    created = json.loads(
        procs.run_cli(
            home,
            [
                *("apps", "add", name, "--workflow", workflow),
                *("--base-url", f"http://{procs.HOST}:{fake_port}/v1"),
                *("--openai-key-stdin", "--json"),
            ],
            stdin=FAKE_KEY + "\n",
        )
    )
    token: str = created["token"]
    return token


@contextmanager
def postgres_schema(url: str | None) -> Iterator[dict[str, str]]:
    """The gateway's database settings: SQLite in the home, or a throw-away PostgreSQL schema."""
    if url is None:
        yield {}
        return
    import psycopg

    schema = "bench_" + secrets.token_hex(4)
    libpq = url.replace("+asyncpg", "")
    with psycopg.connect(libpq, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield {"ORCHESTRA_DATABASE_URL": url, "ORCHESTRA_DATABASE_SCHEMA": schema}
    finally:
        with psycopg.connect(libpq, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


async def one(http: httpx.AsyncClient, token: str, body: dict[str, object]) -> tuple[float, float]:
    """One streamed /ask: (ms to the first delta, ms to done)."""
    started = time.perf_counter()
    first: float | None = None
    async with http.stream(
        "POST", "/ask", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"/ask answered {response.status_code}: {response.text}")
        async for line in response.aiter_lines():
            if line == "event: delta" and first is None:
                first = time.perf_counter()
            elif line == "event: done":
                break
            elif line == "event: error":
                raise RuntimeError("the answer ended with an error event")
    done = time.perf_counter()
    assert first is not None
    return (first - started) * 1000, (done - started) * 1000


async def measure(
    url: str, tokens: dict[str, str], requests: int, warm_up: int
) -> dict[str, tuple[list[float], list[float]]]:
    results: dict[str, tuple[list[float], list[float]]] = {v: ([], []) for v in VARIANTS}
    thread = "bench-" + secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as http:
        for i in range(warm_up + requests):
            for variant in VARIANTS:
                body: dict[str, object] = {"prompt": f"Question number {i}, please answer."}
                if variant == "conversation/new":
                    body["conversation_id"] = f"new-{i}-{secrets.token_hex(3)}"
                elif variant == "conversation/thread":
                    body["conversation_id"] = thread
                ttft, total = await one(http, tokens[variant], body)
                if i >= warm_up:
                    results[variant][0].append(ttft)
                    results[variant][1].append(total)
    return results


def report(results: dict[str, tuple[list[float], list[float]]]) -> str:
    def stats(values: list[float]) -> tuple[float, float]:
        ordered = sorted(values)
        return percentile(ordered, 50) or 0.0, percentile(ordered, 99) or 0.0

    def paired(variant: str, metric: int) -> float:
        """The median of the differences, request i against direct request i (same moment)."""
        pairs = zip(results[variant][metric], results["direct"][metric], strict=True)
        return percentile(sorted(a - b for a, b in pairs), 50) or 0.0

    base_ttft, base_total = stats(results["direct"][0]), stats(results["direct"][1])
    lines = [
        f"{'variant':<22}{'TTFT p50':>10}{'p99':>9}{'total p50':>11}{'p99':>9}"
        f"{'Δ TTFT p50':>12}{'Δ total p50':>13}{'paired Δ TTFT':>15}{'paired Δ total':>16}",
    ]
    for variant in VARIANTS:
        ttft, total = stats(results[variant][0]), stats(results[variant][1])
        lines.append(
            f"{variant:<22}{ttft[0]:>10.2f}{ttft[1]:>9.2f}{total[0]:>11.2f}{total[1]:>9.2f}"
            f"{ttft[0] - base_ttft[0]:>+12.2f}{total[0] - base_total[0]:>+13.2f}"
            f"{paired(variant, 0):>+15.2f}{paired(variant, 1):>+16.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per variant (after warm-up)")
    parser.add_argument("--warm-up", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=20, help="tokens per answer at the fake")
    parser.add_argument("--postgres", metavar="URL", help="postgresql+asyncpg://… (else SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-workflows-") as tmp:
        workdir = Path(tmp)
        home = workdir / "home"
        fake = procs.start_fake(workdir, workers=1, tokens=args.tokens)
        gateway: procs.Server | None = None
        try:
            with postgres_schema(args.postgres) as db_env:
                procs.run_cli(home, ["init"], env=db_env)
                tokens = {
                    "direct": add_app(home, db_env, "bench-direct", fake.port, "direct"),
                    "conversation/new": add_app(
                        home, db_env, "bench-conv", fake.port, "conversation"
                    ),
                }
                tokens["conversation/thread"] = tokens["conversation/new"]
                gateway = procs.start_gateway(workdir, home, tag="workflows", env=db_env)
                url = f"http://{procs.HOST}:{gateway.port}"
                results = asyncio.run(measure(url, tokens, args.requests, args.warm_up))
                gateway.stop()
                gateway = None
        finally:
            if gateway is not None:
                gateway.stop()
            fake.stop()
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(  # noqa: T201 (a report on stdout is the point)
        f"{args.requests} sequential streamed /ask per variant, {args.tokens} tokens each, "
        f"{database}; milliseconds, measured by the client\n{report(results)}"
    )


if __name__ == "__main__":
    main()
