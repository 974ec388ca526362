"""A rate limiter for the emulated project: requests per second and requests at once, answered with 429.

CDF throttles a project's API requests and answers ``429 Too Many Requests`` when a client sends more
than its share; no number is published for workflows (the API answers 429 "under load").  The
emulator models two limits, both off by default and set per test:

- **rate**: a token bucket that holds up to ``burst`` requests and refills at ``requests_per_second``;
  a request that finds it empty gets a 429 whose ``Retry-After`` header says, in whole seconds
  (at least 1), when the next request would pass;
- **concurrency**: at most ``max_concurrent`` requests being answered at once; one more gets a 429
  with ``Retry-After: 1``.

A 429 costs no bucket token and holds no concurrency slot, and it is answered before the request
is looked at, so it never changes state.  Only ``/api/v1/projects/...`` requests count (not the
OAuth token endpoint, which belongs to the identity provider, nor ``/token/inspect``).

Not thread-safe on its own: the emulator calls it with its state lock held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class RateLimit:
    """The limits: ``requests_per_second`` (with a bucket of ``burst``, default one second's worth) and
    ``max_concurrent``; None switches a limit off."""

    requests_per_second: float | None = None
    burst: int | None = None
    max_concurrent: int | None = None

    def __post_init__(self) -> None:
        if self.requests_per_second is not None and self.requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        if self.burst is not None and self.burst < 1:
            raise ValueError("burst must be at least 1")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")

    @property
    def capacity(self) -> float:
        if self.burst is not None:
            return float(self.burst)
        return max(1.0, float(self.requests_per_second or 1.0))


@dataclass
class RateLimiter:
    """The state of one :class:`RateLimit`: the bucket's level and the requests being answered."""

    limit: RateLimit
    tokens: float = field(init=False)
    updated: float | None = None
    active: int = 0
    throttled: int = 0
    """How many requests were answered 429 by this limiter."""

    def __post_init__(self) -> None:
        self.tokens = self.limit.capacity

    def admit(self, now: float) -> float | None:
        """None when the request may proceed (then :meth:`release` it when answered), else the
        Retry-After seconds of its 429."""
        limit = self.limit
        if limit.max_concurrent is not None and self.active >= limit.max_concurrent:
            self.throttled += 1
            return 1.0
        if limit.requests_per_second is not None:
            if self.updated is not None:
                self.tokens = min(limit.capacity, self.tokens + (now - self.updated) * limit.requests_per_second)
            self.updated = now
            if self.tokens < 1.0:
                self.throttled += 1
                return float(max(1, math.ceil((1.0 - self.tokens) / limit.requests_per_second)))
            self.tokens -= 1.0
        self.active += 1
        return None

    def release(self) -> None:
        """A request admitted earlier has been answered."""
        self.active = max(0, self.active - 1)
