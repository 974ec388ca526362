"""Answers per platform, from core reports: which deliveries come back, and HTTP statuses."""

from __future__ import annotations

import json

import pytest

from workflow_retry.aws.responses import (
    DeliveryOutcome,
    async_result,
    batch_response,
    http_answer,
    http_status_of,
)
from workflow_retry.models import ErrorInfo, ExecutionResult, Outcome, RetryReport


def report(*results: ExecutionResult) -> RetryReport:
    return RetryReport(results=results)


def result(outcome: Outcome, code: int | None = None, retryable: bool = False) -> ExecutionResult:
    error = ErrorInfo(code=code, message="...", retryable=retryable) if outcome is Outcome.FAILED else None
    return ExecutionResult(execution_id="e", outcome=outcome, reason="...", error=error)


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ((result(Outcome.RETRIED), result(Outcome.SKIPPED), result(Outcome.INVALID)), False),
        ((result(Outcome.FAILED, 403),), False),  # a permanent failure does not come back
        ((result(Outcome.RETRIED), result(Outcome.FAILED, 503, retryable=True)), True),
        ((result(Outcome.DEFERRED),), True),  # cooling down: must come back later
        ((result(Outcome.EXHAUSTED),), False),
    ],
)
def test_which_reports_must_come_again(results: tuple[ExecutionResult, ...], expected: bool) -> None:
    assert report(*results).needs_redelivery is expected


@pytest.mark.parametrize(
    ("results", "status"),
    [
        ((result(Outcome.RETRIED), result(Outcome.FAILED, 404)), 200),
        ((result(Outcome.FAILED, 429, retryable=True),), 503),
        ((result(Outcome.FAILED, 503, retryable=True),), 503),
        ((result(Outcome.DEFERRED),), 503),
        ((result(Outcome.FAILED, 500, retryable=True),), 502),
        ((result(Outcome.FAILED, None, retryable=True),), 502),  # no answer, or the deadline
    ],
)
def test_http_status_of_a_report(results: tuple[ExecutionResult, ...], status: int) -> None:
    assert http_status_of(report(*results)) == status


@pytest.mark.parametrize(
    ("outcome", "status", "retry_after"),
    [
        (DeliveryOutcome("webhook:a", "invalid", reason="no execution ID found"), 400, False),
        (DeliveryOutcome("webhook:a", "in_progress", reason="being handled"), 409, True),
        (DeliveryOutcome("webhook:a", "store_failed", reason="table failed"), 503, True),
        (DeliveryOutcome("webhook:a", "replayed", result={"results": [], "counts": {}}), 200, False),
    ],
)
def test_http_answers_for_deliveries_that_did_not_run_now(
    outcome: DeliveryOutcome, status: int, retry_after: bool
) -> None:
    answer = http_answer(outcome)

    assert answer["statusCode"] == status
    assert ("retry-after" in answer["headers"]) is retry_after
    body = json.loads(answer["body"])
    assert body.get("replayed", False) is (outcome.status == "replayed")
    if outcome.reason:
        assert body["error"] == outcome.reason


def test_an_sqs_batch_response_lists_record_ids_in_order() -> None:
    assert batch_response(["b", "a"]) == {"batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "a"}]}
    assert batch_response([]) == {"batchItemFailures": []}


def test_several_deliveries_merge_into_one_result_with_a_line_each() -> None:
    one = report(result(Outcome.RETRIED)).to_dict()
    two = report(result(Outcome.SKIPPED)).to_dict()
    merged = async_result(
        [
            DeliveryOutcome("sns:1", "handled", result=one),
            DeliveryOutcome("sns:2", "replayed", result=two),
            DeliveryOutcome("sns:3", "invalid", reason="not JSON"),
        ]
    )

    assert [r["outcome"] for r in merged["results"]] == ["retried", "skipped"]
    assert (merged["counts"]["retried"], merged["counts"]["skipped"]) == (1, 1)
    assert merged["deliveries"] == [
        {"key": "sns:1", "status": "handled"},
        {"key": "sns:2", "status": "replayed"},
        {"key": "sns:3", "status": "invalid", "reason": "not JSON"},
    ]


def test_a_sweep_never_asks_for_redelivery_its_leftovers_are_the_next_sweeps() -> None:
    from workflow_retry.models import SweepSummary

    summary = SweepSummary(window_start=0, window_end=1, workflows=(), statuses=("FAILED",), max_restarts=20)
    cooling = report(result(Outcome.DEFERRED), result(Outcome.FAILED, 503, retryable=True))
    assert cooling.needs_redelivery is True
    assert cooling.model_copy(update={"sweep": summary}).needs_redelivery is False
