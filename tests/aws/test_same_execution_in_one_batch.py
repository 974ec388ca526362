"""One execution, one attempt at a time: records of one SQS batch, and concurrent calls of one process.

The worst case for a ledger without conditional writes (RAW): the execution fails again right after
each retry, so CDF's own status check ("a RUNNING execution is not retried") never stops a second
request. Within one process that race must not exist at all: an execution is handled by one task at a
time, and the records or calls that name it while that task runs take its result.

The cooldown (300 s, or 1 s where a test needs several attempts) makes these tests deterministic: a
record or call that starts only after the handling task has finished (a slow thread on a loaded machine)
finds the execution cooling down and is deferred; it never retries it a second time.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from emulator import CdfEmulator, Fault
from tests.aws.conftest import AppFactory
from tests.aws.samples import lambda_context, sqs_event
from workflow_retry import function
from workflow_retry.errors import TransientFailuresError

RECORDS = 10
LEDGER = ("workflow_retry", "attempts")


@pytest.fixture
def refailing(lambda_env: CdfEmulator, monkeypatch: pytest.MonkeyPatch) -> CdfEmulator:
    """RAW ledger, maxAttempts 3; every retry the emulator applies fails again at once."""
    monkeypatch.setenv("RETRY_LEDGER", "raw")
    monkeypatch.setenv("RETRY_MAX_ATTEMPTS", "3")
    lambda_env.auto_fail_after_retry = True
    # The retry request takes a while, so every record of the batch is at work while it runs.
    lambda_env.add_fault(Fault(method="POST", path_regex=r"/retry$", latency=0.2))
    return lambda_env


def sessions(emu: CdfEmulator) -> int:
    return len(emu.requests_matching("POST", r"/sessions$"))


def retry_requests(emu: CdfEmulator) -> int:
    return len(emu.requests_matching("POST", r"/retry$"))


@pytest.mark.slow  # waits out a deadline of seconds
def test_a_batch_of_ten_records_naming_one_execution_makes_one_session_and_one_retry_per_attempt(
    refailing: CdfEmulator, new_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = refailing
    monkeypatch.setenv("RETRY_COOLDOWN_SECONDS", "1")
    monkeypatch.setenv("RETRY_COOLDOWN_FACTOR", "1")
    execution_id = emu.seed_execution("wf", "1", "FAILED")["id"]
    app = new_app()

    for attempt in (1, 2, 3):
        if attempt > 1:
            time.sleep(1.1)  # the cooldown after the previous attempt
        app.handle(sqs_event(*[{"executionId": execution_id}] * RECORDS), lambda_context(60))
        assert emu.retry_count(execution_id) == attempt
        assert sessions(emu) == attempt
        assert retry_requests(emu) == attempt
        assert emu.raw_rows(*LEDGER)[execution_id]["attempts"] == attempt

    # The cap is reached: a fourth batch gives up (nothing comes back) without a session or a retry request.
    time.sleep(1.1)
    assert app.handle(sqs_event(*[{"executionId": execution_id}] * RECORDS), lambda_context(60)) == {
        "batchItemFailures": []
    }
    assert emu.retry_count(execution_id) == 3
    assert sessions(emu) == 3
    assert retry_requests(emu) == 3


def test_each_record_of_the_batch_reports_the_one_retry_without_claiming_it(
    refailing: CdfEmulator, new_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    emu = refailing
    execution_id = emu.seed_execution("wf", "1", "FAILED")["id"]
    caplog.set_level("INFO", logger="workflow_retry.service")

    answer = new_app().handle(sqs_event(*[{"executionId": execution_id}] * RECORDS), lambda_context(60))

    outcomes = [r.__dict__.get("outcome") for r in caplog.records if r.__dict__.get("execution_id") == execution_id]
    assert len(outcomes) == RECORDS
    assert outcomes.count("retried") == 1
    assert set(outcomes) <= {"retried", "skipped", "deferred"}  # deferred: a record that started after the retry
    shared = [r.getMessage() for r in caplog.records if r.__dict__.get("outcome") == "skipped"]
    assert shared
    assert all("not retried again: handled by a concurrent request in this process" in text for text in shared)
    # A record that took the retry's result is done: only a late, deferred one would come back.
    assert len(answer["batchItemFailures"]) == outcomes.count("deferred")


def test_twenty_concurrent_calls_in_one_process_apply_one_retry(refailing: CdfEmulator, new_app: AppFactory) -> None:
    emu = refailing
    execution_id = emu.seed_execution("wf", "1", "FAILED")["id"]
    app = new_app()
    start = threading.Barrier(20)

    def invoke(_: int) -> str:
        start.wait(timeout=30)
        try:
            answer = app.handle({"executionId": execution_id}, lambda_context(60))
        except TransientFailuresError as exc:  # deferred: started after the retry, the execution cools down
            return exc.report.results[0].outcome.value
        return str(answer["results"][0]["outcome"])

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(invoke, range(20)))

    assert emu.retry_count(execution_id) == 1
    assert sessions(emu) == 1
    assert outcomes.count("retried") == 1
    assert "skipped" in outcomes
    assert set(outcomes) <= {"retried", "skipped", "deferred"}
    assert emu.raw_rows(*LEDGER)[execution_id]["attempts"] == 1


def test_a_dry_run_does_not_take_the_result_of_a_real_call_at_the_same_moment(
    refailing: CdfEmulator, new_app: AppFactory
) -> None:
    emu = refailing
    execution_id = emu.seed_execution("wf", "1", "FAILED")["id"]
    app = new_app()
    start = threading.Barrier(6)

    def invoke(i: int) -> str:
        start.wait(timeout=30)
        try:
            answer = app.handle({"executionId": execution_id, "dryRun": i % 2 == 0}, lambda_context(60))
        except TransientFailuresError as exc:
            return exc.report.results[0].outcome.value
        return str(answer["results"][0]["outcome"])

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(invoke, range(6)))

    assert emu.retry_count(execution_id) == 1
    real, dry = outcomes[1::2], outcomes[0::2]
    assert real.count("retried") == 1
    assert set(real) <= {"retried", "skipped", "deferred"}
    # A dry run never reports the real call's retry as its own: it decides for itself.
    assert set(dry) <= {"dry_run", "deferred"}


def test_a_failure_is_shared_and_brings_every_record_back(refailing: CdfEmulator, new_app: AppFactory) -> None:
    emu = refailing
    execution_id = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=r"/sessions$", statuses=[503] * 100))
    event = sqs_event(*[{"executionId": execution_id}] * 3)

    answer = new_app().handle(event, lambda_context(60))

    # The one attempt failed transiently: every record that named the execution comes back.
    assert len(answer["batchItemFailures"]) == 3
    assert emu.retry_count(execution_id) == 0


def test_calls_with_another_client_in_the_process_are_guarded_too(refailing: CdfEmulator, client: Any) -> None:
    emu = refailing
    execution_id = emu.seed_execution("wf", "1", "FAILED")["id"]
    start = threading.Barrier(8)

    def call(_: int) -> dict[str, Any]:
        start.wait(timeout=30)
        return function.handle({"executionId": execution_id}, client)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(call, range(8)))

    assert emu.retry_count(execution_id) == 1
    assert sessions(emu) == 1
    assert [a["results"][0]["outcome"] for a in answers].count("retried") == 1
