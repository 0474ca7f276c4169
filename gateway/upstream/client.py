"""The upstream protocol the services depend on (one implementation per provider family)."""

from __future__ import annotations

from typing import Any, Protocol

from gateway.upstream.types import ChatRequest, Chunk, Completion


class ChunkStream(Protocol):
    async def next_chunk(self, timeout: float) -> Chunk | None:
        """The next event, None at the end; raises UpstreamError subclasses."""

    def ready(self) -> bool:
        """Whether the next event is already here (``next_chunk`` would not wait)."""

    async def aclose(self) -> None:
        """Close the connection now (cancels generation upstream)."""


class UpstreamClient(Protocol):
    async def open_stream(self, request: ChatRequest) -> ChunkStream:
        """Send the request and check the status; raises UpstreamError subclasses."""

    async def complete(self, request: ChatRequest) -> Completion:
        """A non-streamed answer; raises UpstreamError subclasses."""

    async def fetch_json(self, method: str, url: str, api_key: str) -> Any:
        """GET or DELETE one resource (a stored response); raises UpstreamError subclasses."""

    async def aclose(self) -> None: ...
