"""The OpenTelemetry SDK behind ``CallTracer``: GenAI spans exported over OTLP/HTTP (protobuf).

Imported only when ``otlp_endpoint`` is set (see ``tracing.open_tracer``). Spans follow the
OpenTelemetry GenAI semantic conventions for an inference call: a ``chat {model}`` CLIENT span
with ``gen_ai.*`` attributes, time to first token as the ``orchestra.first_token`` event, and
Orchestra's own ``orchestra.*`` attributes (app, user, request id, route, outcome). Its clock is
the interaction record's, so the span lasts exactly the ``duration_ms`` that ``/logs`` shows.

The SDK's batch processor exports from its own thread: the event loop only appends the span to
a queue. The tracer provider is this object's, never the process-global one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.core.trace_context import upstream_traceparent
from gateway.observability.tracing import TracedCall

TRACES_PATH = "/v1/traces"
SERVICE_NAME = "orchestra-gateway"
#: Spans started and not yet ended; past this, the oldest is ended as is (a call path that
#: never records would otherwise grow the table forever).
MAX_OPEN_SPANS = 50_000
#: Seconds one export may take (the collector is down: spans are dropped, never the loop).
EXPORT_TIMEOUT_S = 10


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector's base URL (or the traces URL itself)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def _messages(prompt: Sequence[dict[str, Any]]) -> str:
    """The caller's messages in the GenAI conventions' ``gen_ai.input.messages`` shape."""
    return json.dumps(
        [
            {
                "role": str(message.get("role")),
                "parts": [{"type": "text", "content": _text(message.get("content"))}],
            }
            for message in prompt
        ]
    )


def _text(content: object) -> str:
    return content if isinstance(content, str) else json.dumps(content)


def _attributes(call: TracedCall) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.request.model": call.request_model,
        "gen_ai.response.model": call.response_model,
        "gen_ai.usage.input_tokens": call.input_tokens,
        "gen_ai.usage.output_tokens": call.output_tokens,
        "http.response.status_code": call.http_status,
        "orchestra.request_id": call.request_id,
        "orchestra.route": call.route,
        "orchestra.outcome": call.outcome,
        "orchestra.app": call.app_name,
        "orchestra.app_id": call.app_id,
        "orchestra.user": call.user,
        "orchestra.workflow": call.workflow,
        "orchestra.cost_usd": call.cost_usd,
    }
    if call.finish_reason is not None:
        attributes["gen_ai.response.finish_reasons"] = (call.finish_reason,)
    if call.outcome != "completed":
        attributes["error.type"] = call.error_code or call.outcome
    if call.prompt is not None:
        attributes["gen_ai.input.messages"] = _messages(call.prompt)
    if call.answer is not None:
        output = {
            "role": "assistant",
            "parts": [{"type": "text", "content": call.answer}],
            "finish_reason": call.finish_reason,
        }
        attributes["gen_ai.output.messages"] = json.dumps([output])
    return {name: value for name, value in attributes.items() if value is not None}


class OtelTracer:
    def __init__(self, endpoint: str, *, batch_delay_s: float, version: str) -> None:
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": SERVICE_NAME, "service.version": version}),
            shutdown_on_exit=False,  # the lifespan shuts it down, after the last record
        )
        exporter = OTLPSpanExporter(endpoint=traces_url(endpoint), timeout=EXPORT_TIMEOUT_S)
        self._provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=batch_delay_s * 1000)
        )
        self._tracer = self._provider.get_tracer("orchestra.gateway", version)
        self._propagator = TraceContextTextMapPropagator()
        self._open: dict[str, tuple[Span, int]] = {}

    def start(
        self, request_id: str, traceparent: str | None, tracestate: str | None, started: float
    ) -> None:
        carrier = {}
        if traceparent is not None:
            carrier["traceparent"] = traceparent
            if tracestate is not None:
                carrier["tracestate"] = tracestate
        # An invalid traceparent is ignored (a new trace starts), as the W3C spec asks.
        parent = self._propagator.extract(carrier) if carrier else None
        start_ns = time.time_ns() - int((time.perf_counter() - started) * 1e9)
        span = self._tracer.start_span(
            "chat",
            context=parent,
            kind=SpanKind.CLIENT,
            start_time=start_ns,
            attributes={"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"},
        )
        if len(self._open) >= MAX_OPEN_SPANS:
            oldest = next(iter(self._open))
            self._open.pop(oldest)[0].end()
        self._open[request_id] = (span, start_ns)
        outgoing: dict[str, str] = {}
        self._propagator.inject(outgoing, context=set_span_in_context(span))
        upstream_traceparent.set(outgoing.get("traceparent"))

    def end(self, call: TracedCall) -> None:
        opened = self._open.pop(call.request_id, None)
        if opened is None:
            return
        span, start_ns = opened
        model = call.request_model or call.response_model
        span.update_name(f"chat {model}" if model else "chat")
        span.set_attributes(_attributes(call))
        if call.ttft_s is not None:
            span.add_event(
                "orchestra.first_token",
                {"gen_ai.server.time_to_first_token": call.ttft_s},
                timestamp=start_ns + int(call.ttft_s * 1e9),
            )
        if call.outcome != "completed":
            # The code only: an error's message may quote the upstream.
            span.set_status(Status(StatusCode.ERROR, call.error_code or call.outcome))
        span.end(end_time=start_ns + int(call.duration_s * 1e9))

    def shutdown(self) -> None:
        for span, _ in self._open.values():
            span.end()
        self._open.clear()
        self._provider.shutdown()
