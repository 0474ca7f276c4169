"""Pipelines of Lua script calls, as the counters and the answers' relay send them.

redis-py's ``Script`` checks, on every pipeline it runs in, that its script is loaded (a
SCRIPT EXISTS round trip before the pipeline's own). These pipelines call ``EVALSHA``
directly, and load the script only when Redis answers NOSCRIPT (it restarted, or SCRIPT FLUSH):
one round trip, two the first time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline


async def run_script_pipeline(
    redis: Redis, script: str, queue: Callable[[Pipeline], None]
) -> list[Any]:
    """The results of a pipeline (no transaction) that ``queue`` fills, its ``EVALSHA`` calls
    of ``script`` included; errors are results, as with ``raise_on_error=False``. Redis's own
    errors (connection, timeout) are raised."""
    from redis.exceptions import NoScriptError

    results = await _run(redis, queue)
    if any(isinstance(result, NoScriptError) for result in results):
        await redis.script_load(script)
        results = await _run(redis, queue)
    return results


async def _run(redis: Redis, queue: Callable[[Pipeline], None]) -> list[Any]:
    async with redis.pipeline(transaction=False) as pipe:
        queue(pipe)
        results: list[Any] = await pipe.execute(raise_on_error=False)
    return results
