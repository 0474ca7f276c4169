"""Canary scan: planted secrets never show up where they should not.

Planted: an OpenAI key (``sk-canary-...``, the app's provider key, given through the CLI on
stdin), the app's client tokens, the master key (ORCHESTRA_MASTER_KEY of the resilience
gateway) and the admin token; plus every token and key the session's other tests issued.
After traffic over every route and error path (and CLI commands), none of them may appear in
the gateway's log output, in any database table or file (other than as ciphertext or a hash),
in /metrics, in any response (body or headers) or in CLI output. The only exceptions are the
two commands whose job is to show a new token once (`apps add`, `tokens issue`): they may show
that token, and nothing else secret.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.gateway.http.conftest import ADMIN_TOKEN, AppHandle, Fake, Gateway, poll, sse_events
from tests.gateway.resilience.conftest import (
    ISSUED,
    MASTER_KEY,
    CliRun,
    acli,
    sqlite_rows,
)
from tests.gateway.upstream.raw_server import answer, raw_server

pytestmark = pytest.mark.anyio

CANARY_KEY = "sk-canary-" + secrets.token_hex(24)
ORIGIN = "http://canary.example.test"


@dataclass
class Seen:
    """Everything the scan looks at, by where it came from."""

    texts: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, text: str) -> None:
        self.texts[f"{len(self.texts):03d} {where}"] = text

    def response(self, where: str, response: httpx.Response, body: str | None = None) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        if body is None:
            body = response.text if not response.is_stream_consumed or response.is_closed else ""
        self.add(f"{where} ({response.status_code})", f"{headers}\n\n{body}")

    def cli(self, where: str, run: CliRun) -> None:
        self.add(f"cli {where} (exit {run.code})", run.out + "\n" + run.err)


def leaks(secrets_: Iterable[str], text: str) -> set[str]:
    """The secrets found in ``text``: whole, or their random tail (a cut or masked prefix)."""
    return {s for s in secrets_ if s in text or s[-16:] in text}


def scan_at_rest(home: Path, stdout: Path, secrets_: set[str]) -> dict[str, set[str]]:
    """The gateway's stdout, every table cell by cell, and every file of its home as bytes
    (the WAL holds recent pages, freed pages keep old bytes)."""
    found: dict[str, set[str]] = {}
    if leaked := leaks(secrets_, stdout.read_text()):
        found["gateway stdout"] = leaked
    for table, rows in sqlite_rows(home / "orchestra.db").items():
        text = "\n".join(repr(cell) for row in rows for cell in row)
        if leaked := leaks(secrets_, text):
            found[f"table {table}"] = leaked
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaked = {s for s in secrets_ if s.encode() in data or s[-16:].encode() in data}
            if leaked:
                found[f"file {path.name}"] = leaked
    return found


async def _exercise(
    client: httpx.AsyncClient, gateway: Gateway, app: AppHandle, failing: AppHandle, seen: Seen
) -> None:
    auth = app.auth
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

    async def post(where: str, path: str, body: Any, headers: dict[str, str], **kw: Any) -> None:
        seen.response(where, await client.post(path, json=body, headers=headers, **kw))

    async def get(where: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> None:
        seen.response(where, await client.get(path, headers=headers or {}, **kw))

    async def stream(where: str, body: dict[str, Any], path: str = "/ask") -> None:
        async with client.stream("POST", path, json=body, headers=auth) as r:
            seen.response(where, r, (await r.aread()).decode())

    async with anyio.create_task_group() as tasks:
        # Answers, streamed and not, on both routes, and mid-stream failures.
        tasks.start_soon(stream, "ask stream", {"prompt": "hello", "metadata": {"k": "v"}})
        tasks.start_soon(stream, "ask die-after", {"prompt": "[die-after:2]"})
        tasks.start_soon(stream, "ask idle timeout", {"prompt": "[tokens:3] [token-ms:9000]"})
        tasks.start_soon(stream, "v1 stream", {**chat, "stream": True}, "/v1/chat/completions")
        tasks.start_soon(post, "ask json", "/ask", {"prompt": "hi", "stream": False}, auth)
        tasks.start_soon(post, "v1 json", "/v1/chat/completions", chat, auth)
        # Upstream errors of every kind.
        for directive in (
            "[fail:400]",
            "[fail:401]",
            "[fail:403]",
            "[fail:404]",
            "[fail:429]",
            "[hang]",
        ):
            tasks.start_soon(post, f"ask {directive}", "/ask", {"prompt": directive}, auth)
        v1_401 = {**chat, "messages": [{"role": "user", "content": "[fail:401]"}]}
        tasks.start_soon(post, "v1 401", "/v1/chat/completions", v1_401, auth)
        tasks.start_soon(post, "ask 5xx", "/ask", {"prompt": "hi"}, failing.auth)
        tasks.start_soon(
            post, "ask unknown model", "/ask", {"prompt": "hi", "model": "gpt-x"}, auth
        )
    # Refusals before the upstream: malformed, too large, unauthenticated, wrong origin.
    await post(
        "ask invalid json",
        "/ask",
        None,
        {**auth, "Content-Type": "application/json"},
        content=b"{nope",
    )
    await post("ask 422", "/ask", {"prompt": "hi", "max_tokens": 0}, auth)
    await post("ask 413", "/ask", {"prompt": "x" * 20_000}, auth)
    await post("ask origin", "/ask", {"prompt": "hi"}, {**auth, "Origin": "http://evil.test"})
    for where, value in (
        ("provider key as token", f"Bearer {CANARY_KEY}"),
        ("master key as token", f"Bearer {MASTER_KEY}"),
        ("admin token on ask", f"Bearer {ADMIN_TOKEN}"),
        ("token without scheme", app.token),
        ("token truncated", f"Bearer {app.token[:-2]}"),
    ):
        await post(where, "/ask", {"prompt": "hi"}, {"Authorization": value})
        await post(f"v1 {where}", "/v1/chat/completions", chat, {"Authorization": value})
    await post("token in query", f"/ask?token={app.token}", {"prompt": "hi"}, {})
    # Every other route, allowed and refused.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    await get("models", "/v1/models", auth)
    await get("logs", "/logs", auth)
    await get("logs admin", "/logs", admin, params={"app": app.name})
    await get("logs other app", "/logs", auth, params={"app": "someone-else"})
    await get("logs bad cursor", "/logs", auth, params={"cursor": "nope"})
    await get("status", "/status", auth)
    await get("status admin", "/status", admin)
    await get("conversation", "/conversations/nope", auth)
    seen.response("conversation delete", await client.delete("/conversations/nope", headers=auth))
    await get("metrics", "/metrics")
    await get("no route", "/no/such/route")
    seen.response("405", await client.put("/ask", headers=auth))
    for origin in (ORIGIN, "http://evil.test"):
        seen.response(
            f"preflight {origin}",
            await client.options(
                "/ask", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
            ),
        )
    async with client.stream("GET", "/logs", params={"follow": "true"}, headers=auth) as r:
        followed = ""
        with anyio.move_on_after(0.5):
            async for text in r.aiter_text():
                followed += text
        seen.response("logs follow", r, followed)
    async with gateway.client() as own:  # a client that leaves mid-stream
        body = {"prompt": "[tokens:200] [token-ms:10]"}
        async with own.stream("POST", "/ask", json=body, headers=auth) as r:
            async for _ in sse_events(r):
                break


async def _cli(gateway: Gateway, app: AppHandle, seen: Seen) -> None:
    runs = [
        ("apps list", ("apps", "list")),
        ("apps list json", ("apps", "list", "--json")),
        ("apps show", ("apps", "show", app.name)),
        ("apps show json", ("apps", "show", app.name, "--json")),
        ("tokens list", ("tokens", "list", app.name)),
        ("tokens revoke a secret by mistake", ("tokens", "revoke", app.token)),
        ("quotas show", ("quotas", "show", app.name)),
        ("usage", ("usage", "--json")),
        ("logs tail", ("logs", "tail", "--app", app.name, "--json")),
        ("logs tail remote", ("logs", "tail", "--url", gateway.url, "--token", ADMIN_TOKEN)),
        ("logs tail bad token", ("logs", "tail", "--url", gateway.url, "--token", app.token)),
        ("ask", ("ask", "hello", "--url", gateway.url, "--token", app.token)),
        ("ask failing", ("ask", "[fail:401]", "--url", gateway.url, "--token", app.token)),
        ("ask provider key as token", ("ask", "hi", "--url", gateway.url, "--token", CANARY_KEY)),
        (
            "apps add url credentials",
            ("apps", "add", "canary-bad", "--base-url", f"https://u:{CANARY_KEY}@api.test/v1"),
        ),
    ]
    for where, args in runs:
        seen.cli(where, await acli(gateway, *args))
    seen.cli("keys set", await acli(gateway, "keys", "set", app.name, "--stdin", input=CANARY_KEY))
    seen.cli(
        "keys set unknown app",
        await acli(gateway, "keys", "set", "no-such-app", "--stdin", input=CANARY_KEY),
    )


async def test_no_planted_secret_leaks_anywhere(
    client: httpx.AsyncClient, r_gateway: Gateway, fake: Fake
) -> None:
    seen = Seen()
    name = f"canary-{secrets.token_hex(3)}"
    added = await acli(
        r_gateway,
        "apps",
        "add",
        name,
        "--base-url",
        fake.base_url,
        "--origin",
        ORIGIN,
        "--log-content",
        "full",
        "--openai-key-stdin",
        "--json",
        input=CANARY_KEY,
    )
    assert added.code == 0, added.err
    token = json.loads(added.out)["token"]
    issued = await acli(r_gateway, "tokens", "issue", name, "--json")
    assert issued.code == 0, issued.err
    second_token = json.loads(issued.out)["token"]
    app = AppHandle(name, json.loads(added.out)["app"]["id"], token, "", CANARY_KEY)

    failing_handler = answer(500, {"error": {"message": "boom", "type": "server_error"}})
    async with raw_server(failing_handler) as server:
        failing_name = f"canary-5xx-{secrets.token_hex(3)}"
        made = await acli(
            r_gateway,
            "apps",
            "add",
            failing_name,
            "--base-url",
            server.base_url,
            "--openai-key-stdin",
            "--json",
            input=CANARY_KEY,
        )
        assert made.code == 0, made.err
        failing = AppHandle(failing_name, "", json.loads(made.out)["token"], "", CANARY_KEY)
        await _exercise(client, r_gateway, app, failing, seen)
        assert server.requests, "the 5xx path was not exercised"
    await _cli(r_gateway, app, seen)

    planted = {CANARY_KEY, token, second_token, failing.token, MASTER_KEY, ADMIN_TOKEN}
    everything = planted | ISSUED
    # The shows-once commands: their own new token only.
    for where, run, own in (("apps add", added, token), ("tokens issue", issued, second_token)):
        assert own in run.out, where
        assert not leaks(everything - {own}, run.out + run.err), where

    found: dict[str, set[str]] = {}
    for where, text in seen.texts.items():
        if leaked := leaks(everything, text):
            found[where] = leaked

    # The gateway's log output (wait until it has logged every request above).
    async def logged() -> str:
        await anyio.lowlevel.checkpoint()
        return r_gateway.server.stderr()

    log = await poll(logged, lambda text: "/logs" in text and "/metrics" in text)
    if leaked := leaks(everything, log):
        found["gateway stderr"] = leaked
    at_rest = await anyio.to_thread.run_sync(
        scan_at_rest, r_gateway.home, r_gateway.server.stderr_path.with_suffix(".out"), everything
    )
    found.update(at_rest)

    # A positive control: the fake keeps the Authorization header it got (test-only), so the
    # provider key must be found there; a scan that finds nothing anywhere proves nothing.
    upstream_log = json.dumps(await fake.requests())
    assert CANARY_KEY in leaks(planted, upstream_log)

    shown = {where: sorted(s[:10] + "…" for s in leaked) for where, leaked in found.items()}
    assert not found, f"planted secrets found: {json.dumps(shown, indent=1)}"
    assert len(seen.texts) > 60  # the scan saw real traffic
