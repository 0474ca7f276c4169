"""The bounded log of requests the fake received, served at ``/_fake/requests``."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["in_progress", "completed", "cancelled", "failed"]


@dataclass(slots=True)
class RequestRecord:
    """One received chat/moderation request and what became of it.

    ``chunks_sent`` counts content chunks: streamed ones as they are sent, or, for a
    non-streamed answer, its content chunks once the body is sent. ``status_code`` is the
    HTTP status answered (``None`` while nothing was sent).
    """

    id: str
    path: str
    authorization: str | None
    #: The W3C trace context the caller sent (the gateway continues its call's trace upstream).
    traceparent: str | None = None
    body: Any = None
    stream: bool = False
    status: Status = "in_progress"
    status_code: int | None = None
    chunks_sent: int = 0
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None

    def finish(self, status: Status) -> None:
        """Set the final status once; later calls are ignored."""
        if self.ended_at is None:
            self.status = status
            self.ended_at = time.time()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "authorization": self.authorization,
            "traceparent": self.traceparent,
            "body": self.body,
            "stream": self.stream,
            "status": self.status,
            "status_code": self.status_code,
            "chunks_sent": self.chunks_sent,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


def traceparent_of(scope: Mapping[str, Any]) -> str | None:
    """The request's ``traceparent`` header, if it has one."""
    for name, value in scope["headers"]:
        if name == b"traceparent":
            return str(value.decode("latin-1"))
    return None


class RequestLog:
    """The newest ``limit`` records, oldest first."""

    __slots__ = ("_records",)

    def __init__(self, limit: int) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=max(limit, 0))

    def add(self, record: RequestRecord) -> None:
        self._records.append(record)

    def clear(self) -> None:
        self._records.clear()

    def __len__(self) -> int:
        return len(self._records)

    def to_json(self) -> list[dict[str, Any]]:
        return [record.to_json() for record in self._records]
