"""Extraction pipeline runs: each call and each sweep reports one run to CDF (RETRY_EXTRACTION_PIPELINE).

``handle`` runs against the CDF emulator through cognite-sdk; each test reads back the runs the
emulator's ``POST /extpipes/runs`` stored for the pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry.models import ErrorInfo, ExecutionResult, Outcome, RetryReport
from workflow_retry.pipeline_runs import MAX_MESSAGE_LENGTH, run_message, run_status

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
PIPELINE = "workflow-retry-runs"
RUNS_WRITE = "extractionRunsAcl:WRITE"


@pytest.fixture
def pipeline(emu: CdfEmulator, fast_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The pipeline in CDF, the function allowed to write its runs, and RETRY_EXTRACTION_PIPELINE set."""
    emu.add_extraction_pipeline(PIPELINE, schedule="Continuous")
    emu.grant_capabilities(FUNCTION_CLIENT_ID, [RUNS_WRITE])
    monkeypatch.setenv("RETRY_EXTRACTION_PIPELINE", PIPELINE)
    yield PIPELINE
    emu.revoke_capabilities(FUNCTION_CLIENT_ID, [RUNS_WRITE])


def runs(emu: CdfEmulator) -> list[dict[str, Any]]:
    return emu.extraction_pipeline_runs(PIPELINE)


def test_a_call_that_retried_reports_a_success_run_with_its_counts(
    emu: CdfEmulator, client: CogniteClient, pipeline: str
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    running = emu.seed_execution("wf", "1", "RUNNING")["id"]

    result = handler.handle({"executionIds": [failed, running]}, client, SECRETS)

    assert result["counts"]["retried"] == 1
    [run] = runs(emu)
    assert run["status"] == "success"
    assert run["message"] == "call: 2 execution ID(s); 1 retried, 1 skipped"


def test_a_give_up_reports_a_failure_run_naming_the_execution(
    emu: CdfEmulator, client: CogniteClient, pipeline: str
) -> None:
    emu.auto_fail_after_retry = True
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    data = {"executionId": failed, "policy": {"maxAttempts": 1}}
    handler.handle(data, client, SECRETS)
    time.sleep(0.002)

    result = handler.handle(data, client, SECRETS)

    assert result["results"][0]["outcome"] == "exhausted"
    first, second = runs(emu)
    assert first["status"] == "success"
    assert second["status"] == "failure"
    assert second["message"] == f"call: 1 execution ID(s); 1 exhausted; 1 gave up; gave up on: {failed}"


def test_a_retry_cdf_refuses_for_good_reports_a_failure_run(
    emu: CdfEmulator, client: CogniteClient, pipeline: str
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=r"/retry$", statuses=[400]))

    result = handler.handle({"executionId": failed}, client, SECRETS)

    assert result["results"][0]["error"]["retryable"] is False
    [run] = runs(emu)
    assert run["status"] == "failure"
    assert failed in run["message"]


def test_a_sweep_that_found_nothing_reports_seen(emu: CdfEmulator, client: CogniteClient, pipeline: str) -> None:
    result = handler.handle({"sweep": {}}, client, SECRETS)

    assert result["results"] == []
    [run] = runs(emu)
    assert run["status"] == "seen"
    assert run["message"].startswith("sweep: 0 execution(s) seen; nothing to do")


def test_a_sweep_that_retried_reports_success(emu: CdfEmulator, client: CogniteClient, pipeline: str) -> None:
    emu.seed_execution("wf", "1", "FAILED", created_time=int(time.time() * 1000) - 60_000)

    result = handler.handle({"sweep": {}}, client, SECRETS)

    assert result["sweep"]["outcomes"] == {"retried": 1}
    [run] = runs(emu)
    assert (run["status"], run["message"]) == ("success", "sweep: 1 execution(s) seen; 1 retried")


def test_a_dry_run_reports_no_run(emu: CdfEmulator, client: CogniteClient, pipeline: str) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    handler.handle({"executionId": failed, "dryRun": True}, client, SECRETS)

    assert runs(emu) == []


