"""The upstream's SSE framing through a real gateway: bounded events, multi-line data, CR endings.

A raw server sends the body bytes exactly as given. The gateway is the fault suite's
``orchestra serve`` (default ``upstream_max_event_bytes``: 1 MiB); its memory is read from
/proc: the peak RSS (VmHWM) is reset before the call through /proc/PID/clear_refs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.settings import Settings
from tests.gateway.http.conftest import Gateway
from tests.gateway.resilience.conftest import (
    Tenants,
    assert_reservation_released,
    call,
    quota_limits,
    record_of,
)
from tests.gateway.upstream.raw_server import chunk_json, fault_then_fine, raw_server, raw_stream

pytestmark = pytest.mark.anyio

LIMIT = Settings.model_fields["upstream_max_event_bytes"].default
MIB = 1_048_576


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset VmHWM to the current RSS


def _openai_events(text: str) -> list[str]:
    """The data of each event of an OpenAI stream (multi-line data joined), comments skipped."""
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            assert all(line.startswith("data: ") for line in lines), block
            events.append("\n".join(line.removeprefix("data: ") for line in lines))
    return events


async def _openai_stream(client: httpx.AsyncClient, token: str, prompt: str) -> list[str]:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {token}"}
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status_code == 200
        return _openai_events((await r.aread()).decode())


def _start(*words: str) -> bytes:
    return "".join(f"data: {chunk_json(w)}\n\n" for w in (None, *words)).encode()


#: 50 MiB of one data line that never ends, after a role chunk and one word.
ENDLESS_EVENT = [_start("fine "), b"data: ", *[b"x" * 65_536] * 800]


async def test_an_endless_event_is_cut_at_the_bound_with_bounded_memory(
    client: httpx.AsyncClient, tenants: Tenants, r_gateway: Gateway
) -> None:
    async with raw_server(fault_then_fine(raw_stream(ENDLESS_EVENT))) as server:
        app = await tenants.add(base_url=server.base_url, quota=quota_limits())
        pid = r_gateway.server.process.pid
        before_kib = _status_kib(pid, "VmRSS")
        _reset_peak_rss(pid)
        ended = await call(client, app, {"prompt": "hi"})
        peak_kib = _status_kib(pid, "VmHWM")

        assert ended.assert_typed_end() == "error:upstream_error", (ended.names, ended.cut)
        # The gateway holds at most the bound plus one read; the old parser held all 50 MiB.
        grown = (peak_kib - before_kib) * 1024
        assert grown < 3 * LIMIT + 16 * MIB, f"peak RSS grew by {grown / MIB:.1f} MiB"
        assert f"larger than {LIMIT} bytes" in ended.last.json["message"]
        assert [e.json["text"] for e in ended.deltas] == ["fine "]
        record = await record_of(client, app, ended.request_id)
        assert (record["outcome"], record["error_code"]) == ("upstream_error", "upstream_error")
        assert record["completion_tokens"] == 1
        await assert_reservation_released(client, app)


async def test_an_endless_event_on_v1_ends_with_an_openai_error_chunk(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    async with raw_server(fault_then_fine(raw_stream(ENDLESS_EVENT))) as server:
        app = await tenants.add(base_url=server.base_url, quota=quota_limits())
        events = await _openai_stream(client, app.token, "hi")
        assert "[DONE]" not in events
        last = json.loads(events[-1])
        assert last["error"]["code"] == "upstream_error", last
        assert [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]] == [
            "",
            "fine ",
        ]
        await assert_reservation_released(client, app)


def _pretty(text: str | None = None, finish: str | None = None) -> str:
    """A chunk as JSON over many lines, each sent as its own data line."""
    pretty = json.dumps(json.loads(chunk_json(text, finish=finish)), indent=1)
    return "".join(f"data: {line}\n" for line in pretty.split("\n")) + "\n"


MULTI_LINE = [
    (_pretty() + _pretty("one ") + _pretty("two")).encode(),
    (_pretty(finish="stop") + "data: [DONE]\n\n").encode(),
]


async def test_multi_line_data_fields_are_joined_and_parsed(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    async with raw_server(fault_then_fine(raw_stream(MULTI_LINE))) as server:
        app = await tenants.add(base_url=server.base_url, quota=quota_limits())
        ended = await call(client, app, {"prompt": "hi"})
        assert ended.assert_typed_end() == "done", (ended.names, ended.events[-1:])
        assert [e.json["text"] for e in ended.deltas] == ["one ", "two"]
        record = await record_of(client, app, ended.request_id)
        assert (record["outcome"], record["completion_tokens"]) == ("completed", 2)
        await assert_reservation_released(client, app)


async def test_multi_line_data_is_forwarded_on_v1_as_one_event(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    async with raw_server(fault_then_fine(raw_stream(MULTI_LINE))) as server:
        app = await tenants.add(base_url=server.base_url, quota=quota_limits())
        events = await _openai_stream(client, app.token, "hi")
    assert events[-1] == "[DONE]"
    chunks: list[dict[str, Any]] = [json.loads(e) for e in events[:-1]]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "one ", "two", ""]


async def test_cr_only_line_endings(client: httpx.AsyncClient, tenants: Tenants) -> None:
    body = _start("c", "r ", "only").replace(b"\n", b"\r") + b"data: [DONE]\r\r"
    reads = [body[i : i + 7] for i in range(0, len(body), 7)]  # cuts fall anywhere
    async with raw_server(fault_then_fine(raw_stream(reads))) as server:
        app = await tenants.add(base_url=server.base_url, quota=quota_limits())
        ended = await call(client, app, {"prompt": "hi"})
        assert ended.assert_typed_end() == "done", (ended.names, ended.events[-1:])
        assert [e.json["text"] for e in ended.deltas] == ["c", "r ", "only"]
        await assert_reservation_released(client, app)
