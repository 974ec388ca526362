"""One JSON line per log event on stdout, for a Cognite Function call (the Lambda uses Powertools Logger).

A Cognite Function's stdout is the call's log, and its runtime configures no Python logging: without a
handler, INFO lines go nowhere and warnings print bare. :func:`log_json_to_stdout` gives the package
logger (``workflow_retry``) a handler that writes each record as one JSON object: ``timestamp``,
``level``, ``logger``, ``message``, ``call_id``, and the record's structured fields (``extra``), e.g.
``execution_id``, ``workflow``, ``version``, ``outcome``, ``attempt`` and ``reason`` of an execution
event. The root logger is never touched, so a host that configured its own logging keeps it (its
handlers still receive the records). Field names match the Lambda's Powertools lines.

The call ID is bound per call (:func:`call_log_context`) in a context variable, so that calls served
at the same time by one process each carry their own (a coroutine handed to the SDK's event loop, and
``asyncio.to_thread``, run in a copy of the caller's context).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

PACKAGE_LOGGER = "workflow_retry"

_call_id: ContextVar[str | None] = ContextVar("workflow_retry_call_id", default=None)
_setup_lock = threading.Lock()
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "call_id",
    "taskName",
}


class JsonLineFormatter(logging.Formatter):
    """A record as one line of JSON: the standard fields first, then the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "call_id": getattr(record, "call_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class _CallIdFilter(logging.Filter):
    """Stamps each record with the call ID bound in the current context."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.call_id = _call_id.get()
        return True


class JsonStdoutHandler(logging.Handler):
    """Writes formatted records to the current ``sys.stdout`` (looked up at each write, not at setup)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonLineFormatter())
        self.addFilter(_CallIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            stream = sys.stdout
            stream.write(text + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def log_json_to_stdout() -> None:
    """Give the package logger its JSON stdout handler, once per process (warm calls reuse it).

    The package logger's level is set to INFO only when nobody set it (a host's choice is kept).
    """
    package = logging.getLogger(PACKAGE_LOGGER)
    with _setup_lock:
        if not any(isinstance(handler, JsonStdoutHandler) for handler in package.handlers):
            package.addHandler(JsonStdoutHandler())
        if package.level == logging.NOTSET:
            package.setLevel(logging.INFO)


@contextmanager
def call_log_context(call_id: str | None) -> Iterator[None]:
    """Every record logged inside the block (in this context) carries ``call_id``."""
    token = _call_id.set(call_id)
    try:
        yield
    finally:
        _call_id.reset(token)
