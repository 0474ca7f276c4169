"""The workflow runner, built on first use.

LangGraph and its checkpointers cost seconds of start-up and tens of megabytes; a gateway
whose apps all answer ``direct`` never needs them. ``LazyWorkflows`` stands in for the
runner from the start and imports, opens and starts the real one the first time an app's
workflow or a conversation route needs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from loguru import logger

from gateway.core.errors import ConfigurationError, GatewayError
from gateway.upstream.client import ChunkStream, UpstreamClient
from gateway.upstream.types import ChatRequest


def _load_engine() -> tuple[Any, Any, Any]:
    import langgraph.pregel  # noqa: F401  (what the first run would otherwise import)

    from gateway.flows.checkpoints import open_checkpoints
    from gateway.flows.runner import Runner, RunnerSettings

    return open_checkpoints, Runner, RunnerSettings


if TYPE_CHECKING:
    from gateway.flows.checkpoints import Checkpoints
    from gateway.flows.runner import Runner
    from gateway.flows.state import Message, Moderator


@dataclass(frozen=True, slots=True)
class WorkflowSettings:
    database_url: str
    database_schema: str | None
    first_token_timeout: float
    idle_timeout: float
    token_budget: int


class LazyWorkflows:
    def __init__(
        self, *, upstream: UpstreamClient, moderator: Moderator, settings: WorkflowSettings
    ) -> None:
        self._upstream = upstream
        self._moderator = moderator
        self._settings = settings
        self._runner: Runner | None = None
        self._checkpoints: Checkpoints | None = None
        self._tasks: TaskGroup | None = None
        self._lock = anyio.Lock()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold the task group the real runner will live in (start it in the lifespan)."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tasks = None

    async def _real(self) -> Runner:
        if self._runner is not None:
            return self._runner
        async with self._lock:
            if self._runner is None:
                if self._tasks is None:
                    raise ConfigurationError("The workflow runner is not running.")
                # Imported in a thread: a second of imports must not stall the event loop.
                open_checkpoints, runner_type, runner_settings = await anyio.to_thread.run_sync(
                    _load_engine
                )
                s = self._settings
                self._checkpoints = await open_checkpoints(s.database_url, schema=s.database_schema)
                saver = self._checkpoints.saver
                # Compiling the graphs is CPU work too: in the thread as well.
                runner = await anyio.to_thread.run_sync(
                    lambda: runner_type(
                        upstream=self._upstream,
                        moderator=self._moderator,
                        checkpointer=saver,
                        settings=runner_settings(
                            first_token_timeout=s.first_token_timeout,
                            idle_timeout=s.idle_timeout,
                            token_budget=s.token_budget,
                        ),
                    )
                )
                await self._tasks.start(runner.run)
                self._runner = runner
        return self._runner

    async def preload(self, needed: Callable[[], Awaitable[bool]]) -> None:
        """Start the engine in the background when some app already uses a workflow."""
        try:
            if await needed():
                await self._real()
        except GatewayError:
            logger.warning("workflow engine not preloaded; it starts on first use")

    async def open_stream(
        self, workflow: str, request: ChatRequest, *, app_id: str, conversation_id: str | None
    ) -> ChunkStream:
        runner = await self._real()
        return await runner.open_stream(
            workflow, request, app_id=app_id, conversation_id=conversation_id
        )

    async def read_thread(self, *, app_id: str, conversation_id: str) -> list[Message] | None:
        runner = await self._real()
        return await runner.read_thread(app_id=app_id, conversation_id=conversation_id)

    async def delete_thread(self, *, app_id: str, conversation_id: str) -> bool:
        runner = await self._real()
        return await runner.delete_thread(app_id=app_id, conversation_id=conversation_id)

    async def aclose(self) -> None:
        if self._checkpoints is not None:
            await self._checkpoints.close()
