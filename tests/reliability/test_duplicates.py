"""Duplicates and concurrency: the same event 10 times at once, and two sweeps at once.

Each of the 10 deliveries lands on its own container (a Lambda container handles one invocation at a
time, so concurrent duplicates always meet different containers), all released together while CDF
takes 0.3 s over each retry request. With the idempotency table (DynamoDB, moto) one delivery does
the work and the others are refused while it runs or answered with its result; without it every
delivery reaches the core, and what keeps the retry single is the core reading the execution first
and CDF refusing to retry an execution that is RUNNING again. Either way: exactly one retry applied,
exactly one delivery reporting ``retried``, none reporting a failure, and every delivery told
whether it comes back.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import pytest

import handler
from emulator import Fault
from tests.aws import senders
from tests.aws.samples import http_event, lambda_context, sns_event, sqs_event
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from tests.reliability.conftest import WEBHOOK_SECRET, Harness, recording, result_lines
from workflow_retry.aws.entrypoint import LambdaApp
from workflow_retry.errors import DeliveryInProgressError, TransientFailuresError

pytestmark = pytest.mark.reliability

DELIVERIES = 10
Source = Literal["sns", "sqs", "http"]


def at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` for each i in its own thread, all released together; what each returned."""
    start = threading.Barrier(count)

    def run(i: int) -> Any:
        start.wait(timeout=30)
        return work(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def make_event(source: Source, execution_id: str) -> dict[str, Any]:
    """One event, as the platform would deliver it again: same MessageId, messageId or webhook-id."""
    payload = {"executionId": execution_id}
    match source:
        case "sns":
            return sns_event(payload, message_id="sns-duplicated")
        case "sqs":
            return sqs_event(payload)
        case "http":
            body, headers = senders.signed(payload, WEBHOOK_SECRET, webhook_id="msg_duplicated")
            return http_event("function-url", body, headers)


def delivered(source: Source, answer: Any) -> tuple[str, str | None]:
    """(how the delivery ended, the ID's outcome when this delivery reported one)."""
    if isinstance(answer, DeliveryInProgressError):
        return "comes back: in progress", None
    if isinstance(answer, TransientFailuresError):
        return "comes back: transient", answer.report.results[0].outcome.value
    match source:
        case "sns":
            status = answer["deliveries"][0]["status"]
            return status, answer["results"][0]["outcome"] if answer["results"] else None
        case "sqs":
            return ("comes back" if answer["batchItemFailures"] else "done"), None
        case "http":
            body = json.loads(answer["body"])
            outcome = body["results"][0]["outcome"] if body.get("results") else None
            kind = "replayed" if body.get("replayed") else str(answer["statusCode"])
            return kind, outcome


@pytest.fixture
def duplicates(harness: Harness) -> Harness:
    # The retry request takes a while, so every delivery arrives while the first is still at work.
    harness.emu.add_fault(Fault(method="POST", path_regex=r"/retry$", latency=0.3))
    return harness


@pytest.mark.parametrize("table", ["with-table", "without-table"])
@pytest.mark.parametrize("source", ["sns", "sqs", "http"])
def test_the_same_event_ten_times_at_once_applies_one_retry(
    duplicates: Harness, request: pytest.FixtureRequest, source: Source, table: str
) -> None:
    h, emu = duplicates, duplicates.emu
    if table == "with-table":
        h.setenv({"IDEMPOTENCY_TABLE": request.getfixturevalue("idempotency_table")})
    now = int(time.time() * 1000)
    execution_id = emu.seed_execution("wf", "1", "FAILED", created_time=now - 120_000, end_time=now - 60_000)["id"]
    event = make_event(source, execution_id)
    containers = [LambdaApp.from_environment() for _ in range(DELIVERIES)]

    def deliver(i: int) -> Any:
        try:
            return containers[i].handle(copy.deepcopy(event), lambda_context(60))
        except (DeliveryInProgressError, TransientFailuresError) as exc:
            return exc

    with recording() as capture:
        answers = at_once(DELIVERIES, deliver)

    assert emu.retry_count(execution_id) == 1
    ended = [delivered(source, answer) for answer in answers]
    # Every ID outcome any delivery computed (SQS answers none: read from the per-ID log lines).
    computed = [seen.outcome for i, seen in result_lines(capture.records) if i == execution_id]
    assert computed.count("retried") == 1, computed
    assert set(computed) <= {"retried", "skipped", "deferred"}, computed  # never a failure
    allowed = {
        "sns": {"handled", "replayed", "comes back: in progress", "comes back: transient"},
        "sqs": {"done", "comes back"},
        "http": {"200", "replayed", "409", "503"},
    }[source]
    assert {kind for kind, _ in ended} <= allowed, ended
    if table == "with-table":
        # One container did the work; the others were refused while it ran, or answered with its result.
        assert len(computed) == 1
        assert len(emu.requests_matching("POST", r"/retry$")) == 1

    # The platform delivers again whatever was told to come back, later: nothing more happens.
    again = containers[0].handle(copy.deepcopy(event), lambda_context(60))
    assert emu.retry_count(execution_id) == 1
    if source == "sqs":
        assert again == {"batchItemFailures": []}
    elif source == "http":
        assert again["statusCode"] == 200


@pytest.mark.parametrize("ledger", ["raw", "dynamodb", "none"])
def test_two_sweeps_at_once_retry_each_execution_once(
    harness: Harness, request: pytest.FixtureRequest, ledger: str
) -> None:
    emu = harness.emu
    if ledger == "dynamodb":
        harness.setenv({"RETRY_LEDGER_TABLE": request.getfixturevalue("ledger_table")})
    harness.setenv({"RETRY_LEDGER": ledger, "RETRY_DEADLINE_SECONDS": "20", "RETRY_CONCURRENCY": "4"})
    harness.setenv({"RETRY_SWEEP_MAX_RESTARTS": "50"})  # a payload's maxRestarts may not exceed the operator's
    now = int(time.time() * 1000)
    ids = [
        emu.seed_execution("wf", "1", "FAILED", created_time=now - 600_000 + i, end_time=now - 60_000 + i)["id"]
        for i in range(20)
    ]
    emu.add_fault(Fault(method="POST", path_regex=r"/retry$", latency=0.05))
    secrets = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
    clients = [harness.cognite_client() for _ in range(2)]

    reports = at_once(2, lambda i: handler.handle({"sweep": {"maxRestarts": 50}}, clients[i], secrets))

    assert [emu.retry_count(i) for i in ids] == [1] * len(ids)
    retried = [r["executionId"] for report in reports for r in report["results"] if r["outcome"] == "retried"]
    assert sorted(retried) == sorted(ids), "each execution reported retried by exactly one sweep"
    for report in reports:
        assert report["counts"]["failed"] == 0
        assert set(report["sweep"]["outcomes"]) <= {"retried", "skipped", "deferred"}
        assert sum(report["sweep"]["outcomes"].values()) == report["sweep"]["eligible"]
