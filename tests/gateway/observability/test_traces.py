"""OpenTelemetry traces against real parts: an OTLP/HTTP receiver, the gateway, the fake.

The gateway (``orchestra serve`` with ``ORCHESTRA_OTLP_ENDPOINT``) exports to a receiver this
module runs (``tests/support/otlp_collector.py`` decodes the protobuf); the fake records the
``traceparent`` each upstream request carried. Two more gateways, started with Python's import
profiler on, show that the SDK is imported only when the endpoint is set, and that what is still
buffered at shutdown is exported.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import openai
import pytest

from gateway.services import apps as app_service
from tests.gateway.http.conftest import (
    MODEL,
    TLS,
    AppHandle,
    Apps,
    Fake,
    Gateway,
    Server,
    ask_stream,
    child_env,
    free_port,
    gateway_settings,
    poll,
    run_cli,
    running_gateway,
    spawn,
)
from tests.support.otlp_collector import OtlpCollector, ReceivedSpan, otlp_collector

pytestmark = pytest.mark.anyio

#: Spans leave the traced gateway in batches this often.
BATCH_DELAY_S = 0.1
#: How long a span may take to arrive (a batch, on a loaded machine).
SPAN_TIMEOUT_S = 10.0
FAKE_TOKENS = 8
#: What tracing adds to a process: the SDK, the OTLP exporter and its protobuf and HTTP stack.
SDK_MODULES = (
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "opentelemetry.proto",
    "google.protobuf",
    "requests",
)


@dataclass
class Traced:
    collector: OtlpCollector
    fake: Fake
    gateway: Gateway
    home: Path
    logs: Path


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    root = tmp_path_factory.mktemp("traces")
    logs, home = root / "logs", root / "home"
    with otlp_collector() as collector:
        fake = spawn(
            "fake", ["fake-openai", "--tokens", str(FAKE_TOKENS)], child_env({}), logs, free_port()
        )
        try:
            run_cli(["init"], child_env({"home": home}))
            with running_gateway(
                home,
                logs,
                otlp_endpoint=collector.url,
                otlp_batch_delay_s=BATCH_DELAY_S,
                # Not the short timeouts: a workflow's first run loads LangGraph.
                first_token_timeout_s=30,
                idle_timeout_s=30,
            ) as gateway:
                fake.wait_ready("/_fake/health")
                yield Traced(collector, Fake(fake), gateway, home, logs)
        finally:
            fake.stop()


@pytest.fixture
def apps(traced: Traced, issued_secrets: set[str]) -> Apps:
    return Apps(traced.gateway, traced.fake, issued_secrets, "traces")


async def span_of(collector: OtlpCollector, request_id: str) -> ReceivedSpan:
    """The one span of the request ``request_id`` (waits for its batch)."""

    async def found() -> list[ReceivedSpan]:
        return collector.where(**{"orchestra.request_id": request_id})

    spans = await poll(found, lambda spans: len(spans) > 0, timeout=SPAN_TIMEOUT_S)
    assert len(spans) == 1, spans
    return spans[0]


def new_traceparent() -> tuple[str, str, str]:
    """A sampled W3C traceparent of a caller's span: (header, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def sampled_context(traceparent: str) -> tuple[str, str]:
    """(trace id, parent span id) of a sampled version-00 traceparent (any other flags)."""
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and int(flags, 16) & 1, traceparent
    return trace_id, span_id


def sdk_for(gateway: Gateway, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=token,
        base_url=f"{gateway.url}/v1",
        max_retries=0,
        timeout=10,
        http_client=openai.DefaultAsyncHttpxClient(verify=TLS),
    )


