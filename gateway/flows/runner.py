"""The ``WorkflowRunner`` the ask service calls: workflows by name, runs in the lifespan's tasks.

Built once in the server's lifespan with the upstream client and the checkpointer; every graph
is compiled once here. ``run()`` is started in the lifespan's task group (``await
tasks.start(runner.run)``) and holds the task group in which every graph run is a task, so
runs are cancelled with the server and never outlive it.

Threads are keyed ``{app_id}:{conversation_id}``: an app can only ever name its own threads,
so the same conversation_id in two apps is two threads, and another app's id is not found.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Durability

from gateway.core.errors import ConfigurationError
from gateway.flows import conversation, moderated
from gateway.flows.state import Graph, Message, Moderator, RunContext, split_instructions
from gateway.flows.streams import GraphStream, start_run
from gateway.upstream.client import UpstreamClient
from gateway.upstream.types import ChatRequest


@dataclass(frozen=True, slots=True)
class Definition:
    build: Callable[[BaseCheckpointSaver[Any] | None], Graph]
    #: Compiled with the checkpointer too: runs with a conversation_id continue a thread.
    keeps_threads: bool


#: Every workflow but "direct" (which is no graph). Add one here and to core.validation.WORKFLOWS.
DEFINITIONS: dict[str, Definition] = {
    "conversation": Definition(conversation.build, conversation.KEEPS_THREADS),
    "moderated": Definition(moderated.build, moderated.KEEPS_THREADS),
}

#: One checkpoint write per answer, when the graph exits (not one per step): less latency.
_DURABILITY: Durability = "exit"

#: The workflow whose threads GET/DELETE /conversations/{id} read and remove.
THREADS_OF = "conversation"


def thread_id(app_id: str, conversation_id: str) -> str:
    return f"{app_id}:{conversation_id}"


@dataclass(frozen=True, slots=True)
class _Compiled:
    stateless: Graph
    threaded: Graph | None


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    first_token_timeout: float
    idle_timeout: float
    token_budget: int


class Runner:
    def __init__(
        self,
        *,
        upstream: UpstreamClient,
        moderator: Moderator,
        checkpointer: BaseCheckpointSaver[Any],
        settings: RunnerSettings,
    ) -> None:
        self._upstream = upstream
        self._moderator = moderator
        self._checkpointer = checkpointer
        self._settings = settings
        self._graphs = {
            name: _Compiled(
                stateless=definition.build(None),
                threaded=definition.build(checkpointer) if definition.keeps_threads else None,
            )
            for name, definition in DEFINITIONS.items()
        }
        self._tasks: TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold the task group of the graph runs until cancelled (start it in the lifespan)."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tasks = None

    async def open_stream(
        self,
        workflow: str,
        request: ChatRequest,
        *,
        app_id: str,
        conversation_id: str | None,
    ) -> GraphStream:
        compiled = self._graphs.get(workflow)
        if compiled is None:
            raise ConfigurationError(f"The app's workflow {workflow!r} is not defined.")
        if self._tasks is None:
            raise ConfigurationError("The workflow runner is not running.")
        instructions, turn = split_instructions(request.messages)
        context = RunContext(
            request=request,
            instructions=instructions,
            upstream=self._upstream,
            moderator=self._moderator,
            first_token_timeout=self._settings.first_token_timeout,
            idle_timeout=self._settings.idle_timeout,
            token_budget=self._settings.token_budget,
        )
        graph, config, durability = compiled.stateless, None, None
        if compiled.threaded is not None and conversation_id is not None:
            graph, config = compiled.threaded, _config(app_id, conversation_id)
            durability = _DURABILITY

        def run() -> AsyncIterator[object]:
            return graph.astream(
                {"turn": turn}, config, context=context, stream_mode="custom", durability=durability
            )

        return start_run(self._tasks, run, context)

    async def read_thread(self, *, app_id: str, conversation_id: str) -> list[Message] | None:
        """The thread's messages, oldest first; None when there is no such thread."""
        graph = self._graphs[THREADS_OF].threaded
        assert graph is not None
        snapshot = await graph.aget_state(_config(app_id, conversation_id))
        messages: list[Message] = snapshot.values.get("messages") or []
        return messages or None

    async def delete_thread(self, *, app_id: str, conversation_id: str) -> bool:
        """Remove the thread; False when there was none."""
        if await self.read_thread(app_id=app_id, conversation_id=conversation_id) is None:
            return False
        await self._checkpointer.adelete_thread(thread_id(app_id, conversation_id))
        return True


def _config(app_id: str, conversation_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id(app_id, conversation_id)}}
