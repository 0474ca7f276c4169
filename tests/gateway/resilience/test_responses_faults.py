"""The Responses API through the resilience gateway: retries before the first byte, a cut
stream, an upstream error event (redacted), a malformed event: each a clean end and one record.

Real processes (the resilience gateway of conftest.py: 3 attempts) and raw servers of the test.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import httpx
import pytest
from anyio.abc import SocketStream

from gateway.fakes.response_events import EventEncoder, ResponseShape, usage
from tests.gateway.http.conftest import MODEL
from tests.gateway.resilience.conftest import ATTEMPTS, Tenants, call, record_of
from tests.gateway.upstream.raw_server import RawRequest, answer, raw_server, raw_stream

pytestmark = pytest.mark.anyio


def events(words: Sequence[str], *, complete: bool = True) -> list[bytes]:
    """OpenAI's events of an answer made of ``words`` (the fake's encoder), cut if not complete."""
    shape = ResponseShape(id="resp_raw1", created_at=0, model=MODEL, item_id="msg_1", request={})
    encoder = EventEncoder(shape)
    reads = [*encoder.opening(), *(encoder.delta(w) for w in words)]
    if complete:
        shape.text, shape.status, shape.usage = "".join(words), "completed", usage(5, len(words))
        reads.extend(encoder.closing("".join(words)))
    return reads


async def test_5xx_before_the_first_byte_are_retried_then_the_stream_passes(
    client: httpx.AsyncClient, tenants: Tenants
) -> None:
    failing = answer(500, {"error": {"message": "boom", "type": "server_error"}})
    healthy = raw_stream(events(["raw ", "answer "]))
    seen = 0

    async def flaky(request: RawRequest, stream: SocketStream) -> None:
        nonlocal seen
        seen += 1
        await (healthy if seen == ATTEMPTS else failing)(request, stream)

    async with raw_server(flaky) as server:
        app = await tenants.add(base_url=server.base_url)
        ended = await call(
            client, app, {"model": MODEL, "input": "hi", "stream": True}, path="/v1/responses"
        )
        assert ended.status == 200 and ended.cut is None, ended
        assert ended.names[-1] == "response.completed"
        assert [r.path for r in server.requests] == ["/v1/responses"] * ATTEMPTS
        record = await record_of(client, app, ended.request_id)
        assert (record["outcome"], record["completion_tokens"]) == ("completed", 2)


@pytest.mark.parametrize(
    ("reads", "message"),
    [
        (events(["cut "], complete=False), "ended before it was complete"),
        (
            [
                *events(["one "], complete=False)[:4],
                b'event: error\ndata: {"type":"error",'
                b'"code":"server_error","message":"key KEY refused","sequence_number":4}\n\n',
            ],
            "key [REDACTED] refused",
        ),
        ([*events([], complete=False), b"event: response.created\ndata: [1]\n\n"], "malformed"),
    ],
    ids=["cut", "error-event", "malformed"],
)
async def test_a_stream_that_fails_after_the_start_ends_with_an_error_event(
    client: httpx.AsyncClient, tenants: Tenants, reads: list[bytes], message: str
) -> None:
    key = "sk-raw-secret-0123456789abcdef"
    reads = [read.replace(b"KEY", key.encode()) for read in reads]
    async with raw_server(raw_stream(reads)) as server:
        app = await tenants.add(base_url=server.base_url, provider_key=key)
        ended = await call(
            client, app, {"model": MODEL, "input": "hi", "stream": True}, path="/v1/responses"
        )
    assert ended.status == 200
    last = ended.last
    assert last.name == "error", ended.events
    error = json.loads(last.data)
    assert error["type"] == "error" and error["code"] == "upstream_error"
    assert message.split("[")[0] in error["message"] and key not in last.data
    record = await record_of(client, app, ended.request_id)
    assert record["outcome"] == "upstream_error"
