"""One record per interaction, written in batches off the request path.

``record()`` never waits on the database: it appends to a bounded in-memory buffer that a
background loop (started in the server's lifespan) flushes every ``flush_interval`` seconds or
when ``batch_size`` records are waiting. ``close()`` flushes what is left, so nothing is lost on
a clean shutdown. When the database is down, records stay buffered and are retried; if the
buffer overflows, the oldest are dropped and counted, never silently. Rows the database refuses
are split out of their batch (see ``flush``), so they never block the records of other apps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import anyio
from loguru import logger

from gateway.core.clock import utcnow
from gateway.core.errors import StorageUnavailable
from gateway.observability.metrics import Metrics, Observation
from gateway.observability.tracing import CallTracer, TracedCall
from gateway.storage import request_logs
from gateway.storage.database import Database


@dataclass(slots=True)
class InteractionRecord:
    time: datetime
    request_id: str
    route: str
    outcome: str
    http_status: int
    app_id: str | None = None
    app_name: str | None = None
    #: The end user (never a metric label: unbounded); None for the app token's calls.
    user: str | None = None
    model: str | None = None
    #: The app's workflow that answered (direct, conversation, moderated); None if refused earlier.
    workflow: str | None = None
    error_code: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    cost_usd: float = 0.0
    origin: str | None = None
    prompt_text: str | None = None
    answer_text: str | None = None
    request_metadata: dict[str, Any] | None = field(default=None)
    #: Answered from the app's answer cache (no upstream call, no tokens, no cost).
    cached: bool = False
    # For the metrics only (not stored): the quota that refused, the upstream's time.
    quota_limit: str | None = field(default=None, compare=False)
    upstream_s: float | None = field(default=None, compare=False)
    #: The model as the app asked for it (bounded by its configuration): the metrics' label.
    #: ``model`` is what the upstream reported, which any upstream can make unbounded.
    metric_model: str | None = field(default=None, compare=False)
    # For the trace only (not stored): why the upstream stopped, and the caller's messages
    # (set only when the app logs content ``full``, like prompt_text).
    finish_reason: str | None = field(default=None, compare=False)
    prompt_messages: list[dict[str, Any]] | None = field(default=None, compare=False, repr=False)

    def row(self) -> dict[str, Any]:
        """The columns of the request_logs row (shallow: ``asdict`` deep-copies the metadata)."""
        return {name: getattr(self, name) for name in _ROW_COLUMNS}

    def observation(self) -> Observation:
        return Observation(
            route=self.route,
            app=self.app_name or "unknown",
            outcome=self.outcome,
            http_status=self.http_status,
            model=self.metric_model or self.model,
            error_code=self.error_code,
            quota_limit=self.quota_limit,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_usd=self.cost_usd,
            duration_s=self.duration_ms / 1000,
            ttft_s=None if self.ttft_ms is None else self.ttft_ms / 1000,
            upstream_s=self.upstream_s,
        )

    def traced(self) -> TracedCall:
        return TracedCall(
            request_id=self.request_id,
            route=self.route,
            outcome=self.outcome,
            http_status=self.http_status,
            app_id=self.app_id,
            app_name=self.app_name,
            user=self.user,
            workflow=self.workflow,
            request_model=self.metric_model or self.model,
            response_model=self.model,
            finish_reason=self.finish_reason,
            error_code=self.error_code,
            input_tokens=self.prompt_tokens,
            output_tokens=self.completion_tokens,
            cost_usd=self.cost_usd,
            ttft_s=None if self.ttft_ms is None else self.ttft_ms / 1000,
            duration_s=self.duration_ms / 1000,
            prompt=self.prompt_messages if self.prompt_text is not None else None,
            answer=self.answer_text,
        )


#: Everything but the metrics-only and trace-only fields.
_ROW_COLUMNS = tuple(
    f.name
    for f in fields(InteractionRecord)
    if f.name
    not in ("quota_limit", "upstream_s", "metric_model", "finish_reason", "prompt_messages")
)


#: Failed flushes in a row after which an unclassified error is taken as the rows' fault.
_SPLIT_AFTER = 3


class InteractionRecorder:
    def __init__(
        self,
        db: Database,
        *,
        batch_size: int = 200,
        flush_interval: float = 0.2,
        max_buffered: int = 100_000,
        metrics: Metrics | None = None,
        tracer: CallTracer | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics
        self._tracer = tracer
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._buffer: deque[InteractionRecord] = deque()
        #: The batch being written: out of the buffer, not yet committed.
        self._writing: list[InteractionRecord] = []
        self._max_buffered = max_buffered
        self._wakeup = anyio.Event()
        self.dropped = 0
        self.written = 0
        #: Failed flushes in a row that were neither refused rows nor the database unavailable.
        self._failures = 0

    def record(self, record: InteractionRecord) -> None:
        if self._metrics is not None:
            self._metrics.observe(record.observation())
        if len(self._buffer) >= self._max_buffered:
            self._buffer.popleft()
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.records_dropped.inc()
            logger.bind(dropped=self.dropped).error(
                "interaction buffer full; oldest record dropped"
            )
        self._buffer.append(record)
        if len(self._buffer) >= self._batch_size:
            self._wakeup.set()
        if self._tracer is not None:  # last: the record is kept whatever tracing meets
            self._tracer.end(record.traced())

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def pending_owner(self, request_id: str) -> tuple[str | None, str | None] | None:
        """``(app_id, user)`` of this request's record while it is not yet in the database
        (buffered, or in the batch being written) if it gave an answer (``ANSWERED``); None
        if this process holds no such record.

        A record is always in the buffer, in the batch or committed: with no await between
        the two looks, a caller that then reads the database cannot miss it.
        """
        for record in (*reversed(self._buffer), *self._writing):
            if record.request_id == request_id and record.outcome in request_logs.ANSWERED:
                return record.app_id, record.user
        return None

    async def flush(self) -> None:
        """Write everything buffered.

        Two kinds of failure, two answers. The database unavailable (StorageUnavailable, or an
        error of the moment): the records are kept, in order, for the next flush. The database
        refusing rows (a value it cannot hold): the batch is halved until the refused rows stand
        alone, so one bad row never blocks the others, and a row refused alone is written
        without its content, or dropped and counted; it is never retried as it was.
        """
        while self._buffer:
            batch = [
                self._buffer.popleft() for _ in range(min(self._batch_size, len(self._buffer)))
            ]
            self._writing = batch
            try:
                await self._write(batch)
            except StorageUnavailable:
                raise
            except Exception:
                # Not classified as refused rows: kept and retried, but only so many times.
                self._failures += 1
                raise
            finally:
                self._writing = []
            self._failures = 0

    async def _write(self, batch: list[InteractionRecord]) -> None:
        parts = [batch]  # the last part is written next
        part: list[InteractionRecord] = []
        try:
            while parts:
                part = parts.pop()
                try:
                    await self._insert([r.row() for r in part])
                except Exception as exc:
                    if not self._split(exc):
                        raise
                    if len(part) == 1:
                        await self._salvage(part[0])
                    else:
                        half = len(part) // 2
                        parts += [part[half:], part[:half]]
                    continue
                self.written += len(part)
        except BaseException:
            unwritten = [*part, *(r for p in reversed(parts) for r in p)]
            self._buffer.extendleft(reversed(unwritten))
            raise

    def _split(self, exc: Exception) -> bool:
        """Whether a failed insert is the rows' fault: refused values, or an error that keeps
        coming back (after _SPLIT_AFTER failed flushes) while the database is reachable."""
        if isinstance(exc, request_logs.RowsRefused):
            return True
        return not isinstance(exc, StorageUnavailable) and self._failures >= _SPLIT_AFTER

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        async with self._db.session() as session:
            await request_logs.append_logs(session, rows)

    async def _salvage(self, record: InteractionRecord) -> None:
        """One refused record: written without its free text and metadata, or dropped."""
        try:
            await self._insert([request_logs.sanitized(record.row())])
        except StorageUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 (refused even so: dropped, counted, logged)
            self._rejected(record, "dropped", type(exc).__name__)
            return
        self.written += 1
        self._rejected(record, "sanitized", None)

    def _rejected(self, record: InteractionRecord, kind: str, error: str | None) -> None:
        if self._metrics is not None:
            self._metrics.records_rejected.labels(kind).inc()
        logger.bind(
            request_id=record.request_id, app=record.app_name, kind=kind, error=error
        ).error("interaction record refused by the database")

    async def run(self) -> None:
        """The background loop: flush on a timer or when a batch is full."""
        while True:
            with anyio.move_on_after(self._flush_interval):
                await self._wakeup.wait()
            self._wakeup = anyio.Event()
            try:
                await self.flush()
            except StorageUnavailable:
                logger.bind(pending=self.pending).warning("database unavailable; records kept")
                await anyio.sleep(1.0)
            except Exception:  # noqa: BLE001 (the loop must survive; the records are kept)
                logger.bind(pending=self.pending).exception("writing interaction records failed")
                await anyio.sleep(1.0)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.flush()
            except Exception:  # noqa: BLE001
                logger.bind(lost=self.pending).error("interaction records could not be written")


def rejection_record(
    *,
    request_id: str,
    route: str,
    origin: str | None,
    duration_ms: float,
    error_code: str,
    http_status: int,
    outcome: str,
    app_id: str | None,
    app_name: str | None,
    user: str | None = None,
) -> InteractionRecord:
    """The record of a request refused before any upstream call."""
    return InteractionRecord(
        time=utcnow(),
        request_id=request_id,
        route=route,
        outcome=outcome,
        http_status=http_status,
        app_id=app_id,
        app_name=app_name,
        user=user,
        error_code=error_code,
        duration_ms=duration_ms,
        origin=origin,
    )
