"""structlog set-up: JSON lines when not on a terminal, readable lines on one; to stderr.

Every line logged while an execution runs — the engine's, an action's, and a stdlib logger's
such as httpx's `HTTP Request:` line once `route_stdlib_logging` sends them here — carries
executionId, workflowId, version, correlationId, tenant and principal: the conductor binds them
as structlog context variables around the run (`engine.conductor.log_context`), so node tasks
inherit them and a child execution gets its own. Lines from a node's task add nodeId (the
engine's lines about an attempt, attempt too). Secret values are masked (`***`) in every line,
tracebacks included.
"""

from __future__ import annotations

import logging
import sys

import structlog

from runner.credentials import masking


def configure(log_format: str = "auto", level: str = "info") -> None:
    """Configure structlog once for the process; `log_format` is auto, json or console."""
    if log_format == "auto":
        log_format = "console" if sys.stderr.isatty() else "json"
    renderer = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            masking.mask_log_event,  # last before rendering: tracebacks are text by now
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


class _ToStructlog(logging.Handler):
    """Hands stdlib log records (uvicorn's, httpx's) to structlog, so every line has one format
    and the context of the execution that logged it (the handler runs in the caller's task)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Log the record through structlog at its level, with its traceback if any."""
        try:
            structlog.get_logger(record.name).log(
                record.levelno, record.getMessage(), logger=record.name, exc_info=record.exc_info
            )
        except Exception:
            self.handleError(record)


def route_stdlib_logging(level: int = logging.INFO) -> None:
    """Send every stdlib log record through structlog (configure structlog first)."""
    root = logging.getLogger()
    root.handlers = [_ToStructlog()]
    root.setLevel(level)
