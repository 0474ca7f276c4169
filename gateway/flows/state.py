"""What a workflow run carries: the thread state (checkpointed) and the run context (not).

``ThreadState`` is what a checkpointer saves: ``messages`` is the thread (user and assistant
messages, never the app's system prompt), appended to by each completed answer, with
``tokens`` beside it; ``turn`` is the caller's new messages of this run. ``RunContext`` is
LangGraph's run-scoped context: it holds the upstream request, with the app's provider key, so
it is passed to every run and never saved.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, TypedDict

from langgraph.graph.state import CompiledStateGraph

from gateway.upstream.client import ChunkStream, UpstreamClient
from gateway.upstream.types import ChatRequest

Message = dict[str, Any]


class ThreadState(TypedDict, total=False):
    messages: Annotated[list[Message], operator.add]
    #: Each message's token count, in the same order (so the history is not re-encoded).
    tokens: Annotated[list[int], operator.add]
    turn: list[Message]


class Moderator(Protocol):
    async def moderate(self, base_url: str, api_key: str, text: str) -> bool:
        """Whether the moderation endpoint flags ``text``; raises UpstreamError subclasses."""


@dataclass(slots=True)
class RunContext:
    request: ChatRequest
    #: The leading system messages of the request (the app's system prompt): sent, never saved.
    instructions: list[Message]
    upstream: UpstreamClient
    moderator: Moderator
    first_token_timeout: float
    idle_timeout: float
    #: Most prompt tokens the ``conversation`` workflow sends upstream.
    token_budget: int
    #: Upstream streams opened by the nodes, closed by the run's owner whatever happens.
    opened: list[ChunkStream] = field(default_factory=list)


def split_instructions(messages: list[Message]) -> tuple[list[Message], list[Message]]:
    """The leading system messages, and the rest (the caller's turn)."""
    count = 0
    while count < len(messages) and messages[count].get("role") == "system":
        count += 1
    return messages[:count], messages[count:]


#: A compiled workflow: thread state in and out, the run context passed to every node.
Graph = CompiledStateGraph["ThreadState", "RunContext", "ThreadState", "ThreadState"]
