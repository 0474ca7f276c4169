"""Traces: one OpenTelemetry span per answered request, when an OTLP endpoint is configured.

The call path has two hooks and nothing more: ``start`` where a call begins (it continues the
caller's W3C ``traceparent`` and sets the one the upstream request carries) and ``end`` where
the call's interaction record is written (the record already holds the model, usage, finish
reason, timings, app and user, so the span says what ``/logs`` and the metrics say).

Without ``otlp_endpoint`` this module is all that is loaded: ``open_tracer`` returns None, the
hooks cost one ``is None`` test, and the OpenTelemetry SDK is never imported (start-up time and
idle memory unchanged). With it, ``gateway.observability.otel`` is imported once, at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class TracedCall:
    """What one finished call contributes to its span (built from the interaction record).

    ``prompt`` and ``answer`` are set only when the app logs content ``full``; otherwise no
    text of the conversation ever reaches a span.
    """

    request_id: str
    route: str
    outcome: str
    http_status: int
    app_id: str | None
    app_name: str | None
    user: str | None
    workflow: str | None
    #: The model the app asked for (its configuration bounds it), and the one that answered.
    request_model: str | None
    response_model: str | None
    finish_reason: str | None
    error_code: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    ttft_s: float | None
    duration_s: float
    prompt: Sequence[dict[str, Any]] | None = None
    answer: str | None = None


class CallTracer(Protocol):
    def start(
        self, request_id: str, traceparent: str | None, tracestate: str | None, started: float
    ) -> None:
        """Open the call's span (``started``: its ``time.perf_counter()``), continuing the
        caller's trace context, and make it the parent of the call's upstream requests."""

    def end(self, call: TracedCall) -> None:
        """Close the span ``start`` opened for ``call.request_id`` (no span: nothing)."""

    def shutdown(self) -> None:
        """Export what is still buffered and stop (blocking: run it in a thread)."""


def open_tracer(settings: Settings, *, version: str) -> CallTracer | None:
    """The tracer the settings ask for: None (and no import) without ``otlp_endpoint``."""
    if settings.otlp_endpoint is None:
        return None
    from gateway.observability.otel import OtelTracer  # the SDK: only when tracing is on

    return OtelTracer(
        settings.otlp_endpoint, batch_delay_s=settings.otlp_batch_delay_s, version=version
    )
