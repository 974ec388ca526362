"""Execution ID validation: the only way a caller's value becomes something that goes into a URL.

CDF documents execution IDs as UUID version 4 strings of 36 characters. Anything else is refused
here, with a message that says what is wrong, before any request is made.
"""

from __future__ import annotations

import json
import re
from typing import NewType

ExecutionId = NewType("ExecutionId", str)
"""A canonical, lower-case UUIDv4 string: safe to place in a URL path."""

_CANONICAL_LENGTH = 36
_DASH_POSITIONS = (8, 13, 18, 23)
_HEX = frozenset("0123456789abcdef")
_UUID_V4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_SHOWN_CHARACTERS = 80


class InvalidExecutionId(ValueError):
    """The value is not a canonical UUIDv4 execution ID; the message says why."""


def parse_execution_id(value: object) -> ExecutionId:
    """Return ``value`` as a lower-case canonical UUIDv4, or raise :class:`InvalidExecutionId`."""
    if not isinstance(value, str):
        raise InvalidExecutionId(f"expected a string, got {_json_type(value)}")
    if value == "":
        raise InvalidExecutionId("is empty")
    if value != value.strip() or any(ch.isspace() for ch in value):
        raise InvalidExecutionId("contains white space")
    if not value.isascii():
        raise InvalidExecutionId("contains non-ASCII characters")
    if any(not ch.isprintable() for ch in value):
        raise InvalidExecutionId("contains control characters")
    if len(value) != _CANONICAL_LENGTH:
        raise InvalidExecutionId(f"must be {_CANONICAL_LENGTH} characters (a UUID), got {len(value)}")
    lowered = value.lower()
    if any(lowered[i] != "-" for i in _DASH_POSITIONS):
        raise InvalidExecutionId("is not in the canonical 8-4-4-4-12 UUID form")
    if any(ch not in _HEX for i, ch in enumerate(lowered) if i not in _DASH_POSITIONS):
        raise InvalidExecutionId("contains characters other than hexadecimal digits and dashes")
    if lowered[14] != "4":
        raise InvalidExecutionId(f"is a UUID version {lowered[14]}, not version 4")
    if not _UUID_V4.fullmatch(lowered):
        raise InvalidExecutionId("has an invalid UUID variant (the 17th hex digit must be 8, 9, a or b)")
    return ExecutionId(lowered)


def display_value(value: object) -> str:
    """A short, printable rendering of a caller's value, for reporting an invalid ID."""
    text = value if isinstance(value, str) else _safe_json(value)
    shown = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    if len(shown) > _SHOWN_CHARACTERS:
        return shown[:_SHOWN_CHARACTERS] + f"...({len(text)} characters)"
    return shown


def _json_type(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case list() | tuple():
            return "an array"
        case dict():
            return "an object"
        case _:
            return type(value).__name__


def _safe_json(value: object) -> str:
    # Containers may be huge or deeply nested: describe them instead of serialising them.
    if isinstance(value, list | tuple):
        return f"<an array of {len(value)} items>"
    if isinstance(value, dict):
        return f"<an object with {len(value)} keys>"
    try:
        return json.dumps(value, default=lambda o: f"<{type(o).__name__}>")
    except ValueError:  # e.g. an integer beyond Python's digit limit for str()
        return f"<{_json_type(value)}>"
