"""An incremental, bounded parser of ``text/event-stream`` bodies, fed with raw network reads.

It follows the WHATWG HTML "Server-sent events" parsing rules, like the frontend's parser
(``frontend/projects/orchestra-client/src/lib/sse/sse-parser.ts``):

- lines end with CRLF, LF or a lone CR, and a CR at the end of one read followed by an LF at
  the start of the next is one line ending, not two;
- ``field:value``, one optional space after the colon stripped; a line without a colon is a
  field name with an empty value; a line starting with ``:`` is a comment;
- ``data`` fields are joined with ``\\n``; ``event`` names the event (``message`` when empty);
  ``id`` sets the last event id (unless it holds a NUL); ``retry`` (ASCII digits) the
  reconnection time; other fields are ignored;
- a blank line dispatches the event, if it has data; a leading UTF-8 BOM is dropped.

It works on bytes, not text: every byte it looks for (CR, LF, ``:``, space) is ASCII, which
never occurs inside a multi-byte UTF-8 character, so a character cut across two reads needs no
care and data values are handed out as the bytes that were sent (decoding is the reader's
job). Unlike the frontend's ``end()``, nothing is dispatched at the end of the body: an event
without its blank line is incomplete (the specification discards it).

Bounded and linear: an event (its data so far plus the line being received) larger than
``max_event_bytes`` raises ``EventTooLarge``; only the new bytes of each read are scanned (an
unfinished line is never scanned again), and no more than the bound plus one read is kept.

The hot path: a read usually holds whole events of one ``data: `` line each; those are cut out
with ``split`` and never go through the line-by-line code.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

MESSAGE = b"message"
_BOM = b"\xef\xbb\xbf"
_DATA_SPACE = b"data: "
_new_tuple = tuple.__new__
# Bytes searched for as ints: ``10 in data`` is one memchr, ``b"\n" in data`` a general search
# that costs ten times more on a typical chunk.
_LF, _CR = 10, 13


class SSEEvent(NamedTuple):
    #: The ``event`` field, ``b"message"`` when the event had none.
    type: bytes
    #: The ``data`` lines joined with ``\n``, as sent (not decoded).
    data: bytes
    #: The last ``id`` seen on the stream so far, or ``b""``.
    id: bytes


class EventTooLarge(ValueError):
    """An event (data so far plus the line being received) passed the parser's bound."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"An event is larger than {limit} bytes.")
        self.limit = limit


