"""The gateway's logs: JSON lines, the request id on every line of a request, no secret, no
variable values in a traceback.

The real gateway of this folder runs with ``ORCHESTRA_LOG_FORMAT=json``; its stderr is the log.
``configure_logging`` itself is also run in a child Python process (so that this process's own
logging is left alone), where secrets and exceptions can be logged on purpose.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gateway.services import apps as app_service
from tests.gateway.http.conftest import (
    ADMIN_TOKEN,
    MODEL,
    AppHandle,
    Apps,
    Gateway,
    ask_stream,
    poll,
)
from tests.gateway.observability.conftest import Stack

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
NO_REQUEST = "-"
#: Nested deeper than the JSON decoder's recursion limit.
DEEP = "[" * 20_000 + "]" * 20_000


def log_lines(gateway: Gateway) -> list[dict[str, Any]]:
    """Every complete line of the gateway's stderr, each parsed (and so checked) as JSON."""
    text = gateway.server.stderr()
    complete = text[: text.rfind("\n") + 1]
    lines = []
    for number, line in enumerate(complete.splitlines(), 1):
        assert line.strip(), f"empty log line {number}"
        try:
            lines.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"log line {number} is not JSON: {line[:300]!r}") from None
    return lines


def request_id_of(line: dict[str, Any]) -> str:
    return str(line["record"]["extra"]["request_id"])


async def lines_for(gateway: Gateway, request_ids: list[str]) -> list[dict[str, Any]]:
    """The log, once the access line of every one of ``request_ids`` is in it."""

    async def get() -> list[dict[str, Any]]:
        return log_lines(gateway)

    def done(lines: list[dict[str, Any]]) -> bool:
        logged = {request_id_of(ln) for ln in lines if ln["record"]["message"] == "request"}
        return set(request_ids) <= logged

    return await poll(get, done)


async def with_workflow(gateway: Gateway, app: AppHandle, workflow: str) -> None:
    await gateway.with_database(
        lambda db: app_service.update_app(db, app.name, app_service.AppChanges(workflow=workflow))
    )


