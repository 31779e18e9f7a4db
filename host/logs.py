"""structlog setup: JSON lines when not on a terminal, readable lines when on one."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def _add_pid(logger: object, method: str, event: structlog.typing.EventDict
             ) -> structlog.typing.EventDict:
    """Which process: the processes of `--processes N` share one log."""
    event["pid"] = os.getpid()
    return event


def configure(level: str | None = None, default: str = "info") -> None:
    """Log at `level`, else DWF_LOG_LEVEL's, else `default`."""
    level_name = (level or os.environ.get("DWF_LOG_LEVEL") or default).upper()
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if sys.stderr.isatty()
        else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_pid,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level_name, logging.INFO)),
        # One write per line: the processes of `--processes N` share one stderr, which is
        # unbuffered, and print() writes a line and its newline apart (lines were torn).
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
