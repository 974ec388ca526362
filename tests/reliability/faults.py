"""The fault table: every fault the suite injects, and what each ID must come out as.

Each :class:`FaultCase` arranges one fault around a *target* execution (FAILED), next to a *control*
execution (FAILED) and an invalid ID in the same call. ``control=None`` means the fault hits every
execution (a 401, a session or ledger outage): the control then ends like the target.

``retry_posts`` counts the ``POST .../retry`` requests that reached the emulator for the execution
(the SDK's own retries included); ``applied`` the retries CDF applied (``emu.retry_count``): never
more than one. Settings: 3 SDK retries without backoff, 1 s request timeout, 2 s deadline.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from emulator import RAW_READ, RAW_WRITE, SESSIONS_CREATE, WORKFLOW_READ, WORKFLOW_WRITE, Fault
from tests.conftest import register_secret
from tests.reliability.conftest import Harness, new_secret_client

SDK_TRIES = 1 + 3
"""One request and the SDK's 3 retries (429, 502, 503, 504, reset connections, read timeouts)."""


@dataclass(frozen=True)
class Expect:
    """What one ID must come out as."""

    outcome: str
    retryable: bool | None = None
    code: int | None = None
    applied: int = 0
    retry_posts: int | frozenset[int] = 0

    @property
    def wants_redelivery(self) -> bool:
        return self.outcome == "deferred" or self.retryable is True

    def posts_ok(self, count: int) -> bool:
        return count in self.retry_posts if isinstance(self.retry_posts, frozenset) else count == self.retry_posts


RETRIED = Expect("retried", applied=1, retry_posts=1)


def failed(code: int | None, *, retryable: bool, posts: int | frozenset[int] = 0, applied: int = 0) -> Expect:
    return Expect("failed", retryable=retryable, code=code, applied=applied, retry_posts=posts)


Arrange = Callable[[Harness, str], None]


@dataclass(frozen=True)
class FaultCase:
    id: str
    fault: str
    """The fault, as the docs table names it."""
    arrange: Arrange
    target: Expect
    control: Expect | None = RETRIED
    seed_target: bool = True
    settle_seconds: float = 0.0
    """How long the emulator may still be sleeping on a slow request after the call returned."""
    needs_moto: bool = False
    deadline_seconds: float | None = None
    """``RETRY_DEADLINE_SECONDS`` of this row when the suite's 2 s leaves too little after the fault for
    what the row proves (None: the suite's)."""

    def expect_control(self) -> Expect:
        return self.control if self.control is not None else self.target


def faults(*make: Callable[[str], Fault]) -> Arrange:
    """Arrange ``Fault``s built from the target's ID."""

    def arrange(h: Harness, target: str) -> None:
        for build in make:
            h.emu.add_fault(build(target))

    return arrange


def on_retry(status: int, **kwargs: Any) -> Callable[[str], Fault]:
    """Every retry request of the target answers ``status`` (``probability=1``: a storm that never ends)."""
    if kwargs.get("apply_then_fail") or "times" in kwargs:
        return lambda t: Fault(method="POST", path_regex=rf"/executions/{t}/retry$", statuses=[status], **kwargs)
    return lambda t: Fault(
        method="POST", path_regex=rf"/executions/{t}/retry$", statuses=[status], probability=1.0, **kwargs
    )


def everywhere(path_regex: str, status: int, method: str | None = None, **kwargs: Any) -> Callable[[str], Fault]:
    return lambda _t: Fault(method=method, path_regex=path_regex, statuses=[status], probability=1.0, **kwargs)


def with_client(*capabilities: str, name: str) -> Arrange:
    def arrange(h: Harness, target: str) -> None:
        h.use_client(*new_secret_client(h.emu, name, list(capabilities)))

    return arrange


def wrong_client_secret(h: Harness, target: str) -> None:
    wrong = f"not-the-secret-{uuid.uuid4().hex}"
    register_secret(wrong)  # a mistyped secret is still a secret
    h.use_client(h.client_id, wrong)


