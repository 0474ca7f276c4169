"""The Redis channel that announces a change of an app's auth epoch to every gateway process.

A message is ``"<app id> <epoch>"`` (``-1``: the app is gone). Anything that can reach the Redis
server can publish on a channel, so a message is input like any other: whatever does not parse
is ignored. Publish/subscribe is server-wide in Redis (not per database number), so the channel
is named after the database number: deployments that share a server on separate databases
do not hear each other.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

#: The epoch announced for an app that was removed.
REMOVED = -1

_MESSAGE = re.compile(rb"([A-Za-z0-9_-]{1,40}) (-1|0|[1-9][0-9]{0,18})")


class ChannelLost(Exception):
    """The Redis server could not be reached, or the subscription broke."""


def channel_of(redis: Redis) -> str:
    database = redis.connection_pool.connection_kwargs.get("db", 0)
    return f"orchestra:auth-epochs:{database}"


def connect(url: str) -> Redis:
    """A client for announcing changes (the CLI): short timeouts, it must never hang a command."""
    from redis.asyncio import Redis

    return Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)


def parse(data: object) -> tuple[str, int] | None:
    """``(app id, epoch)`` from a message's data, or None if it is not one of ours."""
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, bytes):
        return None
    match = _MESSAGE.fullmatch(data)
    if match is None:
        return None
    return match[1].decode(), int(match[2])


async def publish(redis: Redis, app_id: str, epoch: int) -> None:
    from redis.exceptions import RedisError

    try:
        await redis.publish(channel_of(redis), f"{app_id} {epoch}")
    except (RedisError, OSError) as exc:
        raise ChannelLost(type(exc).__name__) from None


@asynccontextmanager
async def subscribed(redis: Redis) -> AsyncIterator[PubSub]:
    from redis.exceptions import RedisError

    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        try:
            await pubsub.subscribe(channel_of(redis))
        except (RedisError, OSError) as exc:
            raise ChannelLost(type(exc).__name__) from None
        yield pubsub
    finally:
        with contextlib.suppress(RedisError, OSError):  # the connection may be gone already
            await pubsub.aclose()


async def next_change(pubsub: PubSub, *, timeout: float) -> tuple[str, int] | None:
    """The next well-formed announcement within ``timeout`` seconds, if any."""
    from redis.exceptions import RedisError

    try:
        message: dict[str, Any] | None = await pubsub.get_message(
            ignore_subscribe_messages=True, timeout=timeout
        )
    except (RedisError, OSError) as exc:
        raise ChannelLost(type(exc).__name__) from None
    return None if message is None else parse(message.get("data"))
