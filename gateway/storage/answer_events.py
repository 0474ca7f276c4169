"""Answers' events in Redis, so that any replica can read or cancel an answer another produces.

Per answer (``{id}`` is its request id):

- ``orc:answer:{id}`` a hash: ``app_id``, ``user`` (empty: none), ``state`` (``running`` or
  ``ended``) and ``ended_at`` (Unix time), so any replica decides 404 and 410;
- ``orc:answer:{id}:events`` a stream whose entry ids are the events' ids (``N-0``): a reader
  resumes after N with ``XREAD`` from ``N-0``. One entry per batch of events the producer
  appended together (its id is the batch's last event's, field ``f`` its first's, ``d`` the
  encoded SSE events); the entry with the answer's last event also has ``e``;
- ``orc:answer:{id}:alive`` a key with a short TTL that the producing process refreshes: gone
  while the answer has no last event means its producer died.

Cancels go through the channel ``orc:answers:cancel:{db}`` (pub/sub is server-wide, not per
database, as in ``epoch_channel``); a message is a request id, and whatever does not look like
one is ignored. Every call here is bounded by the client's socket timeout; Redis errors come
out as ``RelayLost``.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

_REQUEST_ID = re.compile(rb"[A-Za-z0-9_-]{1,64}")
#: A retried XADD of an entry that did get in: not a failure.
_ALREADY_IN = "equal or smaller"


class RelayLost(Exception):
    """Redis could not be reached, timed out, or answered with an error."""


@dataclass(frozen=True, slots=True)
class Owner:
    app_id: str
    user: str | None
    ended: bool
    ended_at: float


def _key(request_id: str, suffix: str = "") -> str:
    return f"orc:answer:{request_id}{suffix}"


def channel_of(redis: Redis) -> str:
    database = redis.connection_pool.connection_kwargs.get("db", 0)
    return f"orc:answers:cancel:{database}"


def connect_reader(url: str, *, timeout: float, block_s: float) -> Redis:
    """A client for blocking reads: its socket timeout lets an XREAD BLOCK of ``block_s`` end
    (the shared client's is ``timeout`` alone, shorter than a block)."""
    from redis.asyncio import Redis

    return Redis.from_url(url, socket_timeout=block_s + timeout, socket_connect_timeout=timeout)


def _errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Batch:
    """Events the producer appended together: ids ``first``..``last``, one stream entry."""

    first: int
    last: int
    data: bytes  # the encoded SSE events, each ending with a blank line
    final: bool  # the answer's last event is in it

    def after(self, position: int) -> bytes:
        """The events of this batch after id ``position``."""
        if position < self.first:
            return self.data
        parts = self.data.split(EVENT_END)[: self.last - self.first + 1]
        return b"".join(part + EVENT_END for part in parts[position - self.first + 1 :])


#: What ends an SSE event (its data never holds a blank line: JSON on one line).
EVENT_END = b"\n\n"


@dataclass(frozen=True, slots=True)
class Append:
    """One answer's events appended since its last write (ids from ``first_id``), with its
    owner (``owner``: the answer's first write) or its end (``last``: the answer ended)."""

    request_id: str
    first_id: int
    events: Sequence[bytes]
    owner: tuple[str, str | None] | None
    last: bool


async def write(
    redis: Redis,
    appends: Sequence[Append],
    alive: Sequence[str],
    *,
    maxlen: int,
    alive_s: int,
    ttl: int,
) -> None:
    """Every answer's ``appends``, and the heartbeat of the running answers ``alive``: one
    round trip for the whole process. A retried write of an entry that got in is not an error."""
    now = repr(time.time())
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for append in appends:
                _append(pipe, append, now, maxlen=maxlen, alive_s=alive_s, ttl=ttl)
            for request_id in alive:
                pipe.set(_key(request_id, ":alive"), b"1", ex=alive_s)
                pipe.expire(_key(request_id), ttl)
                pipe.expire(_key(request_id, ":events"), ttl)
            results = await pipe.execute(raise_on_error=False)
    except _errors() as exc:
        raise RelayLost(type(exc).__name__) from None
    for result in results:
        if isinstance(result, Exception) and _ALREADY_IN not in str(result):
            raise RelayLost(type(result).__name__)


def _append(pipe: Any, append: Append, now: str, *, maxlen: int, alive_s: int, ttl: int) -> None:
    request_id, key = append.request_id, _key(append.request_id, ":events")
    last_id = append.first_id + len(append.events) - 1
    fields: dict[Any, Any] = {"f": append.first_id, "d": b"".join(append.events)}
    if append.last:
        fields["e"] = b"1"
    ended: dict[Any, Any] | None = {"state": "ended", "ended_at": now} if append.last else None
    if append.owner is not None:
        app_id, user = append.owner
        # An answer whose first write is also its last is written ended at once.
        mapping: dict[Any, Any] = {
            "app_id": app_id,
            "user": user or "",
            **(ended or {"state": "running"}),
        }
        pipe.hset(_key(request_id), mapping=mapping)
        if ended is None:
            pipe.expire(_key(request_id), ttl)
            pipe.set(_key(request_id, ":alive"), b"1", ex=alive_s)
    pipe.xadd(key, fields, id=f"{last_id}-0", maxlen=maxlen, approximate=True)
    if ended is not None:
        if append.owner is None:
            pipe.hset(_key(request_id), mapping=ended)
            pipe.delete(_key(request_id, ":alive"))  # set by its first write
        # The owner outlives the events: past the retention, a 410 rather than a 404.
        pipe.expire(_key(request_id), 2 * ttl)
        pipe.expire(key, ttl)


async def find_owner(redis: Redis, request_id: str) -> Owner | None:
    """Who may read the answer; None for an unknown id, or one that cannot be ours (the id
    comes from a URL: it must not name another key, such as ``…:events``)."""
    if not _REQUEST_ID.fullmatch(request_id.encode()):
        return None
    try:
        fields: dict[bytes, bytes] = await redis.hgetall(_key(request_id))  # type: ignore[assignment]
    except _errors() as exc:
        raise RelayLost(type(exc).__name__) from None
    app_id = fields.get(b"app_id")
    if not app_id:
        return None
    try:
        ended_at = float(fields.get(b"ended_at", b"0"))
    except ValueError:
        ended_at = 0.0
    return Owner(
        app_id.decode(),
        fields.get(b"user", b"").decode() or None,
        fields.get(b"state") == b"ended",
        ended_at,
    )


async def first_event_id(redis: Redis, request_id: str) -> int | None:
    """The id of the oldest event still kept (None: none yet)."""
    try:
        entries: Any = await redis.xrange(_key(request_id, ":events"), count=1)
    except _errors() as exc:
        raise RelayLost(type(exc).__name__) from None
    return int(entries[0][1].get(b"f", b"0")) if entries else None


async def read_events(
    redis: Redis, request_id: str, after: int, *, block_ms: int | None, count: int = 64
) -> list[Batch]:
    """The batches holding events after id ``after`` (waiting up to ``block_ms`` for one,
    None: not at all; never 0, which Redis takes as forever)."""
    try:
        answer: Any = await redis.xread(
            {_key(request_id, ":events"): f"{after}-0"}, count=count, block=block_ms
        )
    except _errors() as exc:
        raise RelayLost(type(exc).__name__) from None
    batches: list[Batch] = []
    for _stream, entries in answer or ():
        for entry_id, fields in entries:
            last = int(entry_id.split(b"-")[0])
            first = int(fields.get(b"f", last))
            batches.append(Batch(first, last, fields.get(b"d", b""), b"e" in fields))
    return batches


async def is_alive(redis: Redis, request_id: str) -> bool:
    try:
        return bool(await redis.exists(_key(request_id, ":alive")))
    except _errors() as exc:
        raise RelayLost(type(exc).__name__) from None


async def publish_cancel(redis: Redis, request_id: str) -> None:
    try:
        await redis.publish(channel_of(redis), request_id)
    except _errors() as exc:
        raise RelayLost(type(exc).__name__) from None


@asynccontextmanager
async def cancels(redis: Redis) -> AsyncIterator[PubSub]:
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        try:
            await pubsub.subscribe(channel_of(redis))
        except _errors() as exc:
            raise RelayLost(type(exc).__name__) from None
        yield pubsub
    finally:
        with contextlib.suppress(*_errors()):  # the connection may be gone already
            await pubsub.aclose()


async def next_cancel(pubsub: PubSub, *, timeout: float) -> str | None:
    """The next request id to cancel within ``timeout`` seconds, if any."""
    try:
        message: dict[str, Any] | None = await pubsub.get_message(
            ignore_subscribe_messages=True, timeout=timeout
        )
    except _errors() as exc:
        raise RelayLost(type(exc).__name__) from None
    data = None if message is None else message.get("data")
    if isinstance(data, bytes) and _REQUEST_ID.fullmatch(data):
        return data.decode()
    return None
