"""Loguru, configured once per process: one sink, secrets redacted, no variable dumps."""

from __future__ import annotations

import logging
import queue
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from loguru import logger

from gateway.core.redact import redact_text
from gateway.observability.exceptions import scrubbed

if TYPE_CHECKING:
    from types import FrameType

    from loguru import Record

_HUMAN = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "{extra[request_id]} <level>{message}</level> {extra}"
)


def _redact(record: Record) -> None:
    record["message"] = redact_text(record["message"])
    for key, value in record["extra"].items():
        if isinstance(value, str):
            record["extra"][key] = redact_text(value)
    exception = record["exception"]
    if exception is not None and exception.value is not None:
        twin = scrubbed(exception.value, redact_text)
        if twin is not None:  # the log file's lines are not scrubbed again (LineWriter's are)
            record["exception"] = exception._replace(value=twin)


class LineWriter:
    """The stderr sink: lines queue in memory, one daemon thread scrubs and writes them.

    Loguru's ``enqueue=True`` pickles every record through a multiprocessing pipe, and the
    pipe's reader thread unpickles it again: about a sixth of the gateway's CPU under load.
    A thread of our own needs neither, and writes whatever has queued up in one call. Every
    line is scrubbed once more here, tracebacks included: the patcher only sees the message
    and the bound values, an exception's text (``str(exc)``, e.g. an error quoting a key) is
    added by the formatter after it. At ``max_queued`` unwritten lines (stderr not read)
    further lines are dropped and counted rather than held without bound.
    """

    def __init__(self, stream: TextIO, *, max_queued: int = 100_000) -> None:
        self._stream = stream
        self._max_queued = max_queued
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._dropped = 0
        # Writers (any thread) add to the count and the writer thread takes it: both under
        # this lock, so no drop is lost between a read and its reset. Only drops take it.
        self._dropped_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def write(self, text: str) -> None:
        if self._lines.qsize() >= self._max_queued:
            with self._dropped_lock:
                self._dropped += 1
            return
        self._lines.put(text)

    def stop(self) -> None:
        """Write what is queued, then end the thread (loguru calls this on remove and at exit)."""
        if self._thread.is_alive():
            self._lines.put(None)
            self._thread.join(timeout=5)

    def isatty(self) -> bool:
        return self._stream.isatty()

    def _run(self) -> None:
        lines = self._lines
        while True:
            batch = [lines.get()]
            while len(batch) < 4096 and not lines.empty():
                batch.append(lines.get_nowait())
            stopping = None in batch
            text = "".join(redact_text(line) for line in batch if line is not None)
            if self._dropped:
                with self._dropped_lock:
                    dropped, self._dropped = self._dropped, 0
                text += f"log-writer: {dropped} log lines dropped (stderr was not read)\n"
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):  # stderr closed or gone: nothing left to write to
                pass
            if stopping:
                return


class InterceptHandler(logging.Handler):
    """Route the standard logging of uvicorn and SQLAlchemy through loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        # Report the caller of the stdlib logger (not this handler) as the line's origin.
        frame: FrameType | None = logging.currentframe()
        depth = 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


class DemoteInfo(logging.Filter):
    """A library's INFO lines as DEBUG: detail for whoever debugs it, noise on every start.

    Alembic says "Context impl SQLiteImpl." and "Will assume non-transactional DDL." each time
    the gateway or the CLI checks the schema.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def configure_logging(
    *,
    level: str,
    fmt: str,
    file: Path | None = None,
    rotation: str = "100 MB",
    retention: str = "14 days",
) -> None:
    logger.remove()
    logger.configure(extra={"request_id": "-"}, patcher=_redact)
    # The sink writes from its own thread, so a slow stderr never blocks the event loop.
    sink = LineWriter(sys.stderr)
    if fmt == "json":
        logger.add(sink, level=level, serialize=True, diagnose=False, backtrace=False)
    else:
        logger.add(sink, level=level, format=_HUMAN, diagnose=False, backtrace=False)
    if file is not None:
        # A file for log shippers: JSON lines, rotated by size or time, old files deleted.
        logger.add(
            file,
            level=level,
            serialize=True,
            diagnose=False,
            backtrace=False,
            enqueue=True,
            rotation=rotation,
            retention=retention,
        )
    # The stdlib level filters before any record is built: httpcore and SQLAlchemy log at DEBUG
    # on every request, which costs real CPU even when loguru would drop it. httpx's INFO line
    # per upstream call duplicates our own records.
    logging.basicConfig(  # noqa: TID251
        handlers=[InterceptHandler()],
        level=logging.DEBUG if level == "TRACE" else logging.getLevelName(level),
        force=True,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # aiosqlite's DEBUG line per statement carries its parameters (stored prompts included) and is
    # written from its worker thread, without the request id.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy"):
        std = logging.getLogger(name)
        std.handlers = [InterceptHandler()]
        std.propagate = False
    # On the handler, not the logger: a logger's filters skip its children's records.
    demoted = InterceptHandler()
    demoted.addFilter(DemoteInfo())
    alembic = logging.getLogger("alembic")
    alembic.handlers = [demoted]
    alembic.propagate = False
