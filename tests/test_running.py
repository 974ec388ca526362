"""RETRY_MAX_RUNNING: restarts keep the project under a number of running executions (CDF runs 50 at once).

Real calls (``function.execute``, RAW ledger) against the emulator, whose own limit
(``max_running_executions``) answers 429 past it: a test that crossed the setting would see a 429.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry import function
from workflow_retry.cdf import ClientCredentials
from workflow_retry.models import Outcome, RetryReport
from workflow_retry.payloads import parse_payload
from workflow_retry.settings import Settings

CREDENTIALS = ClientCredentials(FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET)
SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
LIST = r"/workflows/executions/list$"

pytestmark = pytest.mark.usefixtures("fast_env")


def retry(client: CogniteClient, ids: list[str], **payload: Any) -> RetryReport:
    return function.execute(parse_payload({"executionIds": ids, **payload}), client, CREDENTIALS, Settings())


def outcomes(report: RetryReport) -> list[Outcome]:
    return [r.outcome for r in report.results]


def throttled(emu: CdfEmulator) -> list[str]:
    return [r.path for r in emu.requests if r.status == 429]


def test_unset_nothing_is_counted(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = emu.seed_many(3, status="FAILED")
    report = retry(client, ids)
    assert outcomes(report) == [Outcome.RETRIED] * 3
    assert emu.requests_matching("POST", LIST) == []


def test_a_batch_restarts_up_to_the_room_left_and_defers_the_rest(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_MAX_RUNNING", "5")
    emu.max_running_executions = 5
    for _ in range(3):
        emu.seed_execution("other", "1", "RUNNING")
    ids = emu.seed_many(8, status="FAILED")

    report = retry(client, ids)

    retried = [r for r in report.results if r.outcome is Outcome.RETRIED]
    deferred = [r for r in report.results if r.outcome is Outcome.DEFERRED]
    assert (len(retried), len(deferred)) == (2, 6)
    assert {r.reason for r in deferred} == {
        "not retried now: the project runs 3 execution(s) and this process restarted 2 since; RETRY_MAX_RUNNING is 5"
    }
    assert all(r.wants_redelivery for r in deferred)  # SQS brings them back; a sweep finds them still FAILED
    assert report.needs_redelivery
    assert emu.running_count == 5
    assert throttled(emu) == []
    # One count, of RUNNING executions only, one page no longer than the limit.
    [count] = emu.requests_matching("POST", LIST)
    assert count.body == {"filter": {"status": ["RUNNING"]}, "limit": 5}
    # A deferred execution cost no session and no attempt.
    assert len(emu.requests_matching("POST", r"/sessions$")) == 2
    rows = emu.raw_rows("workflow_retry", "attempts")
    assert sorted(rows) == sorted(r.execution_id for r in retried)
    for result in deferred:
        execution = emu.get_execution(result.execution_id)
        assert execution is not None
        assert execution["status"] == "FAILED"


def test_a_full_project_defers_every_execution(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_MAX_RUNNING", "2")
    for _ in range(4):
        emu.seed_execution("other", "1", "RUNNING")
    ids = emu.seed_many(3, status="FAILED")
    report = retry(client, ids)
    assert outcomes(report) == [Outcome.DEFERRED] * 3
    assert report.results[0].reason == (
        "not retried now: the project runs 2 execution(s) and this process restarted 0 since; RETRY_MAX_RUNNING is 2"
    )
    assert emu.requests_matching("POST", r"/sessions$") == []
    assert emu.requests_matching("POST", r"/retry$") == []


def test_once_the_project_is_known_to_be_full_an_execution_is_deferred_unread(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One at a time: the first execution is read while the count is taken; the count says the project is
    # full, so the next ones are deferred without a request.
    monkeypatch.setenv("RETRY_MAX_RUNNING", "1")
    monkeypatch.setenv("RETRY_CONCURRENCY", "1")
    monkeypatch.setenv("RETRY_LEDGER", "none")
    emu.seed_execution("other", "1", "RUNNING")
    ids = emu.seed_many(4, status="FAILED")
    report = retry(client, ids)
    assert outcomes(report) == [Outcome.DEFERRED] * 4
    assert len(emu.requests_matching("GET", r"/workflows/executions/[^/]+$")) == 1
    assert [r.execution is None for r in report.results] == [False, True, True, True]


def test_a_count_that_fails_defers_and_says_why(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_MAX_RUNNING", "10")
    monkeypatch.setenv("RETRY_SDK_MAX_RETRIES", "0")
    emu.add_fault(Fault(method="POST", path_regex=LIST, statuses=[503]))
    ids = emu.seed_many(2, status="FAILED")
    report = retry(client, ids)
    assert outcomes(report) == [Outcome.DEFERRED] * 2
    assert report.results[0].reason.startswith("not retried now: counting the project's running executions failed (")
    assert report.results[0].reason.endswith("); RETRY_MAX_RUNNING is 10")
    assert emu.requests_matching("POST", r"/sessions$") == []


def test_room_taken_by_a_restart_that_did_not_start_is_given_back(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One at a time, so the order is the request's: the first session is refused, the room it took comes
    # back, and the two after it are restarted.
    monkeypatch.setenv("RETRY_MAX_RUNNING", "2")
    monkeypatch.setenv("RETRY_CONCURRENCY", "1")
    monkeypatch.setenv("RETRY_LEDGER", "none")
    emu.max_running_executions = 2
    emu.add_fault(Fault(method="POST", path_regex=r"/sessions$", statuses=[400]))
    ids = emu.seed_many(3, status="FAILED")
    report = retry(client, ids)
    assert outcomes(report) == [Outcome.FAILED, Outcome.RETRIED, Outcome.RETRIED]
    assert emu.running_count == 2
    assert throttled(emu) == []


def test_a_call_of_invalid_ids_counts_nothing(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_MAX_RUNNING", "1")
    report = retry(client, ["not-an-id", "42"])
    assert outcomes(report) == [Outcome.INVALID] * 2
    assert emu.requests == []


def test_a_dry_run_counts_nothing(emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_MAX_RUNNING", "1")
    emu.seed_execution("other", "1", "RUNNING")
    ids = emu.seed_many(2, status="FAILED")
    report = retry(client, ids, dryRun=True)
    assert outcomes(report) == [Outcome.DRY_RUN] * 2
    assert emu.requests_matching("POST", LIST) == []


def test_calls_at_the_same_time_share_the_room(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The records of an SQS batch: calls from their own threads onto the SDK's one loop.
    monkeypatch.setenv("RETRY_MAX_RUNNING", "4")
    emu.max_running_executions = 4
    batches = [emu.seed_many(3, workflow_external_id=f"wf-{n}", status="FAILED") for n in range(3)]
    reports: list[RetryReport] = []
    threads = [threading.Thread(target=lambda ids=ids: reports.append(retry(client, ids))) for ids in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [r.outcome for report in reports for r in report.results]
    assert every.count(Outcome.RETRIED) == 4
    assert every.count(Outcome.DEFERRED) == 5
    assert emu.running_count == 4
    assert throttled(emu) == []


def test_room_given_back_while_other_restarts_are_under_way_is_one_unit(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two at a time: A and B take the room. A's retry is refused, so A gives its unit back while B's
    # retry is still out: C then takes that unit, and D finds no room (B and C count).
    monkeypatch.setenv("RETRY_MAX_RUNNING", "2")
    monkeypatch.setenv("RETRY_CONCURRENCY", "2")
    monkeypatch.setenv("RETRY_LEDGER", "none")
    emu.max_running_executions = 2
    a, b, c, d = emu.seed_many(4, status="FAILED")
    emu.add_fault(Fault(method="POST", path_regex=rf"/executions/{a}/retry$", statuses=[400], latency=0.2))
    emu.add_fault(Fault(method="POST", path_regex=rf"/executions/{b}/retry$", latency=1.0, times=1))
    report = retry(client, [a, b, c, d])
    assert outcomes(report) == [Outcome.FAILED, Outcome.RETRIED, Outcome.RETRIED, Outcome.DEFERRED]
    assert emu.running_count == 2
    assert throttled(emu) == []


def test_a_sweep_stops_when_the_room_is_used_and_says_so(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_MAX_RUNNING", "4")
    emu.max_running_executions = 4
    emu.seed_execution("other", "1", "RUNNING")
    emu.seed_execution("other", "1", "RUNNING")
    ids = emu.seed_many(30, status="FAILED")

    result = handler.handle({"sweep": {"maxRestarts": 20, "lookbackMinutes": 60}}, client, SECRETS)

    summary = result["sweep"]
    assert summary["outcomes"] == {"retried": 2}
    # Only as many candidates were taken up as there was room for: no execution read to be deferred.
    assert len(emu.requests_matching("GET", r"/workflows/executions/[^/]+$")) == 2
    assert summary["stoppedEarly"] == (
        "not retried now: the project runs 2 execution(s) and this process restarted 2 since; RETRY_MAX_RUNNING is 4"
    )
    assert [r["executionId"] for r in result["results"]] == ids[:2]  # the oldest first, as always
    assert emu.running_count == 4
    assert throttled(emu) == []


def test_without_the_setting_a_full_project_answers_429_and_nothing_is_given_up(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What happens when CDF refuses past its limit (assumed 429) and the tool does not count: the restarts
    # past the limit fail retryably, their attempts are not counted, and no one is told of a give-up.
    monkeypatch.setenv("RETRY_SDK_MAX_RETRIES", "0")
    emu.max_running_executions = 2
    ids = emu.seed_many(4, status="FAILED")
    report = retry(client, ids)
    failed = [r for r in report.results if r.outcome is Outcome.FAILED]
    assert outcomes(report).count(Outcome.RETRIED) == 2
    assert len(failed) == 2
    for result in failed:
        assert result.error is not None
        assert result.error.code == 429
        assert result.error.retryable
        assert result.attempts == 0
    assert report.gave_up == ()
    assert emu.running_count == 2