def dynamodb_ledger(table: str | None) -> Arrange:
    """RETRY_LEDGER=dynamodb on a table that does not exist (moto), or on an endpoint nobody listens on."""

    def arrange(h: Harness, target: str) -> None:
        env = {"RETRY_LEDGER": "dynamodb", "RETRY_LEDGER_TABLE": table or "ledger", "AWS_MAX_ATTEMPTS": "2"}
        if table is None:  # only DynamoDB is unreachable (secrets may come from Secrets Manager)
            env |= {
                "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{_closed_port()}",
                "AWS_DEFAULT_REGION": "eu-west-1",
            }
            env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        else:
            assert not _table_exists(table)
        h.setenv(env)

    return arrange


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _table_exists(name: str) -> bool:
    client: Any = boto3.client("dynamodb")
    return name in client.list_tables()["TableNames"]


def _slow(path: str, method: str, latency: float, times: int | None = None) -> Callable[[str], Fault]:
    return lambda t: Fault(method=method, path_regex=path.format(t=t), latency=latency, times=times)


SLOW = 1.2
"""Latency of a slow server: beyond the 1 s request timeout."""
WRITERS = [WORKFLOW_READ, SESSIONS_CREATE, RAW_READ, RAW_WRITE]

CASES: tuple[FaultCase, ...] = (
    # -- throttling -------------------------------------------------------------------------------------
    FaultCase(
        "429-storm",
        "429 storm on every workflow request, no Retry-After",
        faults(everywhere(r"/workflows/", 429)),
        failed(429, retryable=True),
        control=None,
    ),
    FaultCase(
        "429-storm-retry-after",
        "429 storm on every workflow request, Retry-After: 30",
        faults(everywhere(r"/workflows/", 429, retry_after=30)),
        failed(429, retryable=True),
        control=None,
    ),
    FaultCase(
        "429-storm-on-retry",
        "429 storm on the retry request only",
        faults(on_retry(429)),
        failed(429, retryable=True, posts=SDK_TRIES),
    ),
    FaultCase(
        "429-burst",
        "two 429s (Retry-After: 0.1) on the retry request, then CDF answers",
        faults(lambda t: Fault(method="POST", path_regex=rf"/{t}/retry$", statuses=[429, 429], retry_after=0.1)),
        Expect("retried", applied=1, retry_posts=3),
    ),
    # -- server errors ----------------------------------------------------------------------------------
    FaultCase("500", "500 on every retry request", faults(on_retry(500)), failed(500, retryable=True, posts=1)),
    FaultCase("502", "502 on every retry request", faults(on_retry(502)), failed(502, retryable=True, posts=SDK_TRIES)),
    FaultCase("503", "503 on every retry request", faults(on_retry(503)), failed(503, retryable=True, posts=SDK_TRIES)),
    FaultCase("504", "504 on every retry request", faults(on_retry(504)), failed(504, retryable=True, posts=SDK_TRIES)),
    FaultCase(
        "503-once",
        "one 503 on reading the execution",
        faults(lambda t: Fault(method="GET", path_regex=rf"/executions/{t}$", statuses=[503])),
        RETRIED,
    ),
    # -- slow and lost ------------------------------------------------------------------------------------
    FaultCase(
        "slow-read",
        f"slow server: reading the execution takes {SLOW} s (request timeout 1 s), every time",
        faults(_slow(r"/executions/{t}$", "GET", SLOW)),
        failed(None, retryable=True),
        settle_seconds=SLOW,
    ),
    FaultCase(
        "slow-retry-once",
        f"slow server: the retry request takes {SLOW} s once (applied after the client gave up)",
        faults(_slow(r"/executions/{t}/retry$", "POST", SLOW, times=1)),
        Expect("retried", applied=1, retry_posts=2),
        settle_seconds=SLOW,
        # The second request must still fit after the first's 1 s timeout: with 2 s, under 1 s was left,
        # and at load 7-12 on 2 cores the deadline cut it (an honest "may have been applied", not this row).
        deadline_seconds=4,
    ),
    FaultCase(
        "dropped",
        "connection dropped before the response, on every retry request",
        faults(on_retry(0)),
        failed(None, retryable=True, posts=1),
    ),
    FaultCase(
        "reset",
        "TCP reset before the response, on every retry request",
        faults(on_retry(0, reset=True)),
        failed(None, retryable=True, posts=SDK_TRIES),
    ),
    # -- the retry was applied, the answer lost -------------------------------------------------------------
    FaultCase(
        "503-after-applied",
        "503 after the retry was applied (the SDK repeats the POST: nonce already used)",
        faults(on_retry(503, apply_then_fail=True)),
        Expect("retried", applied=1, retry_posts=2),
    ),
    FaultCase(
        "500-after-applied",
        "500 after the retry was applied",
        faults(on_retry(500, apply_then_fail=True)),
        Expect("retried", applied=1, retry_posts=1),
    ),
    FaultCase(
        "dropped-after-applied",
        "connection dropped after the retry was applied",
        faults(on_retry(0, apply_then_fail=True)),
        Expect("retried", applied=1, retry_posts=1),
    ),
    FaultCase(
        "reset-after-applied",
        "TCP reset after the retry was applied (the SDK repeats the POST: nonce already used)",
        faults(on_retry(0, apply_then_fail=True, reset=True)),
        Expect("retried", applied=1, retry_posts=2),
    ),
    # -- refusals ---------------------------------------------------------------------------------------------
    FaultCase(
        "401",
        "401 on every workflow request (token without project access)",
        faults(everywhere(r"/workflows/", 401)),
        failed(401, retryable=False),
        control=None,
    ),
    FaultCase(
        "401-token",
        "the token endpoint refuses the client secret (401)",
        wrong_client_secret,
        failed(None, retryable=False),
        control=None,
    ),
    FaultCase(
        "403-capability",
        "403: the client lacks workflowOrchestrationACL:WRITE",
        with_client(*WRITERS, name="no-workflow-write"),
        failed(403, retryable=False, posts=1),
        control=None,
    ),
    FaultCase(
        "403-sessions",
        "403: the client lacks sessionsACL:CREATE",
        with_client(WORKFLOW_READ, WORKFLOW_WRITE, RAW_READ, RAW_WRITE, name="no-sessions"),
        failed(403, retryable=False),
        control=None,
    ),
    FaultCase(
        "404-unknown",
        "404: CDF does not know the execution",
        lambda h, t: None,
        Expect("not_found"),
        seed_target=False,
    ),
    FaultCase(
        "404-on-retry",
        "404 on the retry request of an execution just read",
        faults(on_retry(404)),
        failed(404, retryable=False, posts=1),
    ),
    FaultCase(
        "400-not-retryable-state",
        "400 (undocumented) refusing the retry, execution still FAILED",
        faults(on_retry(400)),
        failed(400, retryable=False, posts=1),
    ),
    FaultCase(
        "409-not-retryable-state",
        "409 (undocumented) refusing the retry, execution still FAILED",
        faults(on_retry(409)),
        failed(409, retryable=False, posts=1),
    ),
    FaultCase(
        "400-restarted-elsewhere",
        "400 because another caller restarted it between our read and our retry",
        faults(on_retry(400, apply_then_fail=True)),
        Expect("skipped", applied=1, retry_posts=1),
    ),
    # -- sessions -------------------------------------------------------------------------------------------
    FaultCase(
        "session-503",
        "session creation answers 503, every time",
        faults(everywhere(r"/sessions$", 503, method="POST")),
        failed(503, retryable=True),
        control=None,
    ),
    FaultCase(
        "session-500",
        "session creation answers 500, every time",
        faults(everywhere(r"/sessions$", 500, method="POST")),
        failed(500, retryable=True),
        control=None,
    ),
    # -- the attempt ledger -------------------------------------------------------------------------------
    FaultCase(
        "raw-read-503",
        "RAW ledger: reading the attempts answers 503",
        faults(everywhere(r"^/raw/", 503, method="GET")),
        failed(503, retryable=True),
        control=None,
    ),
    FaultCase(
        "raw-write-503",
        "RAW ledger: counting the attempt answers 503",
        faults(everywhere(r"^/raw/", 503, method="POST")),
        failed(503, retryable=True),
        control=None,
    ),
    FaultCase(
        "raw-403",
        "RAW ledger: 403, the client lacks rawACL",
        with_client(WORKFLOW_READ, WORKFLOW_WRITE, SESSIONS_CREATE, name="no-raw"),
        failed(403, retryable=False),
        control=None,
    ),
    FaultCase(
        "dynamodb-unreachable",
        "DynamoDB ledger unreachable (nothing listens on its endpoint)",
        dynamodb_ledger(None),
        failed(None, retryable=True),
        control=None,
    ),
    FaultCase(
        "dynamodb-no-table",
        "DynamoDB ledger failing: its table does not exist (moto)",
        dynamodb_ledger("ledger-that-does-not-exist"),
        failed(400, retryable=False),
        control=None,
        needs_moto=True,
    ),
)
