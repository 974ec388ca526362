"""The retry policy as Lambda events carry it: what a payload's ``policy`` may do to a batch and to the limits.

Real SQS and SNS sample envelopes, a real CogniteClient over HTTP to the CDF emulator.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from emulator import CdfEmulator
from tests.aws.conftest import AppFactory
from tests.aws.samples import lambda_context, sqs_event

BACKTRACKING_PATTERN = r"(\w+\s?)+:$"
NORMAL_REASON = "Connection reset by peer while reading batch"


def seeded_failure(emu: CdfEmulator, workflow: str = "wf", **kwargs: Any) -> str:
    tasks = [{"status": "FAILED", "reasonForIncompletion": NORMAL_REASON}]
    return str(emu.seed_execution(workflow, "1", "FAILED", reason=NORMAL_REASON, tasks=tasks, **kwargs)["id"])


def test_one_poisoned_sqs_record_does_not_stop_the_five_normal_ones(
    new_app: AppFactory, emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_DEADLINE_SECONDS", "3")
    monkeypatch.setenv("RETRY_REQUEST_TIMEOUT_SECONDS", "2")
    poisoned = seeded_failure(emu)
    normal = [seeded_failure(emu) for _ in range(5)]
    event = sqs_event(
        {"executionId": poisoned, "policy": {"skipReasonPatterns": [BACKTRACKING_PATTERN]}},
        *({"executionId": execution_id} for execution_id in normal),
    )

    started = time.monotonic()
    response = new_app().handle(event, lambda_context())
    elapsed = time.monotonic() - started

    assert response == {"batchItemFailures": []}
    assert elapsed < 3
    assert [emu.retry_count(execution_id) for execution_id in [poisoned, *normal]] == [1] * 6
