"""The ``moderated`` workflow: a moderation step, then the answer.

The ``moderate`` node sends the caller's new messages to the upstream's ``/v1/moderations``
(the app's own base URL and key). A flagged prompt raises ``ContentFlagged`` there, so the
graph stops before the answer node and the chat model is never called; the error reaches the
client like any error before the first token (JSON 400, or a single SSE ``error`` event).
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from gateway.core.errors import ContentFlagged
from gateway.flows.answer import answer
from gateway.flows.state import Graph, Message, RunContext, ThreadState

#: One request at a time: no thread is kept.
KEEPS_THREADS = False

FLAGGED_MESSAGE = "The prompt was flagged by moderation; it was not sent to the model."


def moderation_input(turn: list[Message]) -> str:
    return "\n".join(str(m.get("content") or "") for m in turn)


async def moderate(state: ThreadState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    context = runtime.context
    text = moderation_input(state.get("turn", []))
    request = context.request
    if text and await context.moderator.moderate(request.base_url, request.api_key, text):
        raise ContentFlagged(FLAGGED_MESSAGE)
    return {}


def build(checkpointer: BaseCheckpointSaver[Any] | None) -> Graph:
    graph = StateGraph(ThreadState, context_schema=RunContext)
    graph.add_node("moderate", moderate)
    graph.add_node("answer", answer)
    graph.add_edge(START, "moderate")
    graph.add_edge("moderate", "answer")
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer, name="moderated")
