"""Logging set-up for the command line: structlog to stderr, readable on a terminal, JSON otherwise.

The standard library's loggers (APScheduler, asyncio, aiohttp) go through the same renderer, so with JSON every
line of the log is one JSON object, tracebacks included.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    """A logger on the current ``sys.stderr``, looked up per call, so a replaced stream is followed."""
    return structlog.PrintLogger(file=sys.stderr)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler on the current ``sys.stderr``, looked up per record, as ``_stderr_logger`` is."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure(level: str = "INFO", *, json: bool | None = None) -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    as_json = not sys.stderr.isatty() if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _StderrHandler)] + [handler]  # once, if again
    root.setLevel(max(numeric, logging.WARNING))
