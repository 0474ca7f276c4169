"""The upstream SSE parser: the WHATWG rules, its bound, and any split of a stream into reads.

The example cases mirror the frontend parser's spec
(frontend/projects/orchestra-client/src/lib/sse/sse-parser.spec.ts), except that nothing is
dispatched at the end of the body: an event without its blank line is incomplete.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.upstream.sse import EventTooLarge, SSEEvent, SSEParser

LIMIT = 1_048_576


def parse(reads: Iterable[bytes | str], limit: int = LIMIT) -> list[SSEEvent]:
    parser = SSEParser(limit)
    for read in reads:
        parser.feed(read.encode() if isinstance(read, str) else read)
    return list(parser.events)


def ev(data: str, event: str = "message", id: str = "") -> SSEEvent:
    return SSEEvent(event.encode(), data.encode(), id.encode())


# --- the rules, one by one ------------------------------------------------------------------


def test_named_and_unnamed_events_with_their_data() -> None:
    assert parse(['event: delta\ndata: {"text":"Hi"}\n\ndata: {}\n\n']) == [
        ev('{"text":"Hi"}', "delta"),
        ev("{}"),
    ]


def test_an_event_is_dispatched_by_its_blank_line_not_before() -> None:
    parser = SSEParser(LIMIT)
    parser.feed(b"event: delta\ndata: a\n")
    assert list(parser.events) == []
    parser.feed(b"\n")
    assert list(parser.events) == [ev("a", "delta")]
    parser.feed(b"data: b\n\ndata: c")
    assert list(parser.events) == [ev("a", "delta"), ev("b")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert parse(["event: delta\ndata: line one\ndata:line two\ndata\ndata:  indented\n\n"]) == [
        ev("line one\nline two\n\n indented", "delta")
    ]


def test_only_one_leading_space_is_stripped_and_trailing_space_is_kept() -> None:
    assert parse(["data:   x  \n\n", "event:  spaced\ndata: y\n\n"]) == [
        ev("  x  "),
        ev("y", " spaced"),
    ]


def test_comments_and_pings_are_skipped() -> None:
    assert parse([": ping\n\n", ":another\n", "data: x\n", ": inside\n", "\n", ": ping\n\n"]) == [
        ev("x")
    ]


def test_lf_crlf_and_lone_cr_line_endings() -> None:
    assert parse(["data: a\n\n", "data: b\r\n\r\n", "data: c\r\rdata: d\r\n\n"]) == [
        ev("a"),
        ev("b"),
        ev("c"),
        ev("d"),
    ]


def test_a_crlf_pair_split_across_reads_is_one_line_ending() -> None:
    assert parse(["data: a\r", "\ndata: b\r", "\n\r", "\n"]) == [ev("a\nb")]


def test_a_cr_at_the_end_of_a_read_ends_the_line_at_once() -> None:
    parser = SSEParser(LIMIT)
    parser.feed(b"data: a\r\r")
    assert list(parser.events) == [ev("a")]
    parser.feed(b"\ndata: b\n\n")  # the LF pairs with the second CR: no extra blank line
    assert list(parser.events) == [ev("a"), ev("b")]


def test_an_unterminated_last_event_is_not_dispatched() -> None:
    assert parse(["data: one\n\ndata: [DONE]\n"]) == [ev("one")]
    assert parse(["data: one\n\ndata: [DONE]"]) == [ev("one")]


def test_events_without_data_are_not_dispatched_nor_leak_their_type() -> None:
    assert parse(["event: delta\n\ndata: plain\n\n", "event: nothing\n\n"]) == [ev("plain")]


def test_an_empty_data_field_is_an_empty_payload() -> None:
    assert parse(["event: delta\ndata:\n\n", "data\n\n"]) == [ev("", "delta"), ev("")]


def test_a_line_without_colon_is_a_field_with_an_empty_value() -> None:
    assert parse(["event\ndata\ndata\n\n"]) == [ev("\n")]


def test_a_leading_bom_is_dropped_even_cut_across_reads() -> None:
    bom = b"\xef\xbb\xbf"
    assert parse([bom + b"data: a\n\n"]) == [ev("a")]
    assert parse([bom[:1], bom[1:2], bom[2:] + b"data\n\n"]) == [ev("")]
    assert parse([bom[:2], b"data: x\n\n"]) == []  # not a BOM: a field named "\xef\xbb..."
    # Only one, and only at the start.
    assert parse([bom + bom + b"data: a\n\n" + bom + b"data: b\n\n"]) == []


def test_the_last_event_id_is_remembered_and_a_nul_id_ignored() -> None:
    parser = SSEParser(LIMIT)
    parser.feed(b"id: 7\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid\ndata: d\n\n")
    assert list(parser.events) == [ev("a", id="7"), ev("b", id="7"), ev("c", id="7"), ev("d")]
    assert parser.last_event_id == b""


def test_retry_takes_ascii_digits_only_and_unknown_fields_are_ignored() -> None:
    parser = SSEParser(LIMIT)
    parser.feed(b"retry: 1500\nfoo: bar\ndata: a\n\nretry: 12a\nretry: \xd9\xa3\n")
    assert parser.retry_ms == 1500
    assert list(parser.events) == [ev("a")]


def test_data_is_handed_out_as_the_bytes_that_were_sent() -> None:
    text = '{"text":"naïve \u2013 日本 😀"}'
    raw = f"data: {text}\n\n".encode()
    cut = raw.index("😀".encode()) + 2  # inside the emoji
    assert parse([raw[:cut], raw[cut:]]) == [ev(text)]


def test_empty_streams_and_empty_reads_give_nothing() -> None:
    assert parse([]) == []
    assert parse(["", "\n", "\r\n", "", "\r"]) == []


def test_a_non_positive_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        SSEParser(0)


# --- the bound ------------------------------------------------------------------------------


def test_a_line_without_end_is_refused_once_past_the_bound() -> None:
    parser = SSEParser(1000)
    parser.feed(b"data: ")
    for _ in range(99):
        parser.feed(b"x" * 10)  # 996 bytes: still fine
    with pytest.raises(EventTooLarge) as raised:
        parser.feed(b"x" * 10)
    assert raised.value.limit == 1000


def test_one_read_past_the_bound_is_refused_at_once() -> None:
    with pytest.raises(EventTooLarge):
        SSEParser(1000).feed(b"data: " + b"x" * 5000)
    with pytest.raises(EventTooLarge):  # a comment being received counts too: it is kept
        SSEParser(1000).feed(b":" + b"x" * 5000)


def test_the_data_of_one_event_is_counted_across_its_lines() -> None:
    parser = SSEParser(1000)
    parser.feed(b"data: " + b"x" * 400 + b"\n")
    parser.feed(b"data: " + b"x" * 400 + b"\n")
    with pytest.raises(EventTooLarge):
        parser.feed(b"data: " + b"x" * 400 + b"\n")


def test_the_data_so_far_plus_the_partial_line_is_counted() -> None:
    parser = SSEParser(1000)
    parser.feed(b"data: " + b"x" * 600 + b"\ndata: ")
    with pytest.raises(EventTooLarge):
        parser.feed(b"y" * 500)


def test_an_event_at_the_bound_passes_and_the_count_restarts_with_each_event() -> None:
    limit = 1000
    event = b"data: " + b"x" * (limit - 1) + b"\n\n"  # 999 bytes + its newline: exactly 1000
    events = parse([event] * 50, limit)
    assert len(events) == 50
    assert all(len(e.data) == limit - 1 for e in events)


def test_long_field_lines_are_refused() -> None:
    with pytest.raises(EventTooLarge):
        SSEParser(100).feed(b"event: " + b"e" * 200 + b"\n")
    with pytest.raises(EventTooLarge):
        SSEParser(100).feed(b"id: " + b"1" * 200 + b"\n")


# --- any split of a valid stream ------------------------------------------------------------

_ENDINGS = ("\n", "\r\n", "\r")
# Text that holds no line ending: any other character, multi-byte ones included.
_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=12,
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    """A valid event stream, with mixed line endings, and the events it holds."""
    lines: list[str] = []
    expected: list[SSEEvent] = []
    last_id = ""
    for _ in range(draw(st.integers(0, 6))):
        event_type = draw(st.one_of(st.none(), st.sampled_from(["delta", "error", "message"])))
        values = draw(st.lists(_text, max_size=4))
        if draw(st.booleans()):
            lines.append(f":{draw(_text)}")  # a comment
        if event_type is not None:
            lines.append(f"event: {event_type}")
        if draw(st.booleans()):
            last_id = draw(st.text(alphabet="abc123", max_size=4))
            lines.append(f"id: {last_id}" if last_id else "id")
        for value in values:
            form = draw(st.sampled_from(["space", "bare", "none"]))
            if form == "none" and value == "":
                lines.append("data")
            elif form == "bare" and not value.startswith(" "):
                lines.append(f"data:{value}")
            else:
                lines.append(f"data: {value}")
        lines.append("")
        if values:
            expected.append(ev("\n".join(values), event_type or "message", last_id))
    text = "\ufeff" if draw(st.booleans()) else ""  # a leading BOM
    previous = ""
    for line in lines:
        ending = draw(st.sampled_from(_ENDINGS))
        if previous == "\r" and line == "" and ending == "\n":
            ending = "\r\n"  # "\r" then "\n" would read as one CRLF, not two line endings
        text += line + ending
        previous = ending
    return text.encode(), expected


def _cut(raw: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({min(c, len(raw)) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.lists(st.integers(0, 400), max_size=12))
def test_any_split_into_reads_yields_the_same_events(
    stream: tuple[bytes, list[SSEEvent]], cuts: list[int]
) -> None:
    raw, expected = stream
    assert parse([raw]) == expected
    assert parse(_cut(raw, cuts)) == expected


@settings(max_examples=60, deadline=None)
@given(streams())
def test_one_byte_reads_yield_the_same_events(stream: tuple[bytes, list[SSEEvent]]) -> None:
    raw, expected = stream
    assert parse([raw[i : i + 1] for i in range(len(raw))]) == expected


def test_every_two_way_split_of_a_crlf_utf8_stream() -> None:
    raw = 'event: delta\r\ndata: {"text":"é😀"}\r\n\r\n: ping\r\n\r\ndata: {}\r\n\r\n'.encode()
    expected = [ev('{"text":"é😀"}', "delta"), ev("{}")]
    for i in range(len(raw) + 1):
        assert parse([raw[:i], raw[i:]]) == expected, i
