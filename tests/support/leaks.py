"""Scanning for secrets: every token, client secret, webhook secret and nonce the tests know of."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class CapturingHandler(logging.Handler):
    """Keeps every log record rendered as text: message, arguments, exception and extra fields."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self._lock_texts = threading.Lock()
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format is still scanned raw
            text = f"{record.msg!r} {record.args!r}"
        # The message holds the formatted arguments; of the rest only the extra fields can carry a
        # value (rendering every record's whole __dict__ made a suite at DEBUG measurably slower).
        extra = {key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRIBUTES}
        parts = [text, repr(extra)] if extra else [text]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(repr(record.exc_info[1]))
        with self._lock_texts:
            self.texts.append("\n".join(parts))


def find_leaks(texts: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """Which secrets appear in which texts (each hit shortened, the secret itself masked)."""
    wanted = [s for s in set(secrets) if s and len(s) >= 8]
    hits = []
    for text in texts:
        for secret in wanted:
            if secret in text:
                hits.append(text[:200].replace(secret, "<SECRET>"))
    return hits