async def traffic(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> tuple[dict[str, int], set[str]]:
    """Requests of many kinds: their ids and HTTP statuses, and the ids that call the upstream."""
    direct = await apps.add(log_content="full")
    conversation = await apps.add()
    await with_workflow(gateway, conversation, "conversation")
    moderated = await apps.add()
    await with_workflow(gateway, moderated, "moderated")
    seen: dict[str, int] = {}
    upstream: set[str] = set()

    def note(response: httpx.Response, *, calls_upstream: bool = False) -> None:
        seen[response.headers["x-request-id"]] = response.status_code
        if calls_upstream:
            upstream.add(response.headers["x-request-id"])

    for app in (direct, conversation, moderated):
        streamed = await ask_stream(client, app, {"prompt": f"hello {app.token}"})
        note(streamed.response, calls_upstream=True)
        json_answer = {"prompt": "hi", "stream": False}
        note(await client.post("/ask", json=json_answer, headers=app.auth), calls_upstream=True)
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    note(
        await client.post("/v1/chat/completions", json=chat, headers=direct.auth),
        calls_upstream=True,
    )
    for failing in ("[fail:500]", "[fail:401]"):
        response = await client.post("/ask", json={"prompt": failing}, headers=direct.auth)
        note(response, calls_upstream=True)
    note(await client.post("/ask", json={"prompt": ""}, headers=direct.auth))
    note(await client.post(f"/ask?token={direct.token}", json={"prompt": "hi"}))
    bearer = {"Authorization": f"Bearer {direct.provider_key}"}
    note(await client.post("/ask", json={"prompt": "hi"}, headers=bearer))
    note(await client.post("/ask", json={"prompt": "hi"}, headers={"Authorization": direct.token}))
    note(await client.get("/logs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}))
    note(await client.get("/logs", headers=direct.auth))
    note(await client.get("/status"))
    note(await client.get("/metrics"))
    return seen, upstream


def is_upstream(line: dict[str, Any]) -> bool:
    """The upstream client's own DEBUG line of one call (gateway/upstream/openai.py)."""
    return str(line["record"]["name"]) == "gateway.upstream.openai" and str(
        line["record"]["message"]
    ).startswith("upstream POST")


@pytest.fixture
def debug_gateway(stack: Stack) -> Gateway:
    """The gateway of this folder that logs at DEBUG (on the same database)."""
    return stack.locked


async def test_every_line_is_json_and_every_line_of_a_request_has_its_id(
    debug_gateway: Gateway, apps: Apps
) -> None:
    gateway = debug_gateway
    async with gateway.client() as client:
        requests, calling = await traffic(client, gateway, apps)
    lines = await lines_for(gateway, list(requests))

    for line in lines:
        record = line["record"]
        assert record["level"]["name"] and "message" in record and line["text"], line
        assert request_id_of(line), line
    # One access line per request, with its id, its status, and the path without the query.
    for request_id, status in requests.items():
        access = [
            ln
            for ln in lines
            if request_id_of(ln) == request_id and ln["record"]["message"] == "request"
        ]
        assert len(access) == 1, (request_id, access)
        extra = access[0]["record"]["extra"]
        assert extra["status"] == status, (extra, status)
        assert "?" not in extra["path"], extra
    # The upstream client's own (DEBUG) line of every upstream call, chat and moderation, workflows
    # included, are logged inside their request, under its id.
    upstream = [ln for ln in lines if is_upstream(ln)]
    for line in upstream:
        assert request_id_of(line) != NO_REQUEST, line["record"]["message"]
    called = {request_id_of(ln) for ln in upstream}
    missing = calling - called
    assert not missing, f"no upstream line logged under {len(missing)} of the requests"
    assert not called & (set(requests) - calling)


async def test_no_upstream_line_is_left_to_the_garbage_collector(
    debug_gateway: Gateway, apps: Apps
) -> None:
    """No upstream line is written outside its request (with httpx, a body iterator left open
    was finalised later by the collector and logged without the request id), whether the
    answer was read to its end or the client left mid-stream."""
    gateway = debug_gateway

    def late() -> int:
        return sum(
            1 for ln in log_lines(gateway) if is_upstream(ln) and request_id_of(ln) == NO_REQUEST
        )

    app = await apps.add()
    before = late()
    async with gateway.client() as client:  # answers read to their end
        ids = [(await ask_stream(client, app, {"prompt": f"hi {i}"})).request_id for i in range(2)]
    for i in range(2):
        async with gateway.client() as own:
            body = {"prompt": f"leave {i} [tokens:200] [token-ms:10]"}
            async with own.stream("POST", "/ask", json=body, headers=app.auth) as response:
                ids.append(response.headers["x-request-id"])
                async for _ in response.aiter_lines():
                    break  # the client leaves mid-stream
    await lines_for(gateway, ids)
    await anyio.sleep(1.0)  # the collector's lines come just after the requests' own
    assert late() == before


async def test_no_token_or_provider_key_is_ever_logged(
    debug_gateway: Gateway, apps: Apps, issued_secrets: set[str]
) -> None:
    gateway = debug_gateway
    async with gateway.client() as client:
        requests, _ = await traffic(client, gateway, apps)
    await lines_for(gateway, list(requests))
    log = gateway.server.stderr()
    assert issued_secrets, "no secret was issued"
    for secret in issued_secrets:
        assert secret not in log
    # Nor anything shaped like one (the redaction patterns), e.g. in a library's message.
    for shape in ("orc_", "sk-test-", "Bearer "):
        assert shape not in log, shape


async def test_an_unhandled_error_logs_its_traceback_without_variable_values(
    client: httpx.AsyncClient, gateway: Gateway, apps: Apps
) -> None:
    """diagnose is off: the frames are listed, the values of their variables are not.

    A body nested deeper than the JSON decoder's recursion limit is (today) not caught by the
    gateway: it is answered 500 and logged with its traceback, whose frames hold the body (with
    the nonce) in their variables. Should the gateway answer it 400 one day, nothing is logged.
    """
    app = await apps.add()
    nonce = f"private-{secrets.token_hex(8)}"
    body = f'{{"prompt": "{nonce}", "metadata": {DEEP}}}'
    headers = {**app.auth, "Content-Type": "application/json"}
    response = await client.post("/ask", content=body, headers=headers)
    assert response.status_code in (400, 500), response.text
    assert nonce not in response.text and "Traceback" not in response.text
    if response.status_code == 400:
        return
    request_id = response.json()["error"]["request_id"]
    lines = await lines_for(gateway, [request_id])

    async def traced() -> list[dict[str, Any]]:
        return [ln for ln in log_lines(gateway) if ln["record"]["exception"]]

    errors = await poll(traced, bool)
    assert any("Traceback (most recent call last)" in ln["text"] for ln in errors)
    assert any("parse_model" in ln["text"] for ln in errors), "the frames are listed"
    log = gateway.server.stderr()
    assert nonce not in log, "a variable's value was logged (diagnose must be off)"
    assert app.token not in log
    assert "│" not in log and "└" not in log  # loguru's diagnose annotations
    assert lines


async def test_an_absurdly_nested_body_is_a_400_not_a_crash(
    client: httpx.AsyncClient, apps: Apps
) -> None:
    app = await apps.add()
    body = f'{{"prompt": "hi", "metadata": {DEEP}}}'
    headers = {**app.auth, "Content-Type": "application/json"}
    response = await client.post("/ask", content=body, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert response.headers.get("x-request-id") == error["request_id"]


async def test_an_unhandled_error_is_logged_and_answered_with_its_request_id() -> None:
    """The catch-all in GatewayMiddleware: inside the request's context, with our headers."""
    from loguru import logger

    from gateway.http.middleware import GatewayMiddleware

    async def broken(scope: dict, receive: object, send: object) -> None:
        raise RuntimeError("boom")

    seen: list[dict[str, object]] = []
    sink = logger.add(lambda m: seen.append(m.record["extra"].copy()), level="ERROR")
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    try:
        scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
        await GatewayMiddleware(broken)(scope, receive, send)  # type: ignore[arg-type]
    finally:
        logger.remove(sink)
    start, body = sent
    assert start["status"] == 500
    headers = dict(start["headers"])  # type: ignore[arg-type]
    request_id = headers[b"x-request-id"].decode()
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert json.loads(body["body"])["error"] == {  # type: ignore[arg-type]
        "code": "internal_error",
        "message": "Internal error.",
        "request_id": request_id,
    }
    assert any(extra.get("request_id") == request_id for extra in seen)


# --- configure_logging in a process of its own ----------------------------------------------

_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from loguru import logger
    from gateway.observability.logging import configure_logging

    fmt, provider_key, token, hidden = sys.argv[1:5]
    configure_logging(level="INFO", fmt=fmt)

    with logger.contextualize(request_id="req_test"):
        logger.info("calling the upstream with {}", provider_key)
        logger.bind(header=f"Bearer {token}").info("authenticated")
        logging.getLogger("uvicorn.error").warning("stdlib says %s", token)
        logging.getLogger("sqlalchemy.engine").error("engine says %s", provider_key)

        def fails(api_key):
            local_value = hidden
            raise RuntimeError("the upstream refused " + api_key)

        try:
            fails(provider_key)
        except RuntimeError:
            logger.exception("upstream call failed")
        try:
            fails("no secret here")
        except RuntimeError:
            logging.getLogger("uvicorn.error").exception("stdlib traceback")
    logger.info("outside any request")
    logger.debug("below the level")
    """
)


def run_logging(fmt: str) -> tuple[str, str, str, str]:
    provider_key = f"sk-proj-{secrets.token_hex(16)}"
    token = f"orc_{secrets.token_urlsafe(24)}"
    hidden = f"hidden-{secrets.token_hex(8)}"  # not secret-shaped: only diagnose could show it
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, fmt, provider_key, token, hidden],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    return result.stderr, provider_key, token, hidden


@pytest.mark.parametrize("fmt", ["json", "human"])
def test_configured_logging_redacts_secrets_and_never_dumps_variables(fmt: str) -> None:
    log, provider_key, token, hidden = run_logging(fmt)
    assert provider_key not in log
    assert token not in log
    assert hidden not in log, "a variable's value was logged (diagnose must be off)"
    assert provider_key[:12] not in log and token[:12] not in log
    assert "[redacted]" in log
    assert log.count("Traceback (most recent call last)") == 2
    assert "in fails" in log  # the frames are there, only the values are not
    assert "below the level" not in log
    if fmt == "human":
        assert "req_test" in log and "outside any request" in log
        return
    lines = [json.loads(line) for line in log.splitlines()]
    by_message = {ln["record"]["message"]: ln["record"] for ln in lines}
    assert set(by_message) == {
        "calling the upstream with [redacted]",
        "authenticated",
        "stdlib says [redacted]",
        "engine says [redacted]",
        "upstream call failed",
        "stdlib traceback",
        "outside any request",
    }
    for message, record in by_message.items():
        expected = NO_REQUEST if message == "outside any request" else "req_test"
        assert record["extra"]["request_id"] == expected, (message, record["extra"])
    assert by_message["authenticated"]["extra"]["header"] == "[redacted]"
    # The standard library's records keep their level, and say where they come from.
    assert by_message["stdlib says [redacted]"]["level"]["name"] == "WARNING"
    assert by_message["engine says [redacted]"]["level"]["name"] == "ERROR"
    assert by_message["stdlib says [redacted]"]["name"] != "gateway.observability.logging"
    assert by_message["stdlib traceback"]["exception"]["type"] == "RuntimeError"


def test_the_log_file_gets_json_lines_redacted_and_rotated(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "gateway.jsonl"
    key = "sk-filecanary" + "x" * 20
    script = textwrap.dedent(
        f"""
        from loguru import logger
        from gateway.observability.logging import configure_logging
        configure_logging(level="INFO", fmt="human", file={str(log_file)!r},
                          rotation="2 KB", retention="1 day")
        for i in range(40):
            logger.info("calling the upstream with {{}} {{}}", {key!r}, i)
        logger.complete()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    files = sorted(log_file.parent.iterdir())
    assert len(files) >= 2, "2 KB rotation must have produced more than one file"
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(lines) == 40
    assert all(key not in line["text"] for line in lines)
    assert all("[redacted]" in line["record"]["message"] for line in lines)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_alembics_start_up_lines_are_debug_detail(tmp_path: Path, level: str) -> None:
    """The schema check on every start must not log "Context impl SQLiteImpl." at INFO."""
    script = textwrap.dedent(
        f"""
        import anyio
        from loguru import logger
        from gateway.observability.logging import configure_logging
        from gateway.storage.database import Database

        async def main() -> None:
            db = Database.open("sqlite+aiosqlite:///{tmp_path / "orchestra.db"}")
            await db.upgrade()
            await db.ensure_current()
            await db.close()

        configure_logging(level={level!r}, fmt="json")
        anyio.run(main)
        logger.info("schema checked")
        logger.complete()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line)["record"] for line in done.stderr.splitlines()]
    levels = {r["message"]: r["level"]["name"] for r in records}
    assert levels["schema checked"] == "INFO"
    alembic = {m: lv for m, lv in levels.items() if "Context impl" in m or "DDL" in m}
    if level == "INFO":
        assert alembic == {}, alembic
    else:  # still there for whoever debugs a migration, at DEBUG
        assert alembic and set(alembic.values()) == {"DEBUG"}, levels