class SSEParser:
    """Feed it reads with ``feed``; complete events wait in ``events``, oldest first."""

    __slots__ = (
        "_cr_pending",
        "_data",
        "_data_size",
        "_event_type",
        "_limit",
        "_messages_wanted",
        "_partial",
        "_started",
        "_types",
        "events",
        "last_event_id",
        "retry_ms",
    )

    def __init__(self, max_event_bytes: int, types: frozenset[bytes] | None = None) -> None:
        """``types``: the event types to dispatch (like an EventSource's listeners); all if None."""
        if max_event_bytes <= 0:
            raise ValueError("max_event_bytes must be positive")
        self._limit = max_event_bytes
        self._types = types
        self._messages_wanted = types is None or MESSAGE in types
        #: Dispatched events nobody has taken yet.
        self.events: deque[SSEEvent] = deque()
        self.last_event_id = b""
        #: The last valid ``retry`` field, in milliseconds (the gateway does not reconnect).
        self.retry_ms: int | None = None
        self._data: list[bytes] = []
        self._data_size = 0  # bytes of the data values so far, with their joining newlines
        self._event_type = b""
        self._partial = bytearray()  # the unterminated line, never containing CR or LF
        self._cr_pending = False  # the last read ended with CR: an LF first in the next is its pair
        self._started = False  # the leading BOM, if any, has been dropped

    def feed(self, block: bytes) -> None:
        """Parse one read; raises EventTooLarge past the bound (the parser is then unusable)."""
        if _CR in block or self._cr_pending or not self._started:
            block = self._line_feeds_only(block)
        partial = self._partial
        if partial:  # the read goes on with the unfinished line: only the new bytes are scanned
            end = block.find(b"\n")
            if end < 0:
                partial += block
                self._check_size()
                return
            partial += block[:end]
            line = bytes(partial)
            partial.clear()
            self._lines([line])
            block = block[end + 1 :]
        # The block starts at the start of a line. Each piece but the last ends with a blank
        # line: the common event (one "data: " line, no event name, nothing pending) is
        # dispatched at once, any other is parsed line by line.
        *events, rest = block.split(b"\n\n")
        data, limit, push, new_event = self._data, self._limit, self.events.append, _new_tuple
        wanted = self._messages_wanted
        clean = wanted and not data and not self._event_type  # no event under way
        last_id = self.last_event_id
        for event in events:
            if clean and event.startswith(_DATA_SPACE) and _LF not in event:
                if len(event) - 5 > limit:
                    raise EventTooLarge(limit)
                push(new_event(SSEEvent, (MESSAGE, event[6:], last_id)))
            else:
                lines = event.split(b"\n")
                lines.append(b"")
                self._lines(lines)
                clean, last_id = wanted, self.last_event_id  # the blank line ended the event
        if rest:  # lines of an event whose blank line has not come yet
            lines = rest.split(b"\n")
            tail = lines.pop()
            if lines:
                self._lines(lines)
            if tail:
                partial += tail
                self._check_size()

    def _line_feeds_only(self, block: bytes) -> bytes:
        """The read without its leading BOM, with every line ending as one LF."""
        if not self._started:
            block = self._skip_bom(block)
        if self._cr_pending and block:
            self._cr_pending = False
            if block[:1] == b"\n":
                block = block[1:]
        if _CR in block:
            self._cr_pending = block[-1:] == b"\r"
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return block

    def _lines(self, lines: list[bytes]) -> None:
        """Complete lines, in order: the common ones (data, blank) inline, the rest in _field."""
        data = self._data
        for line in lines:
            if line.startswith(_DATA_SPACE):
                data.append(line[6:])
                self._data_size += len(line) - 5
                if self._data_size > self._limit:
                    raise EventTooLarge(self._limit)
            elif not line:
                if data:
                    self._dispatch()
                else:
                    self._event_type = b""
            elif line[0] != 0x3A:  # not a ":" comment
                self._field(line)

    def _skip_bom(self, block: bytes) -> bytes:
        """Drop a leading BOM, even one cut across reads (its bytes wait in ``_partial``)."""
        seen = bytes(self._partial) + block
        if len(seen) < len(_BOM) and _BOM.startswith(seen):
            self._partial[:] = seen
            return b""
        self._partial.clear()
        self._started = True
        return seen[len(_BOM) :] if seen.startswith(_BOM) else seen

    def _check_size(self) -> None:
        if self._data_size + len(self._partial) > self._limit:
            raise EventTooLarge(self._limit)

    def _field(self, line: bytes) -> None:
        if len(line) > self._limit:
            raise EventTooLarge(self._limit)
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":  # "data:x" or "data" (no space after the colon)
            self._data.append(value)
            self._data_size += len(value) + 1
            if self._data_size > self._limit:
                raise EventTooLarge(self._limit)
        elif name == b"event":
            self._event_type = value
        elif name == b"id":
            if b"\0" not in value:
                self.last_event_id = value
        elif name == b"retry" and value.isdigit():  # bytes.isdigit: ASCII digits only
            self.retry_ms = int(value)

    def _dispatch(self) -> None:
        """The blank line ending an event that has data."""
        data = self._data
        payload = data[0] if len(data) == 1 else b"\n".join(data)
        data.clear()
        self._data_size = 0
        event_type, self._event_type = self._event_type or MESSAGE, b""
        if self._types is not None and event_type not in self._types:
            return
        # What SSEEvent(...) does, without its Python-level __new__ (a third of the cost).
        self.events.append(_new_tuple(SSEEvent, (event_type, payload, self.last_event_id)))
