"""OpenAIStream over real sockets: SSE framing, named events, error events and the event bound.

A raw server on 127.0.0.1 sends the body bytes exactly as given (``raw_stream``).
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

import pytest

from gateway.core.errors import UpstreamError
from gateway.upstream.chat import OpenAIStream
from gateway.upstream.openai import OpenAIUpstream
from gateway.upstream.types import ChatRequest, Chunk
from tests.gateway.upstream.raw_server import chunk_json, raw_server, raw_stream

pytestmark = pytest.mark.anyio

KEY = "sk-proj-" + "A1b2C3d4" * 6


@asynccontextmanager
async def stream_of(
    reads: Iterable[bytes],
    *,
    max_event_bytes: int = 1_048_576,
    then_hang: bool = False,
    headers: Sequence[tuple[str, str]] = (),
) -> AsyncIterator[OpenAIStream]:
    handler = raw_stream(reads, then_hang=then_hang, headers=headers)
    async with raw_server(handler) as server:
        upstream = OpenAIUpstream(
            connect_timeout=1, first_token_timeout=2, max_event_bytes=max_event_bytes
        )
        request = ChatRequest(
            base_url=server.base_url,
            api_key=KEY,
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
        )
        try:
            stream = await upstream.open_stream(request)
            try:
                yield stream
            finally:
                await stream.aclose()
        finally:
            await upstream.aclose()


async def read_all(stream: OpenAIStream) -> list[Chunk]:
    chunks = []
    while (chunk := await stream.next_chunk(2.0)) is not None:
        chunks.append(chunk)
    return chunks


async def test_multi_line_data_is_joined_and_parsed() -> None:
    pretty = json.dumps(json.loads(chunk_json("multi ")), indent=2)  # the JSON over 15 lines
    body = "".join(f"data: {line}\n" for line in pretty.split("\n")) + "\n"
    async with stream_of([body.encode(), b"data: [DONE]\n\n"]) as stream:
        chunks = await read_all(stream)
    assert [c.text for c in chunks] == ["multi "]
    assert json.loads(chunks[0].raw) == json.loads(pretty)


@pytest.mark.parametrize("ending", ["\r", "\r\n"], ids=["cr", "crlf"])
async def test_cr_and_crlf_line_endings(ending: str) -> None:
    text = "".join(f"data: {p}{ending}{ending}" for p in (chunk_json("a"), chunk_json("b")))
    raw = (text + f"data: [DONE]{ending}{ending}").encode()
    # Cut after every CR: a CRLF pair is split across reads wherever it occurs.
    reads = [piece + b"\r" for piece in raw.split(b"\r")[:-1]] + [raw.split(b"\r")[-1]]
    async with stream_of(reads) as stream:
        assert [c.text for c in await read_all(stream)] == ["a", "b"]


async def test_done_with_odd_spacing_ends_the_stream() -> None:
    async with stream_of([f"data:{chunk_json('x')}\n\ndata:[DONE] \n\n".encode()]) as stream:
        assert [c.text for c in await read_all(stream)] == ["x"]


async def test_an_error_event_is_a_typed_error_with_the_redacted_message() -> None:
    error = {"error": {"message": f"Model overloaded for key {KEY}", "code": 503}}
    body = f"data: {chunk_json('partial ')}\n\nevent: error\ndata: {json.dumps(error)}\n\n"
    async with stream_of([body.encode()], then_hang=True) as stream:
        first = await stream.next_chunk(2.0)
        assert first is not None and first.text == "partial "
        with pytest.raises(UpstreamError) as raised:
            await stream.next_chunk(2.0)
    assert type(raised.value) is UpstreamError
    assert raised.value.code == "upstream_error"
    assert "Model overloaded" in raised.value.message
    assert KEY not in raised.value.message


@pytest.mark.parametrize(
    "data",
    [
        '{"error": {"message": "CUDA out of memory", "type": "InternalServerError"}}',
        '{"error": "CUDA out of memory"}',
        '{"message": "CUDA out of memory"}',
    ],
    ids=["openai-shape", "string", "message-only"],
)
async def test_an_error_event_of_any_shape_says_what_the_upstream_said(data: str) -> None:
    async with stream_of([f"event: error\ndata: {data}\n\n".encode()], then_hang=True) as stream:
        with pytest.raises(UpstreamError) as raised:
            await stream.next_chunk(2.0)
    assert "CUDA out of memory" in raised.value.message


async def test_an_error_chunk_without_event_name_is_a_typed_error() -> None:
    """vLLM and other OpenAI-compatible servers send ``data: {"error": ...}`` mid-stream."""
    error = {"error": {"message": f"Engine died ({KEY})", "type": "InternalServerError"}}
    body = f"data: {chunk_json('a')}\n\ndata: {json.dumps(error)}\n\n"
    async with stream_of([body.encode()], then_hang=True) as stream:
        assert (await stream.next_chunk(2.0)) is not None
        with pytest.raises(UpstreamError) as raised:
            await stream.next_chunk(2.0)
    assert "Engine died" in raised.value.message
    assert KEY not in raised.value.message


async def test_a_chunk_that_mentions_error_in_its_text_is_a_chunk() -> None:
    text = 'the word "error" and error'
    body = f"data: {chunk_json(text)}\n\ndata: [DONE]\n\n"
    async with stream_of([body.encode()]) as stream:
        assert [c.text for c in await read_all(stream)] == [text]


async def test_other_named_events_are_skipped_and_ready_says_so() -> None:
    body = (
        f"data: {chunk_json('a')}\n\n"
        "event: ping\ndata: {}\n\n"
        f"event: message\ndata: {chunk_json('b')}\n\n"
        "event: stats\ndata: {}\n\n"
    )
    async with stream_of([body.encode()], then_hang=True) as stream:
        first = await stream.next_chunk(2.0)
        assert first is not None and first.text == "a"
        assert stream.ready()  # "ping" is skipped, "b" is here
        second = await stream.next_chunk(2.0)
        assert second is not None and second.text == "b"
        assert not stream.ready()  # only "stats" is left: next_chunk would wait


async def test_an_event_past_the_bound_ends_the_answer_without_reading_the_rest() -> None:
    endless = [b"data: "] + [b"x" * 65_536] * 200  # 12.5 MiB without a line ending
    async with stream_of(endless, max_event_bytes=100_000) as stream:
        with pytest.raises(UpstreamError) as raised:
            await stream.next_chunk(2.0)
    assert type(raised.value) is UpstreamError
    assert "larger than 100000 bytes" in raised.value.message


async def test_events_below_the_bound_pass_however_many() -> None:
    event = f"data: {chunk_json('y' * 900)}\n\n".encode()
    async with stream_of([event * 40, b"data: [DONE]\n\n"], max_event_bytes=2048) as stream:
        assert len(await read_all(stream)) == 40


async def test_a_compressed_endless_event_is_cut_with_bounded_memory() -> None:
    """50 MiB that gzip packs into 50 KiB: decoded a bounded piece at a time, then cut."""
    limit = 1_048_576
    packed = gzip.compress(b"data: " + b"x" * (50 * limit), compresslevel=9)
    reads = [packed[i : i + 16_384] for i in range(0, len(packed), 16_384)]
    tracemalloc.start()
    try:
        async with stream_of(
            reads, max_event_bytes=limit, headers=[("content-encoding", "gzip")]
        ) as stream:
            with pytest.raises(UpstreamError) as raised:
                await stream.next_chunk(2.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"larger than {limit} bytes" in raised.value.message
    assert peak < 4 * limit, f"peak {peak / limit:.1f} MiB"
