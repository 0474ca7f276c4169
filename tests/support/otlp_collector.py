"""A real OTLP/HTTP trace receiver for tests: ``POST /v1/traces`` with protobuf bodies.

It decodes each ``ExportTraceServiceRequest`` with ``opentelemetry-proto`` (what a collector
does) and keeps the spans, flattened, plus every raw body (so that a test can look for a secret
in the bytes themselves, whatever field it might hide in). It runs in a thread of the test
process; the gateway under test exports to it over a socket like to any collector.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

TRACES_PATH = "/v1/traces"


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


@dataclass(frozen=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: str  # "CLIENT", "SERVER", ...
    trace_id: str  # hex, as in a traceparent
    span_id: str
    parent_span_id: str  # "" for a root span
    start_ns: int
    end_ns: int
    status: str  # "UNSET", "OK", "ERROR"
    status_message: str
    attributes: dict[str, Any]
    events: list[SpanEvent]
    resource: dict[str, Any]
    scope: str

    @classmethod
    def of(cls, span: Span, resource: dict[str, Any], scope: str) -> ReceivedSpan:
        return cls(
            name=span.name,
            kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            start_ns=span.start_time_unix_nano,
            end_ns=span.end_time_unix_nano,
            status=span.status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
            status_message=span.status.message,
            attributes=_attributes(span.attributes),
            events=[
                SpanEvent(e.name, e.time_unix_nano, _attributes(e.attributes)) for e in span.events
            ],
            resource=resource,
            scope=scope,
        )


@dataclass
class OtlpCollector:
    """What was received so far (thread-safe appends; read ``spans``/``bodies`` any time)."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = [
            ReceivedSpan.of(span, _attributes(rs.resource.attributes), ss.scope.name)
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]
        with self._lock:
            self.bodies.append(body)
            self.spans.extend(spans)

    def where(self, **attributes: Any) -> list[ReceivedSpan]:
        with self._lock:
            spans = list(self.spans)
        return [s for s in spans if all(s.attributes.get(k) == v for k, v in attributes.items())]

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(self.bodies)


class _Handler(BaseHTTPRequestHandler):
    collector: OtlpCollector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != TRACES_PATH or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_error(404 if self.path != TRACES_PATH else 415)
            return
        self.collector.receive(body)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: one line per export would only bury a failing test's output


@contextmanager
def otlp_collector() -> Iterator[OtlpCollector]:
    """A receiver on a free port of 127.0.0.1 (``collector.url`` is its base URL)."""
    collector = OtlpCollector()
    handler = type("Handler", (_Handler,), {"collector": collector})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    collector.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="otlp-collector", daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
