"""The seam between the ask service and the workflows: a workflow is a source of chunks."""

from __future__ import annotations

from typing import Any, Protocol

from gateway.upstream.client import ChunkStream
from gateway.upstream.types import ChatRequest


class WorkflowRunner(Protocol):
    async def open_stream(
        self,
        workflow: str,
        request: ChatRequest,
        *,
        app_id: str,
        conversation_id: str | None,
    ) -> ChunkStream:
        """Start ``workflow`` for this request; its chunks stream like an upstream's.

        Raises GatewayError subclasses (e.g. ContentFlagged) before the first chunk.
        """


class ThreadStore(Protocol):
    """The conversation threads, always named by (app, conversation id)."""

    async def read_thread(
        self, *, app_id: str, conversation_id: str
    ) -> list[dict[str, Any]] | None:
        """The thread's messages (role, content), oldest first; None when there is none."""

    async def delete_thread(self, *, app_id: str, conversation_id: str) -> bool:
        """Remove the thread; False when there was none."""
