"""Every answer fits its platform: the largest call, with the whole execution asked for, measured.

The largest call is 1,000 IDs (``payloads.MAX_IDS_PER_CALL``) of a 50-task workflow, with
``fullExecution``: about 27 MB as read. 100 of them are FAILED and get retried; the other 900 are
COMPLETED and skipped with the execution as read. The answer, serialised as the platform does, stays
under Cognite Functions' 1 MB and Lambda's 6 MB, says what was trimmed, and the retries were applied
(nothing fails after retrying).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator
from tests.aws.samples import lambda_context
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry.answer_size import COGNITE_FUNCTION_ANSWER_LIMIT_BYTES, LAMBDA_ANSWER_LIMIT_BYTES
from workflow_retry.models import COMPACT_EXECUTION_FIELDS
from workflow_retry.payloads import MAX_IDS_PER_CALL

TASKS = 50
RETRIED = 100


@pytest.fixture
def largest_call(emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """(FAILED IDs, COMPLETED IDs): 1,000 executions of 50 tasks; the settings give the call time enough."""
    monkeypatch.setenv("RETRY_DEADLINE_SECONDS", "300")
    monkeypatch.setenv("RETRY_REQUEST_TIMEOUT_SECONDS", "60")
    monkeypatch.setenv("RETRY_SDK_MAX_BACKOFF_SECONDS", "0")
    tasks = [{"externalId": f"task-{i}", "status": "COMPLETED"} for i in range(TASKS)]
    failed_tasks = [*tasks[:-1], {"externalId": f"task-{TASKS - 1}", "status": "FAILED"}]
    failed = emu.seed_many(RETRIED, status="FAILED", tasks=failed_tasks)
    completed = emu.seed_many(MAX_IDS_PER_CALL - RETRIED, status="COMPLETED", tasks=tasks, reason=None)
    return failed, completed


def serialised_bytes(answer: Any) -> int:
    return len(json.dumps(answer))


def check_answer(answer: dict[str, Any], emu: CdfEmulator, failed: list[str], limit: int, platform: str) -> None:
    assert serialised_bytes(answer) <= limit
    assert answer["counts"]["retried"] == RETRIED
    assert answer["counts"]["skipped"] == MAX_IDS_PER_CALL - RETRIED
    assert len(answer["results"]) == MAX_IDS_PER_CALL  # trimmed, none left out
    trimmed = answer["trimmed"]
    assert trimmed["limitBytes"] == limit
    assert trimmed["untrimmedBytes"] > limit
    assert platform in trimmed["why"]
    assert trimmed["omittedResults"] == 0
    assert trimmed["shortened"]["fullExecution"] > 0
    # Every retry was applied, and every result still names the execution's state.
    assert all(emu.retry_count(i) == 1 for i in failed)
    for result in answer["results"]:
        assert {"id", "status", "engineExecutionId"} <= set(result["execution"])


@pytest.mark.slow
def test_the_largest_call_with_full_executions_fits_a_cognite_function_answer(
    emu: CdfEmulator, client: CogniteClient, largest_call: tuple[list[str], list[str]]
) -> None:
    failed, completed = largest_call

    answer = handler.handle({"executionIds": failed + completed, "fullExecution": True}, client)

    check_answer(answer, emu, failed, COGNITE_FUNCTION_ANSWER_LIMIT_BYTES, "Cognite Functions")
    # Each skipped result holds its full execution or, trimmed, the compact one.
    assert trimmed_to_compact(answer) + still_full(answer) == MAX_IDS_PER_CALL - RETRIED


@pytest.mark.slow
def test_the_largest_call_with_full_executions_fits_a_lambda_answer(
    emu: CdfEmulator, largest_call: tuple[list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    failed, completed = largest_call
    for name, value in {
        "CDF_PROJECT": emu.project,
        "CDF_URL": emu.base_url,
        "IDP_CLIENT_ID": FUNCTION_CLIENT_ID,
        "IDP_CLIENT_SECRET": FUNCTION_CLIENT_SECRET,
        "IDP_TOKEN_URL": emu.token_url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("workflow_retry.aws.entrypoint._app", None)  # a fresh container with this environment

    answer = handler.lambda_handler(
        {"executionIds": failed + completed, "fullExecution": True}, lambda_context(seconds=600)
    )

    check_answer(answer, emu, failed, LAMBDA_ANSWER_LIMIT_BYTES, "AWS Lambda")
    # 6 MB holds some of the full executions: only as many were made compact as needed.
    assert 0 < still_full(answer) < MAX_IDS_PER_CALL - RETRIED
    assert trimmed_to_compact(answer) + still_full(answer) == MAX_IDS_PER_CALL - RETRIED


def test_results_hold_the_compact_execution_by_default(emu: CdfEmulator, client: CogniteClient) -> None:
    completed = emu.seed_execution("wf", "1", "COMPLETED", metadata={"team": "data"})["id"]
    failed = emu.seed_execution("wf", "1", "FAILED", reason="x" * 5000)["id"]

    answer = handler.handle({"executionIds": [completed, failed], "dryRun": True}, client)

    for result in answer["results"]:
        assert list(result["execution"]) == [k for k in COMPACT_EXECUTION_FIELDS if k in result["execution"]]
        assert {"id", "workflowExternalId", "version", "status", "engineExecutionId", "metadata"} <= set(
            result["execution"]
        )
    assert answer["results"][0]["execution"]["metadata"] == {"team": "data"}
    assert len(answer["results"][1]["execution"]["reasonForIncompletion"]) == 1000
    assert "trimmed" not in answer


def still_full(answer: dict[str, Any]) -> int:
    return sum(1 for r in answer["results"] if "executedTasks" in r["execution"])


def trimmed_to_compact(answer: dict[str, Any]) -> int:
    return int(answer["trimmed"]["shortened"]["fullExecution"])
