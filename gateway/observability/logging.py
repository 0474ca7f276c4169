"""Loguru, configured once per process: one sink, secrets redacted, no variable dumps."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from loguru import logger

from gateway.core.redact import redact_text

if TYPE_CHECKING:
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


class InterceptHandler(logging.Handler):
    """Route the standard logging of uvicorn and SQLAlchemy through loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).log(level, record.getMessage())


def configure_logging(*, level: str, fmt: str) -> None:
    logger.remove()
    logger.configure(extra={"request_id": "-"}, patcher=_redact)
    if fmt == "json":
        logger.add(sys.stderr, level=level, serialize=True, diagnose=False, backtrace=False)
    else:
        logger.add(sys.stderr, level=level, format=_HUMAN, diagnose=False, backtrace=False)
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)  # noqa: TID251
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy"):
        std = logging.getLogger(name)
        std.handlers = [InterceptHandler()]
        std.propagate = False
