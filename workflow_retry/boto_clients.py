"""boto3 clients whose every call ends in time: timeouts and retries that fit the time left.

botocore's defaults (60 s to connect, 60 s to read, several attempts) let an endpoint that accepts
the connection and never answers hold one call for minutes, far past a Lambda's time. Each AWS call
here gets a client whose connect timeout, read timeout and number of attempts fit the seconds the
caller has left (:class:`CallBounds`); clients are cached per bounds, so while time is plentiful a
container uses one client per service, and only calls near the end get a tighter one.

A :class:`TimeBoundClient` picks the client at the moment of each call, from a ``time_left``
function: the DynamoDB ledger, the idempotency table (through Powertools), Secrets Manager, SSM and
the give-up topic all call AWS through one. boto3 is imported on the first client, not with this
module: a Cognite Function never loads it.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_CONNECT_TIMEOUT_SECONDS = 2.0
"""Longest wait for a connection (botocore's default: 60 s); AWS endpoints connect in milliseconds."""
MAX_READ_TIMEOUT_SECONDS = 5.0
"""Longest wait for an answer on a connection (botocore's default: 60 s); these calls answer in milliseconds."""
MAX_ATTEMPTS = 3
"""Attempts of one call when time allows (botocore's standard retry mode's default)."""
MIN_TIMEOUT_SECONDS = 0.1
"""The shortest timeout given, even with no time left: a call the caller still makes gets this long."""
_STEP_SECONDS = 0.1  # bounds are rounded down to this, so near the end a few clients serve many calls
_CACHED_CLIENTS = 32

TimeLeft = Callable[[], float]
"""Seconds the caller has left for an AWS call, asked at the moment of the call."""


@dataclass(frozen=True)
class CallBounds:
    """Connect and read timeouts and total attempts of one AWS call, fitted to the seconds it has."""

    connect_timeout: float
    read_timeout: float
    max_attempts: int

    @classmethod
    def within(cls, seconds: float) -> CallBounds:
        """The most patient bounds whose :attr:`longest_seconds` fit in ``seconds``.

        Three attempts while each can have at least a second, else two, else one; within an attempt a
        third to connecting (at most 2 s) and the rest to reading (at most 5 s). With no time at all,
        one attempt of the minimum timeouts.
        """
        seconds = max(0.0, seconds) if math.isfinite(seconds) else 3600.0
        attempts, share = 1, seconds
        for candidate in range(MAX_ATTEMPTS, 1, -1):
            candidate_share = (seconds - _backoff_reserve(candidate)) / candidate
            if candidate_share >= 1.0:
                attempts, share = candidate, candidate_share
                break
        connect = _fit(share / 3, MAX_CONNECT_TIMEOUT_SECONDS)
        read = _fit(share - connect, MAX_READ_TIMEOUT_SECONDS)
        return cls(connect, read, attempts)

    @property
    def longest_seconds(self) -> float:
        """The longest one call can take: every attempt waits out both timeouts, with the longest backoff between."""
        return self.max_attempts * (self.connect_timeout + self.read_timeout) + _backoff_reserve(self.max_attempts)


def _backoff_reserve(attempts: int) -> float:
    # botocore's standard mode waits up to 1 s before the 2nd attempt and up to 2 s before the 3rd.
    return float(2 ** (attempts - 1) - 1)


def _fit(seconds: float, ceiling: float) -> float:
    stepped = math.floor(round(seconds / _STEP_SECONDS, 6)) * _STEP_SECONDS
    return round(min(ceiling, max(MIN_TIMEOUT_SECONDS, stepped)), 3)


_clients: OrderedDict[tuple[object, ...], Any] = OrderedDict()
_clients_lock = threading.Lock()
_session: Any = None


def bounded_client(service: str, seconds: float, *, region: str | None = None) -> Any:
    """A boto3 client of ``service`` whose every call ends within ``seconds`` (see :class:`CallBounds`).

    Region, credentials and endpoint come from the environment as for any boto3 client
    (``AWS_ENDPOINT_URL_<SERVICE>`` included). Clients are cached per service, region, bounds and
    those variables (constant in a Lambda; tests point services elsewhere one at a time).
    """
    bounds = CallBounds.within(seconds)
    key = (service, region, bounds, _environment())
    with _clients_lock:  # a boto3 session is not safe for making clients from several threads at once
        client = _clients.get(key)
        if client is None:
            from botocore.config import Config

            global _session
            if _session is None:
                import boto3  # here: the AWS path only

                _session = boto3.session.Session()
            config = Config(
                connect_timeout=bounds.connect_timeout,
                read_timeout=bounds.read_timeout,
                retries={"total_max_attempts": bounds.max_attempts, "mode": "standard"},
            )
            client = _session.client(service, region_name=region, config=config)
            _clients[key] = client
            while len(_clients) > _CACHED_CLIENTS:
                _clients.popitem(last=False)
        _clients.move_to_end(key)
        return client


def _environment() -> tuple[tuple[str, str], ...]:
    # The variables a client takes its endpoint and region from (AWS_ENDPOINT_URL_SECRETS_MANAGER, ...).
    return tuple(
        sorted(
            (name, value)
            for name, value in os.environ.items()
            if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_REGION", "AWS_DEFAULT_REGION")
        )
    )


class TimeBoundClient:
    """A client of ``service`` whose each call is bounded by ``time_left()`` at the moment it is made.

    It stands wherever a boto3 client does: ``client.get_item(...)`` runs on the cached client whose
    bounds fit the time left then.
    """

    def __init__(self, service: str, time_left: TimeLeft, *, region: str | None = None) -> None:
        self._service = service
        self._time_left = time_left
        self._region = region

    def __getattr__(self, name: str) -> Any:
        return getattr(bounded_client(self._service, self._time_left(), region=self._region), name)


def time_left_until(ends_at: float) -> TimeLeft:
    """The seconds left until ``ends_at`` (``time.monotonic()`` time), asked anew at each call."""
    return lambda: ends_at - time.monotonic()


def no_time_limit() -> float:
    """The time left of a caller without a deadline: the bounds' ceilings apply."""
    return math.inf
