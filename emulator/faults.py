"""Fault injection: per-test rules that make the emulator answer errors, drop connections or go slow.

A :class:`Fault` matches requests by method and path; each match consumes one entry of its
``statuses`` (or draws against ``probability``).  The server asks each active fault in turn
(with its state lock held) and the first one that still has something to apply wins.
"""

from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import dataclass, field

DROP = 0
"""A status entry that closes the connection without answering."""


@dataclass(frozen=True)
class FaultAction:
    """What one application of a fault does to one request.

    ``status`` None or below 400 (but not 0): answer the request normally; 0: drop the connection;
    otherwise answer that status with CDF's error body.
    """

    status: int | None
    latency: float = 0.0
    retry_after: float | None = None
    apply_then_fail: bool = False
    reset: bool = False

    @property
    def fails(self) -> bool:
        """Whether the answer is replaced (an error status or a dropped connection)."""
        return self.status is not None and (self.status == DROP or self.status >= 400)


@dataclass
class Fault:
    """A rule for injecting failures into matching requests.

    - ``method``: HTTP method to match (None = any).
    - ``path_regex``: ``re.search`` against the path after ``/api/v1/projects/{project}`` (the full path
      for ``/oauth2/token`` and ``/api/v1/token/inspect``); None = any path.
    - ``statuses``: consumed one per matching request; each entry answers that status with CDF's error
      body, ``0`` drops the connection, and an entry below 400 lets that request through untouched.
    - ``retry_after``: adds ``Retry-After: <seconds>`` to the 429s this fault answers.
    - ``latency``: extra seconds for each matching request (a fault with only latency applies forever,
      or ``times`` times).
    - ``apply_then_fail``: process the request normally (e.g. apply a retry, consuming its nonce) and
      then answer the next status instead of the real response, as if the response was lost.
    - ``probability``: each matching request fails with ``statuses[0]`` with this probability
      (``random.Random(seed)``); ``statuses`` is then not consumed.
    - ``times``: remaining number of applications (None = while statuses last, or forever).
    - ``reset``: drop connections (status 0) with a TCP reset instead of a plain close.  httpx reports a
      plain close as ``RemoteProtocolError`` (the SDK raises ``CogniteRequestError`` without retrying) and a
      reset as ``ReadError`` (the SDK retries it up to ``max_retries_connect`` times, then raises
      ``CogniteConnectionError``).
    """

    method: str | None = None
    path_regex: str | None = None
    statuses: list[int] = field(default_factory=list)
    retry_after: float | None = None
    latency: float = 0.0
    apply_then_fail: bool = False
    probability: float | None = None
    seed: int = 0
    times: int | None = None
    reset: bool = False
    applied: int = field(default=0, init=False)
    """How many times this fault has applied so far."""

    _queue: deque[int] = field(init=False, repr=False, compare=False)
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for status in self.statuses:
            if status != DROP and not 100 <= status <= 599:
                raise ValueError(f"fault status must be 0 or an HTTP status, got {status}")
        if self.probability is not None:
            if not 0.0 <= self.probability <= 1.0:
                raise ValueError("probability must be between 0 and 1")
            if not self.statuses:
                raise ValueError("a fault with a probability needs statuses[0] to answer")
        if self.latency < 0:
            raise ValueError("latency must be >= 0")
        if self.method is not None:
            self.method = self.method.upper()
        self._queue = deque(self.statuses)
        self._rng = random.Random(self.seed)
        self._pattern = re.compile(self.path_regex) if self.path_regex is not None else None

    def matches(self, method: str, path: str) -> bool:
        """Whether the request's method and path fall under this fault (exhausted or not)."""
        if self.method is not None and self.method != method.upper():
            return False
        return self._pattern is None or self._pattern.search(path) is not None

    @property
    def exhausted(self) -> bool:
        """True once the fault has nothing left to apply."""
        if self.times is not None and self.times <= 0:
            return True
        if self.probability is not None:
            return False
        return not self._queue and (bool(self.statuses) or self.latency <= 0)

    def take(self) -> FaultAction | None:
        """Consume one application for a matching request; None when there is nothing to apply.

        The caller holds the emulator's lock.
        """
        if self.exhausted:
            return None
        status: int | None
        if self.probability is not None:
            hit = self._rng.random() < self.probability
            if not hit and self.latency <= 0:
                return None
            status = self.statuses[0] if hit else None
            if hit and self.times is not None:
                self.times -= 1
        else:
            status = self._queue.popleft() if self._queue else None
            if self.times is not None:
                self.times -= 1
        self.applied += 1
        return FaultAction(
            status=status,
            latency=self.latency,
            retry_after=self.retry_after if status == 429 else None,
            apply_then_fail=self.apply_then_fail,
            reset=self.reset,
        )
