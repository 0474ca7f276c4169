"""Loguru, configured once per process: one sink, secrets redacted, no variable dumps."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from loguru import logger

from gateway.core.redact import redact_text

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


class _RedactedStream:
    """The sink: every formatted line is scrubbed once more, tracebacks included.

    The patcher only sees the message and the bound values; an exception's text (``str(exc)``,
    e.g. an error quoting a key) is added by the formatter, after it.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        self._stream.write(redact_text(text))

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()


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
    sink = _RedactedStream(sys.stderr)
    # enqueue: the sink writes from a thread, so a slow stderr never blocks the event loop.
    if fmt == "json":
        logger.add(sink, level=level, serialize=True, diagnose=False, backtrace=False, enqueue=True)
    else:
        logger.add(sink, level=level, format=_HUMAN, diagnose=False, backtrace=False, enqueue=True)
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
