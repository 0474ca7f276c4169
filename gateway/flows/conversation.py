"""The ``conversation`` workflow: an answer that continues the app's thread.

The memory is LangGraph's: compiled with a checkpointer (``gateway.flows.checkpoints``, in the
gateway's own database), a run on thread ``{app_id}:{conversation_id}`` starts from the saved
``messages``, the answer node sends the newest turns that fit in the token budget, and the
completed exchange is appended to the thread (``ThreadState.messages`` is an add reducer).
Compiled without a checkpointer, it answers one request with no memory (no conversation_id).
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from gateway.flows.answer import answer
from gateway.flows.state import Graph, RunContext, ThreadState

#: This workflow keeps threads: the runner compiles it with the checkpointer too.
KEEPS_THREADS = True


def build(checkpointer: BaseCheckpointSaver[Any] | None) -> Graph:
    graph = StateGraph(ThreadState, context_schema=RunContext)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer, name="conversation")