def test_without_the_setting_no_run_is_reported(
    emu: CdfEmulator, client: CogniteClient, pipeline: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RETRY_EXTRACTION_PIPELINE")
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    handler.handle({"executionId": failed}, client, SECRETS)

    assert runs(emu) == []
    assert emu.requests_matching("POST", r"/extpipes/runs$") == []


@pytest.mark.parametrize("problem", ["no capability", "unknown pipeline", "server error"])
def test_a_run_that_cannot_be_reported_changes_no_result_and_is_logged(
    emu: CdfEmulator,
    client: CogniteClient,
    pipeline: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    problem: str,
) -> None:
    if problem == "no capability":
        emu.revoke_capabilities(FUNCTION_CLIENT_ID, [RUNS_WRITE])
    elif problem == "unknown pipeline":
        monkeypatch.setenv("RETRY_EXTRACTION_PIPELINE", "no-such-pipeline")
    else:
        emu.add_fault(Fault(method="POST", path_regex=r"/extpipes/runs$", statuses=[503] * 10))
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    result = handler.handle({"executionId": failed}, client, SECRETS)

    assert [r["outcome"] for r in result["results"]] == ["retried"]
    assert runs(emu) == []
    [line] = [r for r in caplog.records if r.name == "workflow_retry.pipeline_runs"]
    assert line.levelname == "ERROR"
    assert "not reported" in line.getMessage()


@pytest.mark.slow  # waits out a deadline of seconds
def test_a_hanging_runs_endpoint_is_cut_at_the_calls_deadline(
    emu: CdfEmulator,
    client: CogniteClient,
    pipeline: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("RETRY_DEADLINE_SECONDS", "4")
    monkeypatch.setenv("RETRY_REQUEST_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("RETRY_SDK_MAX_RETRIES", "0")
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    # The retry takes 2 s of the 4, so the SDK's own 3 s request timeout alone would overrun the deadline.
    emu.add_fault(Fault(method="GET", path_regex=rf"/workflows/executions/{failed}$", latency=2.0, times=1))
    emu.add_fault(Fault(method="POST", path_regex=r"/extpipes/runs$", latency=30))

    started = time.monotonic()
    result = handler.handle({"executionId": failed}, client, SECRETS)
    elapsed = time.monotonic() - started

    assert [r["outcome"] for r in result["results"]] == ["retried"]
    assert elapsed < 4 + 0.5, f"the call took {elapsed:.1f} s for a 4 s deadline"
    [line] = [r for r in caplog.records if r.name == "workflow_retry.pipeline_runs"]
    assert "not reported within" in line.getMessage()


def many_give_ups(count: int) -> RetryReport:
    ids = [f"{n:08d}-0000-4000-8000-000000000000" for n in range(count)]
    results = tuple(
        ExecutionResult(execution_id=i, outcome=Outcome.EXHAUSTED, reason="maxAttempts reached") for i in ids
    )
    return RetryReport(results=results, gave_up=tuple(ids))


def test_the_message_lists_as_many_ids_as_fit_and_says_how_many_more() -> None:
    report = many_give_ups(100)

    message = run_message(report)

    assert len(message) <= MAX_MESSAGE_LENGTH
    assert message.startswith("call: 100 execution ID(s); 100 exhausted; 100 gave up; gave up on: 00000000-")
    shown = message.split("gave up on: ")[1].split(" and ")[0].split(", ")
    assert message.endswith(f" and {100 - len(shown)} more")
    assert shown == [r.execution_id for r in report.results[: len(shown)]]
    assert run_status(report) == "failure"


def test_a_transient_failure_alone_is_a_success() -> None:
    error = ErrorInfo(code=503, message="unavailable", retryable=True)
    result = ExecutionResult(execution_id="x", outcome=Outcome.FAILED, reason="unavailable", error=error)

    assert run_status(RetryReport(results=(result,))) == "success"