async def test_a_streamed_answer_is_one_chat_span_in_the_callers_trace(
    traced: Traced, apps: Apps
) -> None:
    app = await apps.add()
    header, trace_id, caller_span = new_traceparent()
    marker = f"trace-{secrets.token_hex(4)}"
    async with traced.gateway.client() as client:
        streamed = await ask_stream(
            client, app, {"prompt": f"hello {marker}"}, {"traceparent": header}
        )
    assert streamed.names[-1] == "done"
    done = streamed.events[-1].json

    span = await span_of(traced.collector, streamed.request_id)
    assert span.name == f"chat {MODEL}"
    assert span.kind == "CLIENT"
    assert (span.trace_id, span.parent_span_id) == (trace_id, caller_span)
    attributes = span.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.response.model"] == done["model"]
    assert attributes["gen_ai.usage.input_tokens"] == done["usage"]["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == done["usage"]["completion_tokens"]
    assert done["usage"]["completion_tokens"] == FAKE_TOKENS
    assert attributes["gen_ai.response.finish_reasons"] == [done["finish_reason"]] == ["stop"]
    assert attributes["orchestra.app"] == app.name
    assert attributes["orchestra.app_id"] == app.id
    assert attributes["orchestra.route"] == "/ask"
    assert attributes["orchestra.outcome"] == "completed"
    assert "orchestra.user" not in attributes  # the app's own token: no end user
    assert span.status == "UNSET"
    assert "error.type" not in attributes
    (first_token,) = [e for e in span.events if e.name == "orchestra.first_token"]
    assert span.start_ns < first_token.time_ns < span.end_ns
    ttft_s = first_token.attributes["gen_ai.server.time_to_first_token"]
    assert ttft_s == pytest.approx((first_token.time_ns - span.start_ns) / 1e9, abs=1e-6)
    assert span.resource["service.name"] == "orchestra-gateway"

    # The upstream request is a child of this span, in the caller's trace.
    upstream = await traced.fake.request_with(marker)
    assert upstream["traceparent"] == f"00-{trace_id}-{span.span_id}-01"


@pytest.mark.parametrize("workflow", ["conversation", "moderated"])
async def test_a_workflows_upstream_calls_join_the_trace(
    traced: Traced, apps: Apps, workflow: str
) -> None:
    app = await apps.add()
    await traced.gateway.with_database(
        lambda db: app_service.update_app(db, app.name, app_service.AppChanges(workflow=workflow))
    )
    header, trace_id, _ = new_traceparent()
    marker = f"{workflow}-{secrets.token_hex(4)}"
    async with traced.gateway.client() as client:
        streamed = await ask_stream(
            client, app, {"prompt": f"hello {marker}"}, {"traceparent": header}
        )
    assert streamed.names[-1] == "done", streamed.events[-1]
    span = await span_of(traced.collector, streamed.request_id)
    assert span.trace_id == trace_id
    assert span.attributes["orchestra.workflow"] == workflow
    calls = await traced.fake.requests_with(marker)  # the moderation check, then the chat
    assert len(calls) == (2 if workflow == "moderated" else 1), calls
    for call in calls:
        assert sampled_context(call["traceparent"]) == (trace_id, span.span_id)


async def test_chat_completions_without_a_traceparent_start_a_trace(
    traced: Traced, apps: Apps
) -> None:
    app = await apps.add()
    for stream in (False, True):
        marker = f"sdk-{secrets.token_hex(4)}"
        async with sdk_for(traced.gateway, app.token) as sdk:
            raw = await sdk.chat.completions.with_raw_response.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"hi {marker}"}],
                stream=stream,
                **({"stream_options": {"include_usage": True}} if stream else {}),
            )
            parsed = raw.parse()
            if stream:
                chunks = [chunk async for chunk in parsed]
                finish = next(
                    c.choices[0].finish_reason
                    for c in chunks
                    if c.choices and c.choices[0].finish_reason
                )
                usage = chunks[-1].usage
            else:
                finish, usage = parsed.choices[0].finish_reason, parsed.usage
        assert usage is not None

        span = await span_of(traced.collector, raw.headers["x-request-id"])
        assert span.parent_span_id == ""  # a trace of its own
        assert span.name == f"chat {MODEL}"
        attributes = span.attributes
        assert attributes["orchestra.route"] == "/v1/chat/completions"
        assert attributes["gen_ai.response.finish_reasons"] == [finish]
        assert attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens
        assert attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens
        upstream = await traced.fake.request_with(marker)
        assert sampled_context(upstream["traceparent"]) == (span.trace_id, span.span_id)


async def test_an_invalid_traceparent_starts_a_new_trace(traced: Traced, apps: Apps) -> None:
    app = await apps.add()
    zero = "00-" + "0" * 32 + "-00f067aa0ba902b7-01"  # an all-zero trace id is invalid
    async with traced.gateway.client() as client:
        for header in ("garbage", zero, "00-" + "a" * 31 + "-00f067aa0ba902b7-01"):
            streamed = await ask_stream(client, app, {"prompt": "hi"}, {"traceparent": header})
            assert streamed.names[-1] == "done"
            span = await span_of(traced.collector, streamed.request_id)
            assert span.parent_span_id == ""
            assert span.trace_id != "0" * 32


async def test_a_refused_call_is_an_error_span(traced: Traced) -> None:
    header, trace_id, caller_span = new_traceparent()
    forged = "orc_" + secrets.token_urlsafe(24)
    async with traced.gateway.client() as client:
        response = await client.post(
            "/ask",
            json={"prompt": "hi"},
            headers={"Authorization": f"Bearer {forged}", "traceparent": header},
        )
    assert response.status_code == 401
    span = await span_of(traced.collector, response.headers["x-request-id"])
    assert span.name == "chat"  # refused before a model was chosen
    assert (span.trace_id, span.parent_span_id) == (trace_id, caller_span)
    assert span.status == "ERROR"
    assert span.attributes["error.type"] == response.json()["error"]["code"]
    assert span.attributes["http.response.status_code"] == 401
    assert forged.encode() not in traced.collector.raw()


