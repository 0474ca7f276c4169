"""The stderr sink's writer thread: order kept, secrets scrubbed, nothing lost at stop, a bound."""

from __future__ import annotations

import io
import sys
import threading

from gateway.observability.logging import LineWriter


class _BlockedStream(io.StringIO):
    """A stream whose first write waits until released, like a stderr nobody reads."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.release.wait(timeout=10)
        return super().write(text)


def test_lines_arrive_in_order_and_all_of_them_by_stop() -> None:
    stream = io.StringIO()
    writer = LineWriter(stream)
    for number in range(5000):
        writer.write(f"line {number}\n")
    writer.stop()
    assert stream.getvalue().splitlines() == [f"line {number}" for number in range(5000)]


def test_every_line_is_scrubbed_on_its_own() -> None:
    stream = io.StringIO()
    writer = LineWriter(stream)
    writer.write("key sk-proj-abcdefghijkl in the text\n")
    writer.write("header Bearer\n")
    writer.write("next line: orc_0123456789abcdef\n")
    writer.stop()
    text = stream.getvalue()
    assert "abcdefghijkl" not in text and "0123456789abcdef" not in text
    # "Bearer" at the end of one line does not swallow the start of the next one.
    assert text.splitlines()[1:] == ["header Bearer", "next line: [redacted]"]


def test_an_unread_stream_drops_lines_past_the_bound_and_says_how_many() -> None:
    stream = _BlockedStream()
    writer = LineWriter(stream, max_queued=10)
    writer.write("first\n")
    assert stream.entered.wait(timeout=5)  # the thread is stuck writing "first"
    for number in range(25):
        writer.write(f"queued {number}\n")
    stream.release.set()
    writer.stop()
    lines = stream.getvalue().splitlines()
    assert lines[:11] == ["first", *(f"queued {number}" for number in range(10))]
    assert lines[11:] == ["log-writer: 15 log lines dropped (stderr was not read)"]


def test_a_closed_stream_does_not_kill_the_thread() -> None:
    stream = io.StringIO()
    writer = LineWriter(stream)
    stream.close()
    writer.write("into the void\n")
    writer.stop()
    assert not writer._thread.is_alive()


def test_every_line_is_written_or_counted_as_dropped_when_threads_race() -> None:
    stream = _BlockedStream()
    writer = LineWriter(stream, max_queued=50)
    writer.write("first\n")
    assert stream.entered.wait(timeout=5)
    threads, per_thread = 8, 5_000
    # A tiny switch interval makes the threads interleave inside the count's read-and-reset.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:

        def flood() -> None:
            for number in range(per_thread):
                writer.write(f"x {number}\n")

        workers = [threading.Thread(target=flood) for _ in range(threads)]
        for worker in workers:
            worker.start()
        stream.release.set()  # the writer thread drains and resets the count meanwhile
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)
    writer.stop()
    lines = stream.getvalue().splitlines()
    written = sum(1 for line in lines if line.startswith("x "))
    dropped = sum(int(line.split()[1]) for line in lines if line.startswith("log-writer: "))
    assert written + dropped == threads * per_thread
