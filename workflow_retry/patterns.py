"""Skip-reason patterns, matched in linear time whoever wrote them.

A pattern may come from a caller's payload, so it is untrusted: Python's ``re`` backtracks, and a
pattern such as ``(\\w+\\s?)+:$`` takes minutes on a 44-character reason, holding the event loop (and
with it every other execution of the process) far past the call's deadline. RE2 (``google-re2``)
runs in time linear in the text, whatever the pattern. Its price: no backreferences and no
lookarounds; a pattern that uses them is refused when the policy is read, never at match time.

RE2's syntax is Python's for everything else (classes, quantifiers, groups, ``(?i)``); ``\\w``,
``\\d`` and ``\\s`` match ASCII characters only. Matching is case-insensitive and searches (a match
anywhere in the reason), as before.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

_MAX_PROGRAM_BYTES = 8 << 20
"""RE2's memory budget for one compiled pattern (its default); a bigger one is refused when compiled."""


class PatternError(ValueError):
    """The pattern cannot be run by the linear-time engine (the message says why)."""


class ReasonPattern:
    """One compiled skip-reason pattern: a case-insensitive search in linear time."""

    __slots__ = ("_compiled", "text")

    def __init__(self, text: str, compiled: Any) -> None:
        self.text = text
        self._compiled = compiled

    def search(self, reason: str) -> bool:
        return self._compiled.search(_encodable(reason)) is not None

    def find_all(self, reason: str) -> list[str]:
        """Every non-overlapping match, left to right: its first group when the pattern has one."""
        found = self._compiled.finditer(_encodable(reason))
        return [str(m.group(1) if m.lastindex else m.group(0)) for m in found]


def _encodable(text: str) -> str:
    """The text RE2 can take (UTF-8): a lone surrogate, which JSON can carry, becomes U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


@lru_cache(maxsize=512)
def compile_pattern(text: str) -> ReasonPattern:
    """The pattern compiled once per process; :class:`PatternError` when RE2 cannot run it."""
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # the error comes back as an exception; RE2 would also print it to stderr
    options.max_mem = _MAX_PROGRAM_BYTES
    try:
        compiled = re2.compile(text, options)
    except re2.error as exc:
        raise PatternError(_explain(text, exc)) from None
    except UnicodeEncodeError:
        raise PatternError("not valid UTF-8 text (it holds a lone surrogate)") from None
    return ReasonPattern(text, compiled)


def _explain(text: str, exc: Exception) -> str:
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    detail = str(detail)
    hint = ""
    if "(?P=" in text or ("invalid escape sequence: \\" in detail and detail[-1:].isdigit()):
        hint = " (backreferences are not supported)"
    elif "invalid perl operator: (?=" in detail or "invalid perl operator: (?!" in detail:
        hint = " (lookaheads are not supported)"
    elif "invalid perl operator: (?<" in detail:
        hint = " (lookbehinds are not supported)"
    return f"not a valid regular expression for the linear-time matcher (RE2): {detail}{hint}"
