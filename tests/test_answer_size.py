"""fit_answer: an answer over a platform's limit is trimmed, largest results first, and says so.

The worst shapes are built by hand here (the end-to-end measurements, through ``handle`` and
``lambda_handler`` against the emulator, are in tests/test_results_size.py): metadata at CDF's limits
(10 pairs of 32 + 255 characters), reasons of any length, characters JSON escapes to 6 or 12 bytes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from workflow_retry.answer_size import COGNITE_FUNCTION_ANSWER_LIMIT_BYTES, LAMBDA_ANSWER_LIMIT_BYTES, fit_answer
from workflow_retry.aws.entrypoint import delivery_answer
from workflow_retry.aws.responses import http_response
from workflow_retry.models import (
    COMPACT_EXECUTION_FIELDS,
    MAX_REASON_CHARS,
    ExecutionResult,
    Outcome,
    RetryReport,
    compact_execution,
)

MAX_IDS = 1000
WIDE = "\U0001f600"  # JSON (ASCII) writes it as a surrogate pair: 12 bytes for one character
ACCENT = "é"  # 6 bytes


def full_execution(tasks: int = 50, *, metadata: dict[str, str] | None = None, reason: str = "boom") -> dict[str, Any]:
    execution_id = str(uuid.uuid4())
    task_list = [
        {
            "id": str(uuid.uuid4()),
            "externalId": f"task-{i}",
            "status": "COMPLETED",
            "taskType": "function",
            "input": {"functionExternalId": f"fn-{i}", "data": {"batch": i, "window": "2026-12-01"}},
            "output": {"callId": 1000 + i, "functionId": 2000 + i, "response": {"rows": i * 10}},
            "startTime": 1_764_000_000_000 + i,
            "endTime": 1_764_000_001_000 + i,
            "reasonForIncompletion": None,
        }
        for i in range(tasks)
    ]
    return {
        "id": execution_id,
        "workflowExternalId": "wf",
        "version": "1",
        "status": "FAILED",
        "engineExecutionId": str(uuid.uuid4()),
        "createdTime": 1_764_000_000_000,
        "startTime": 1_764_000_000_000,
        "endTime": 1_764_000_100_000,
        "reasonForIncompletion": reason,
        "metadata": metadata or {},
        "input": {"k": "v"},
        "workflowDefinition": {
            "hash": "h",
            "description": "d",
            "tasks": [{"externalId": t["externalId"]} for t in task_list],
        },
        "executedTasks": task_list,
    }


def answer_of(executions: list[dict[str, Any]], *, reason: str = "skipped: status is COMPLETED") -> dict[str, Any]:
    results = [
        {
            "executionId": e["id"],
            "outcome": "failed",
            "reason": reason,
            "execution": e,
            "error": {"code": 503, "message": reason, "retryable": True},
            "attempts": 2,
            "capEnforced": True,
        }
        for e in executions
    ]
    return {"results": results, "counts": {"failed": len(results)}}


def size(answer: dict[str, Any]) -> int:
    return len(json.dumps(answer))


def test_an_answer_within_the_limit_is_returned_as_it_is() -> None:
    answer = answer_of([full_execution(tasks=2) for _ in range(3)])
    assert fit_answer(answer, COGNITE_FUNCTION_ANSWER_LIMIT_BYTES, "Cognite Functions") is answer


def test_full_executions_become_compact_largest_first_until_the_answer_fits() -> None:
    executions = [full_execution(tasks=50) for _ in range(MAX_IDS)]
    answer = answer_of(executions)
    untrimmed = size(answer)
    assert untrimmed > 10 * COGNITE_FUNCTION_ANSWER_LIMIT_BYTES

    fitted = fit_answer(answer, COGNITE_FUNCTION_ANSWER_LIMIT_BYTES, "Cognite Functions")

    assert size(fitted) <= COGNITE_FUNCTION_ANSWER_LIMIT_BYTES
    assert fitted["counts"] == answer["counts"]
    assert [r["executionId"] for r in fitted["results"]] == [e["id"] for e in executions]
    trimmed = fitted["trimmed"]
    assert trimmed["limitBytes"] == COGNITE_FUNCTION_ANSWER_LIMIT_BYTES
    assert trimmed["untrimmedBytes"] == untrimmed
    assert "Cognite Functions" in trimmed["why"]
    assert trimmed["omittedResults"] == 0
    assert set(trimmed["shortened"]) == {"fullExecution"}
    pairs = [
        (r, e) for r, e in zip(fitted["results"], executions, strict=True) if "executedTasks" not in r["execution"]
    ]
    assert len(pairs) == trimmed["shortened"]["fullExecution"]
    # Compact, not emptied: the execution's state and engineExecutionId stay.
    assert all(r["execution"] == compact_execution(e) for r, e in pairs)
    assert all(r["execution"]["engineExecutionId"] and r["execution"]["status"] == "FAILED" for r, _ in pairs)


def test_only_as_many_results_are_trimmed_as_needed_and_the_largest_go_first() -> None:
    small = [full_execution(tasks=2) for _ in range(50)]
    large = [full_execution(tasks=200) for _ in range(3)]
    answer = answer_of(small + large)
    limit = size(answer) - 1000  # one large result made compact is enough

    fitted = fit_answer(answer, limit, "test")

    assert size(fitted) <= limit
    assert fitted["trimmed"]["shortened"] == {"fullExecution": 1}
    compacted = [i for i, r in enumerate(fitted["results"]) if "executedTasks" not in r["execution"]]
    assert len(compacted) == 1
    assert compacted[0] >= len(small)  # one of the large ones


@pytest.mark.slow
def test_the_worst_results_cdf_allows_fit_a_cognite_function_answer() -> None:
    # Metadata at CDF's limits, every character escaped to 12 bytes; reasons of 10,000 characters.
    metadata = {f"{i}{WIDE * 31}"[:32]: WIDE * 255 for i in range(10)}
    long_reason = (WIDE + ACCENT) * 5_000
    executions = [full_execution(tasks=50, metadata=metadata, reason=long_reason) for _ in range(MAX_IDS)]
    answer = answer_of(executions, reason=long_reason)

    fitted = fit_answer(answer, COGNITE_FUNCTION_ANSWER_LIMIT_BYTES, "Cognite Functions")

    assert size(fitted) <= COGNITE_FUNCTION_ANSWER_LIMIT_BYTES
    assert len(fitted["results"]) == MAX_IDS
    assert fitted["trimmed"]["omittedResults"] == 0
    assert fitted["trimmed"]["shortened"]["texts"] > 0
    for result in fitted["results"]:
        assert set(result["execution"]) == {"id", "status", "engineExecutionId"}
        assert result["reason"].endswith("...") or result["reason"] == ""
        assert result["error"]["code"] == 503
        assert result["error"]["retryable"] is True


def test_a_result_is_omitted_only_when_nothing_else_is_left_to_shorten() -> None:
    answer = answer_of([full_execution(tasks=1) for _ in range(20)])
    answer["sweep"] = {"workflows": ["x" * 255] * 100}  # a summary that fills most of a small limit
    limit = size({**answer, "results": []}) + 1_500

    fitted = fit_answer(answer, limit, "test")

    assert size(fitted) <= limit
    assert fitted["trimmed"]["omittedResults"] > 0
    assert len(fitted["results"]) == 20 - fitted["trimmed"]["omittedResults"]
    assert fitted["counts"] == {"failed": 20}


def test_lambdas_limit_trims_less() -> None:
    answer = answer_of([full_execution(tasks=50) for _ in range(MAX_IDS)])

    fitted = fit_answer(answer, LAMBDA_ANSWER_LIMIT_BYTES, "AWS Lambda")

    assert COGNITE_FUNCTION_ANSWER_LIMIT_BYTES < size(fitted) <= LAMBDA_ANSWER_LIMIT_BYTES
    assert 0 < fitted["trimmed"]["shortened"]["fullExecution"] < MAX_IDS


def test_the_compact_execution_holds_what_a_caller_acts_on_and_a_bounded_reason() -> None:
    execution = full_execution(tasks=3, metadata={"k": "v"}, reason="x" * 50_000)

    compact = compact_execution(execution)

    assert list(compact) == list(COMPACT_EXECUTION_FIELDS)
    assert compact["metadata"] == {"k": "v"}
    assert len(compact["reasonForIncompletion"]) == MAX_REASON_CHARS
    assert compact["reasonForIncompletion"].endswith("(50000 characters)")
    assert compact_execution({"id": "a", "status": "RUNNING"}) == {"id": "a", "status": "RUNNING"}


@pytest.mark.slow
def test_an_http_answer_with_its_body_escaped_stays_within_lambdas_limit() -> None:
    # The body is JSON inside the response's JSON: every quote of it is escaped once more.
    executions = [full_execution(tasks=50) for _ in range(MAX_IDS)]
    report = RetryReport(
        results=tuple(
            ExecutionResult(execution_id=e["id"], outcome=Outcome.SKIPPED, reason="status is COMPLETED", execution=e)
            for e in executions
        )
    )

    response = http_response(200, delivery_answer(report))

    assert size(response) <= LAMBDA_ANSWER_LIMIT_BYTES
    body = json.loads(response["body"])
    assert body["trimmed"]["shortened"]["fullExecution"] > 0
    assert len(body["results"]) == MAX_IDS