async def mint_session(client: httpx.AsyncClient, app: AppHandle, user: str) -> str:
    response = await client.post("/sessions", json={"user": user}, headers=app.auth)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def test_no_secret_and_no_conversation_text_in_any_span(
    traced: Traced, apps: Apps, issued_secrets: set[str]
) -> None:
    app = await apps.add()
    user = f"user-{secrets.token_hex(4)}"
    prompt = f"my secret plan {secrets.token_hex(8)}"
    async with traced.gateway.client() as client:
        session = await mint_session(client, app, user)
        as_user = {"Authorization": f"Bearer {session}"}
        streamed = await ask_stream(client, app, {"prompt": prompt}, as_user)
        refused = await client.post(
            "/ask", json={"prompt": prompt, "model": "not-allowed"}, headers=as_user
        )
    assert refused.status_code == 400, refused.text

    span = await span_of(traced.collector, streamed.request_id)
    assert span.attributes["orchestra.user"] == user
    assert "gen_ai.input.messages" not in span.attributes
    assert "gen_ai.output.messages" not in span.attributes
    await span_of(traced.collector, refused.headers["x-request-id"])
    # Every byte exported so far, by every test of this module.
    exported = traced.collector.raw()
    assert streamed.text and streamed.text.encode() not in exported
    assert prompt.encode() not in exported
    assert session.encode() not in exported
    assert app.provider_key and app.token
    for secret in issued_secrets:
        assert secret.encode() not in exported


async def test_an_app_logging_full_content_puts_the_conversation_in_its_span(
    traced: Traced, apps: Apps
) -> None:
    app = await apps.add(log_content="full")
    prompt = f"say something {secrets.token_hex(4)}"
    async with traced.gateway.client() as client:
        streamed = await ask_stream(client, app, {"prompt": prompt})
    span = await span_of(traced.collector, streamed.request_id)
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": prompt}]}
    ]
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": streamed.text}],
            "finish_reason": "stop",
        }
    ]
    assert app.token.encode() not in traced.collector.raw()


# --- the cost when it is off, the flush when it stops ---------------------------------------


def profiled_gateway(traced: Traced, home: Path, name: str, **overrides: object) -> Server:
    """``orchestra serve`` with Python's import profiler on: its stderr lists every import."""
    env = child_env(gateway_settings(home, **overrides))
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    return spawn(name, ["serve"], env, traced.logs, free_port())


def imported(server: Server) -> set[str]:
    modules = set()
    for line in server.stderr().splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    return modules


async def serve_traffic(server: Server, app: AppHandle) -> str:
    """One streamed /ask and one /v1 completion; the /ask's request id."""
    await server.wait_ready_async("/status")
    async with httpx.AsyncClient(base_url=server.url, timeout=10, verify=TLS) as client:
        streamed = await ask_stream(client, app, {"prompt": "hi"})
        response = await client.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            headers=app.auth,
        )
    assert response.status_code == 200, response.text
    return streamed.request_id


async def test_without_the_endpoint_the_sdk_is_never_imported(
    traced: Traced, issued_secrets: set[str]
) -> None:
    # A home of its own, with direct apps only: once an app uses a workflow, LangGraph loads,
    # and langsmith (under langchain-core) imports opentelemetry.sdk.trace whenever it is
    # installed (~50 ms and 0.5 MB within LangGraph's seconds; it exports nothing).
    home = traced.home.parent / "untraced-home"
    await anyio.to_thread.run_sync(run_cli, ["init"], child_env({"home": home}))
    server = profiled_gateway(traced, home, "untraced")
    try:
        await server.wait_ready_async("/status")
        gateway = Gateway(server, home, {}, f"sqlite+aiosqlite:///{home}/orchestra.db")
        app = await Apps(gateway, traced.fake, issued_secrets, "untraced").add()
        await serve_traffic(server, app)
    finally:
        await anyio.to_thread.run_sync(server.stop)
    modules = imported(server)
    assert {"gateway.services.ask", "gateway.observability.tracing"} <= modules
    # FastAPI itself imports the OpenTelemetry API (no-op without an SDK): that is the baseline.
    assert {m for m in modules if m.startswith(SDK_MODULES)} == set()
    assert "gateway.observability.otel" not in modules


async def test_spans_still_buffered_at_shutdown_are_exported(traced: Traced, apps: Apps) -> None:
    app = await apps.add()
    # A batch delay far longer than the test: only the shutdown's flush can export the span.
    server = profiled_gateway(
        traced, traced.home, "flushed", otlp_endpoint=traced.collector.url, otlp_batch_delay_s=60
    )
    try:
        request_id = await serve_traffic(server, app)
        await anyio.sleep(0.5)
        assert traced.collector.where(**{"orchestra.request_id": request_id}) == []
    finally:
        await anyio.to_thread.run_sync(server.stop)
    assert server.process.returncode is not None  # it exited (uvicorn re-raises SIGTERM)
    span = await span_of(traced.collector, request_id)
    assert span.attributes["orchestra.outcome"] == "completed"
    # The same measurement as above does see the SDK when the endpoint is set.
    assert {"opentelemetry.sdk.trace", "google.protobuf"} <= imported(server)
