"""Answers' events in Redis, so that any replica can read or cancel an answer another produces.

Per answer (``ID`` is its request id; ``{answers}`` is one hash tag for all of them, so that
one script run writes many answers, even on a Redis Cluster: all in one slot, as the answer
cache's keys):

- ``orc:{answers}:ID`` a hash: ``app_id``, ``user`` (empty: none), ``state`` (``running`` or
  ``ended``) and ``ended_at`` (Unix time), so any replica decides 404 and 410;
- ``orc:{answers}:ID:events`` a stream whose entry ids are the events' ids (``N-0``): a reader
  resumes after N with ``XREAD`` from ``N-0``. One entry per batch of events the producer
  appended together (its id is the batch's last event's, field ``f`` its first's, ``d`` the
  encoded SSE events); the entry with the answer's last event also has ``e``. An answer that
  ended after its last events were written gets an entry of its own for the end: id ``N-1``
  after its last event N, ``d`` empty, ``e``;
- ``orc:{answers}:ID:alive`` a key with a short TTL that the producing process refreshes: gone
  while the answer has no last event means its producer died.

An answer is written only once another replica asks for it (``publish_want``): most answers
are read where they are produced, and writing every one cost Redis memory for the whole
retention and the gateway a share of its throughput. Wants go through the channel
``orc:answers:want:{db}`` and cancels through ``orc:answers:cancel:{db}`` (pub/sub is
server-wide, not per database, as in ``epoch_channel``); a message is a request id, and
whatever does not look like one is ignored. Every call here is bounded by the client's socket
timeout; Redis errors come out as ``RelayLost``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.storage.redis_scripts import run_script_pipeline

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline, PubSub

_REQUEST_ID = re.compile(rb"[A-Za-z0-9_-]{1,64}")


class RelayLost(Exception):
    """Redis could not be reached, timed out, or answered with an error."""


@dataclass(frozen=True, slots=True)
class Owner:
    app_id: str
    user: str | None
    ended: bool
    ended_at: float


def _key(request_id: str, suffix: str = "") -> str:
    return f"orc:{{answers}}:{request_id}{suffix}"


CANCEL = "cancel"
WANT = "want"
_CHANNELS = "orc:answers:"
_WANT_CHANNELS = f"{_CHANNELS}{WANT}:".encode()


def channel_of(redis: Redis, kind: str = CANCEL) -> str:
    """The channel of cancels (``CANCEL``) or of wants (``WANT``) of ``redis``'s database."""
    database = redis.connection_pool.connection_kwargs.get("db", 0)
    return f"{_CHANNELS}{kind}:{database}"


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
    owner (``owner``: the answer's first write) or its end (``last``: the answer ended; with
    no events when they were written before it ended). ``ended_at``: when it ended (Unix
    time; None: now), for an answer written long after its end."""

    request_id: str
    first_id: int
    events: Sequence[bytes]
    owner: tuple[str, str | None] | None
    last: bool
    ended_at: float | None = None


#: Many answers' writes in one call (an answer's events in one round trip, one command, one
#: script run for the whole process: a command per answer cost the gateway more CPU than the
#: rest of relaying it). KEYS: per answer, its owner hash, events stream and alive key. ARGV:
#: the streams' MAXLEN, the alive keys' and the events' TTL; then per answer: its batch's
#: first and last event ids, its events (none: its owner or its end alone), when it ended
#: ("": it runs), its app and user (app "": not its first write). Returns per answer 1, or the
#: error Redis gave (the others still go in). An XADD of an entry that got in already (a
#: retried write) is not an error.
APPEND_LUA = """
local maxlen, alive_s, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])

local function append(owner, events, alive, first, last, data, ended_at, app, user)
  local ended = ended_at ~= ''
  if app ~= '' then
    if ended then
      redis.call('HSET', owner, 'app_id', app, 'user', user, 'state', 'ended',
                 'ended_at', ended_at)
    else
      redis.call('HSET', owner, 'app_id', app, 'user', user, 'state', 'running')
      redis.call('EXPIRE', owner, ttl)
      redis.call('SET', alive, '1', 'EX', alive_s)
    end
  elseif ended then
    redis.call('HSET', owner, 'state', 'ended', 'ended_at', ended_at)
    redis.call('DEL', alive)
  end
  local added
  if data == '' then
    if not ended then  -- its owner alone: asked for before its first event
      return
    end
    -- the end alone: the answer's last events went in before it ended
    added = redis.pcall('XADD', events, 'MAXLEN', '~', maxlen, last .. '-1', 'f', first,
                        'd', '', 'e', '1')
  elseif ended then
    added = redis.pcall('XADD', events, 'MAXLEN', '~', maxlen, last .. '-0', 'f', first,
                        'd', data, 'e', '1')
  else
    added = redis.pcall('XADD', events, 'MAXLEN', '~', maxlen, last .. '-0', 'f', first,
                        'd', data)
  end
  if type(added) == 'table' and added.err and not string.find(added.err, 'equal or smaller') then
    error(added)
  end
  if ended then
    -- The owner outlives the events: past the retention, a 410 rather than a 404.
    redis.call('EXPIRE', owner, 2 * ttl)
    redis.call('EXPIRE', events, ttl)
  end
