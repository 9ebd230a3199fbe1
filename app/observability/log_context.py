"""Structured JSON logs with the run id on every line a job writes.

The run id lives in a context variable that a job binds for its duration (``bound``); a logging
filter copies it onto every record, so lines from any library a job calls carry it too. Threads
do not inherit context variables, so threads started for a job (the heartbeat) copy it explicitly.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

RUN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("priorprobe_run_id", default=None)


@contextmanager
def bound(run_id: str | None) -> Iterator[None]:
    token = RUN_ID.set(run_id)
    try:
        yield
    finally:
        RUN_ID.reset(token)


def copy_context_into_thread() -> Callable[[], None]:
    """Call in the starting thread; call the result first thing in the new thread."""
    run_id = RUN_ID.get()
    return lambda: RUN_ID.set(run_id)


class RunIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = RUN_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, run_id, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None),
            "process": record.process,
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_json_logging(level: str | int = "INFO") -> None:
    """Replace the root logger's handlers with one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RunIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
