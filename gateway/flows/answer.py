"""The answer node, shared by the workflows: one upstream call, streamed through the graph.

The node calls the upstream stream itself and hands every chunk to LangGraph's stream writer as
soon as it is read (the run is consumed with ``stream_mode="custom"``), so tokens reach the
client while they are generated, not when the node returns. It returns the thread update: the
caller's turn and the whole assistant message, which the checkpointer saves once the answer is
complete (a cancelled or failed answer saves nothing).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import StreamWriter

from gateway.flows.history import token_counts, trim_history
from gateway.flows.state import Message, RunContext, ThreadState
from gateway.upstream.types import ChatRequest


async def stream_answer(request: ChatRequest, context: RunContext, write: StreamWriter) -> str:
    """Open the upstream stream, write each chunk as it arrives; the answer's text."""
    stream = await context.upstream.open_stream(request)
    context.opened.append(stream)  # closed by the run's owner too, if we are cancelled
    parts: list[str] = []
    timeout = context.first_token_timeout
    while (chunk := await stream.next_chunk(timeout)) is not None:
        if chunk.text:
            parts.append(chunk.text)
            timeout = context.idle_timeout
        write(chunk)
    await stream.aclose()
    return "".join(parts)


def upstream_messages(state: ThreadState, context: RunContext) -> list[Message]:
    """Instructions, the thread's newest turns within the budget, then the new turn."""
    turn = state.get("turn", [])
    history = trim_history(
        state.get("messages", []),
        sent_anyway=[*context.instructions, *turn],
        budget=context.token_budget,
        model=context.request.model,
        counts=state.get("tokens"),
    )
    return [*context.instructions, *history, *turn]


async def answer(state: ThreadState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    context = runtime.context
    request = replace(context.request, messages=upstream_messages(state, context))
    text = await stream_answer(request, context, runtime.stream_writer)
    saved = [*state.get("turn", []), {"role": "assistant", "content": text}]
    return {"messages": saved, "tokens": token_counts(saved, request.model), "turn": []}