end

local results = {}
for n = 0, #KEYS / 3 - 1 do
  local k, a = 3 * n, 3 + 6 * n
  local ok, err = pcall(append, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], ARGV[a + 1],
                        ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6])
  if ok then
    results[n + 1] = 1
  else
    results[n + 1] = type(err) == 'table' and err.err or tostring(err)
  end
end
return results
"""
APPEND_SHA = hashlib.sha1(APPEND_LUA.encode(), usedforsecurity=False).hexdigest()
#: Answers per script run: one run blocks Redis, a thousand running answers take several.
APPENDS_PER_CALL = 100


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """How long what a write puts in Redis lives, and how big a stream may grow."""

    maxlen: int  # entries of an answer's stream (approximate: MAXLEN ~)
    alive_s: int  # an alive key's TTL
    ttl: int  # an ended answer's events' TTL (its owner's: twice that)


async def write(
    redis: Redis, appends: Sequence[Append], alive: Sequence[str], limits: StreamLimits
) -> dict[str, str]:
    """Every answer's ``appends``, and the heartbeat of the running answers ``alive``: one
    round trip for the whole process (two the first time: the script is loaded then). Returns
    the answers whose append Redis refused, with its error code (the others are in); raises
    RelayLost when Redis could not be reached or failed the whole write."""
    now = time.time()
    try:
        results = await run_script_pipeline(
            redis, APPEND_LUA, lambda pipe: _queue(pipe, appends, alive, limits, now)
        )
    except _errors() as exc:
        raise RelayLost(type(exc).__name__) from None
    for result in results:
        if isinstance(result, Exception):
            raise RelayLost(type(result).__name__)
    refused: dict[str, str] = {}
    outcomes = (outcome for result in results[: _calls(len(appends))] for outcome in result)
    for append, outcome in zip(appends, outcomes, strict=True):
        if outcome != 1:
            # Its error code (WRONGTYPE, OOM…): Redis's message may quote what was sent.
            refused[append.request_id] = bytes(outcome).decode(errors="replace").split(" ")[0]
    return refused


def _calls(appends: int) -> int:
    return -(-appends // APPENDS_PER_CALL)


def _queue(
    pipe: Pipeline,
    appends: Sequence[Append],
    alive: Sequence[str],
    limits: StreamLimits,
    now: float,
) -> None:
    alive_s, ttl = limits.alive_s, limits.ttl
    for start in range(0, len(appends), APPENDS_PER_CALL):
        keys: list[str] = []
        args: list[Any] = [limits.maxlen, alive_s, ttl]
        for append in appends[start : start + APPENDS_PER_CALL]:
            request_id = append.request_id
            keys += (_key(request_id), _key(request_id, ":events"), _key(request_id, ":alive"))
            app_id, user = append.owner or ("", None)
            args += (
                append.first_id,
                append.first_id + len(append.events) - 1,
                b"".join(append.events),
                repr(now if append.ended_at is None else append.ended_at) if append.last else "",
                app_id,
                user or "",
            )
        pipe.evalsha(APPEND_SHA, len(keys), *keys, *args)
    for request_id in alive:
        pipe.set(_key(request_id, ":alive"), b"1", ex=alive_s)
        pipe.expire(_key(request_id), ttl)
        pipe.expire(_key(request_id, ":events"), ttl)


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
    """Ask every replica to stop the answer (the one producing it does)."""
    await _publish(redis, CANCEL, request_id)


async def publish_want(redis: Redis, request_id: str) -> None:
    """Ask every replica to write the answer to Redis (the one holding it does)."""
    await _publish(redis, WANT, request_id)


async def _publish(redis: Redis, kind: str, request_id: str) -> None:
    try:
        await redis.publish(channel_of(redis, kind), request_id)
    except _errors() as exc:
        raise RelayLost(type(exc).__name__) from None


@asynccontextmanager
async def requests(redis: Redis) -> AsyncIterator[PubSub]:
    """A subscription to the cancels and the wants (``next_request``)."""
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        try:
            await pubsub.subscribe(channel_of(redis, CANCEL), channel_of(redis, WANT))
        except _errors() as exc:
            raise RelayLost(type(exc).__name__) from None
        yield pubsub
    finally:
        with contextlib.suppress(*_errors()):  # the connection may be gone already
            await pubsub.aclose()


async def next_request(pubsub: PubSub, *, timeout: float) -> tuple[str, str] | None:
    """The next request within ``timeout`` seconds, if any: its kind (``CANCEL`` or
    ``WANT``) and the answer's request id."""
    try:
        message: dict[str, Any] | None = await pubsub.get_message(
            ignore_subscribe_messages=True, timeout=timeout
        )
    except _errors() as exc:
        raise RelayLost(type(exc).__name__) from None
    if message is None:
        return None
    data, channel = message.get("data"), message.get("channel")
    if not (isinstance(data, bytes) and _REQUEST_ID.fullmatch(data)):
        return None
    kind = WANT if isinstance(channel, bytes) and channel.startswith(_WANT_CHANNELS) else CANCEL
    return kind, data.decode()
