"""The service's flow, called directly over real HTTP against the CDF emulator.

What a caller of ``retry_executions`` / ``retry_one`` sees of the orchestration: progress as results
come in, the concurrency bound shared by the calls of one loop, and the one-task-at-a-time rule per
execution (which waiting calls take the handling task's result, and how that result reads).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from cognite.client import CogniteClient

from emulator import CdfEmulator, Fault
from workflow_retry.cdf import SdkCdfGateway, run_on_sdk_loop
from workflow_retry.errors import IdentityProviderError
from workflow_retry.ids import ExecutionId
from workflow_retry.ledger.raw import READ_AHEAD_MIN_IDS, RawLedger
from workflow_retry.models import Outcome, RetryReport
from workflow_retry.payloads import parse_payload
from workflow_retry.policy import RetryPolicy
from workflow_retry.service import (
    CAP_NOT_ENFORCED,
    DEADLINE_MESSAGE,
    SHARED_PREFIX,
    RetryContext,
    report_not_started,
    retry_executions,
    retry_one,
    shared_slots,
)
from workflow_retry.settings import Settings

pytestmark = pytest.mark.usefixtures("fast_env")

T = TypeVar("T")
EXECUTION_READ = r"/workflows/executions/[^/]+$"
RETRY_PATH = r"/workflows/executions/[^/]+/retry$"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return run_on_sdk_loop(coroutine)


class CountingGateway(SdkCdfGateway):
    """The real gateway, counting how many execution reads are in flight at once (a spy only)."""

    def __init__(self, client: CogniteClient) -> None:
        super().__init__(client, None)
        self.reading = 0
        self.most_reading = 0

    async def get_execution(self, execution_id: ExecutionId) -> dict[str, Any]:
        self.reading += 1
        self.most_reading = max(self.most_reading, self.reading)
        try:
            return await super().get_execution(execution_id)
        finally:
            self.reading -= 1


def retry_all(
    client: CogniteClient, payload: dict[str, Any], settings: Settings | None = None, **kwargs: Any
) -> RetryReport:
    return run(retry_executions(parse_payload(payload), SdkCdfGateway(client, None), settings or Settings(), **kwargs))


# --- progress -------------------------------------------------------------------------------------------------


def test_progress_counts_every_result_once_invalid_ones_too(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(3)]
    seen: list[tuple[int, int]] = []

    report = retry_all(client, {"executionIds": [*ids, "not an id!"]}, progress=lambda *step: seen.append(step))

    assert [r.outcome for r in report.results] == [Outcome.RETRIED] * 3 + [Outcome.INVALID]
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


# --- the concurrency bound ------------------------------------------------------------------------------------


@pytest.mark.slow  # waits out a deadline of seconds
def test_each_concurrency_setting_bounds_the_executions_in_flight(emu: CdfEmulator, client: CogniteClient) -> None:
    # Every read takes a while, so each call's slots are all taken before the first read answers.
    emu.add_fault(Fault(method="GET", path_regex=EXECUTION_READ, latency=0.3))
    for concurrency in (3, 1, 3):
        ids = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(5)]
        gateway = CountingGateway(client)

        report = run(retry_executions(parse_payload({"executionIds": ids}), gateway, Settings(concurrency=concurrency)))

        assert [r.outcome for r in report.results] == [Outcome.RETRIED] * 5
        assert gateway.most_reading == concurrency


# --- one task at a time per execution -------------------------------------------------------------------------


async def _together(*calls: Coroutine[Any, Any, T]) -> list[T]:
    """The calls started in this order on one loop: each later one finds the earlier ones at work."""
    return list(await asyncio.gather(*calls))


def test_a_call_that_waited_for_the_same_execution_takes_its_result_and_says_so(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    retried = emu.seed_execution("wf", "1", "FAILED")["id"]
    running = emu.seed_execution("wf", "1", "RUNNING")["id"]
    gateway = SdkCdfGateway(client, None)
    context = RetryContext()

    first, second, third, fourth = run(
        _together(
            retry_one(retried, gateway, dry_run=False, context=context),
            retry_one(retried, gateway, dry_run=False, context=context),
            retry_one(running, gateway, dry_run=False, context=context),
            retry_one(running, gateway, dry_run=False, context=context),
        )
    )

    assert first.outcome is Outcome.RETRIED
    assert (second.outcome, second.reason) == (
        Outcome.SKIPPED,
        f"not retried again: {SHARED_PREFIX} ({first.reason})",
    )
    assert third.outcome is Outcome.SKIPPED
    assert (fourth.outcome, fourth.reason) == (Outcome.SKIPPED, f"{SHARED_PREFIX}: {third.reason}")
    assert emu.retry_count(retried) == 1
    assert len(emu.requests_matching("GET", EXECUTION_READ)) == 2  # one read per execution


def test_a_real_retry_that_waited_for_a_dry_run_of_the_same_execution_still_retries_it(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    gateway = SdkCdfGateway(client, None)

    dry, real = run(
        _together(
            retry_executions(parse_payload({"executionId": failed, "dryRun": True}), gateway, Settings()),
            retry_executions(parse_payload({"executionId": failed}), gateway, Settings()),
        )
    )

    assert [r.outcome for r in dry.results] == [Outcome.DRY_RUN]
    assert [r.outcome for r in real.results] == [Outcome.RETRIED]
    assert SHARED_PREFIX not in real.results[0].reason
    assert emu.retry_count(failed) == 1


def test_one_execution_met_by_calls_that_decide_differently_is_decided_by_each(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    """A sweep's candidates go through ``retry_one``: a dry run or another policy never takes a real retry's result."""
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    gateway = SdkCdfGateway(client, None)
    default, excluding = RetryContext(), RetryContext(policy=RetryPolicy(exclude_workflows=("wf",)))

    dry, excluded, real = run(
        _together(
            retry_one(failed, gateway, dry_run=True, context=default),
            retry_one(failed, gateway, dry_run=False, context=excluding),
            retry_one(failed, gateway, dry_run=False, context=default),
        )
    )

    assert (dry.outcome, excluded.outcome, real.outcome) == (Outcome.DRY_RUN, Outcome.SKIPPED, Outcome.RETRIED)
    assert all(SHARED_PREFIX not in r.reason for r in (dry, excluded, real))
    assert emu.retry_count(failed) == 1


# --- what each result carries -----------------------------------------------------------------------------------

LEDGER = ("workflow_retry", "attempts")
ROW = r"/raw/dbs/[^/]+/tables/[^/]+/rows/[^/]+$"
ROWS = r"/raw/dbs/[^/]+/tables/[^/]+/rows$"
HOUR_MS = 3_600_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _counted(client: CogniteClient, execution_id: str, attempts: int, ago_ms: int) -> None:
    """A ledger row: ``attempts`` taken, the last one ``ago_ms`` ago."""
    now = _now_ms()
    row = {
        "workflowExternalId": "wf",
        "attempts": attempts,
        "lastAttemptAt": now - ago_ms,
        "lastOutcome": "retried",
        "expiresAt": now // 1000 + 86_400,
    }
    client.raw.rows.insert(*LEDGER, {execution_id: row}, ensure_parent=True)


def _raw_context(client: CogniteClient) -> RetryContext:
    return RetryContext(ledger=RawLedger(client, *LEDGER, 86_400))


def _retry_with_raw_ledger(client: CogniteClient, payload: dict[str, Any]) -> RetryReport:
    """The batch of this payload, with the default settings and the RAW ledger, on the SDK's loop."""
    return run(retry_executions(parse_payload(payload), SdkCdfGateway(client, None), Settings(), _raw_context(client)))


def test_every_decided_result_carries_its_execution_and_attempt_count(emu: CdfEmulator, client: CogniteClient) -> None:
    capped = emu.seed_execution("wf", "1", "FAILED")["id"]
    cooling = emu.seed_execution("wf", "1", "FAILED")["id"]
    running = emu.seed_execution("wf", "1", "RUNNING")["id"]
    _counted(client, capped, 3, HOUR_MS)
    _counted(client, cooling, 1, 1_000)
    _counted(client, running, 2, HOUR_MS)
    gateway = SdkCdfGateway(client, None)

    report = run(
        retry_executions(
            parse_payload({"executionIds": [capped, cooling, running]}), gateway, Settings(), _raw_context(client)
        )
    )
    dry = run(
        retry_executions(
            parse_payload({"executionId": capped, "dryRun": True}),
            gateway,
            Settings(),
            RetryContext(ledger=RawLedger(client, *LEDGER, 86_400), policy=RetryPolicy(max_attempts=5)),
        )
    )

    seen = [(r.execution_id, r.outcome, r.attempts, (r.execution or {}).get("id")) for r in report.results]
    assert seen == [
        (capped, Outcome.EXHAUSTED, 3, capped),
        (cooling, Outcome.DEFERRED, 1, cooling),
        (running, Outcome.SKIPPED, 2, running),
    ]
    [would] = dry.results
    assert (would.outcome, would.attempts, (would.execution or {}).get("id")) == (Outcome.DRY_RUN, 3, capped)
    assert emu.retry_count(capped) == emu.retry_count(cooling) == 0


def test_a_failed_read_of_the_execution_says_what_failed(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="GET", path_regex=EXECUTION_READ, statuses=[500] * 50))

    [result] = _retry_with_raw_ledger(client, {"executionId": failed}).results

    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert result.error.retryable
    assert result.reason == f"reading the execution failed: {result.error.message}"
    assert emu.retry_count(failed) == 0


@pytest.mark.parametrize(
    ("step", "counted"), [("read", 1), ("write", 1), ("write", 0)], ids=["read", "write", "first-write"]
)
def test_a_ledger_failure_fails_the_id_with_its_execution_and_sends_no_retry(
    emu: CdfEmulator, client: CogniteClient, step: str, counted: int
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    if counted:
        _counted(client, failed, counted, HOUR_MS)
    method, path = ("GET", ROW) if step == "read" else ("POST", ROWS)
    emu.add_fault(Fault(method=method, path_regex=path, statuses=[500] * 50))

    report = _retry_with_raw_ledger(client, {"executionId": failed})

    [result] = report.results
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert result.reason == result.error.message
    assert result.reason.endswith("; not retried, as the attempt could not be counted")
    assert (result.execution or {}).get("id") == failed
    assert result.attempts == (counted if step == "write" and counted else None)
    assert emu.retry_count(failed) == 0


def test_a_refused_session_fails_the_id_with_its_execution_and_the_earlier_count(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    _counted(client, failed, 1, HOUR_MS)
    emu.add_fault(Fault(method="POST", path_regex=r"/sessions$", statuses=[403]))

    report = _retry_with_raw_ledger(client, {"executionId": failed})

    [result] = report.results
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert result.error.code == 403
    assert result.reason == result.error.message
    assert ((result.execution or {}).get("id"), result.attempts) == (failed, 1)
    assert emu.raw_rows(*LEDGER)[failed]["attempts"] == 1


# --- a call that could not start ------------------------------------------------------------------------------


def test_a_call_that_could_not_start_fails_each_valid_id_and_keeps_each_invalid_ones_problem(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    request = parse_payload({"executionIds": [failed, "not an id!"]})
    [invalid] = [r for r in request.ids if r.execution_id is None]
    error = IdentityProviderError("the identity provider did not answer", retryable=True)

    with_ledger = report_not_started(request, error, _raw_context(client))
    without = report_not_started(request, error)

    assert [(r.outcome, r.reason, r.cap_enforced) for r in with_ledger.results] == [
        (Outcome.FAILED, error.message, True),
        (Outcome.INVALID, invalid.problem, True),
    ]
    assert [(r.outcome, r.reason, r.cap_enforced) for r in without.results] == [
        (Outcome.FAILED, f"{error.message} ({CAP_NOT_ENFORCED})", False),
        (Outcome.INVALID, invalid.problem, False),
    ]
    assert emu.requests_matching("GET", EXECUTION_READ) == []


@pytest.mark.parametrize("full_execution", [False, True])
def test_a_batch_returns_the_whole_execution_only_when_asked(
    emu: CdfEmulator, client: CogniteClient, full_execution: bool
) -> None:
    running = emu.seed_execution("wf", "1", "RUNNING")["id"]  # reported as read: the detailed execution

    [result] = retry_all(client, {"executionId": running, "fullExecution": full_execution}).results

    assert result.outcome is Outcome.SKIPPED
    assert result.execution is not None
    assert ("executedTasks" in result.execution) is full_execution


@pytest.mark.parametrize("full_execution", [False, True])
def test_retry_one_returns_the_whole_execution_only_when_asked(
    emu: CdfEmulator, client: CogniteClient, full_execution: bool
) -> None:
    """A sweep's candidates: ``fullExecution`` keeps the executed tasks, the default keeps the compact fields."""
    running = emu.seed_execution("wf", "1", "RUNNING")["id"]
    gateway = SdkCdfGateway(client, None)

    result = run(retry_one(running, gateway, dry_run=False, context=RetryContext(), full_execution=full_execution))

    assert result.execution is not None
    assert ("executedTasks" in result.execution) is full_execution
    assert result.execution["id"] == running


def test_a_failed_bulk_read_of_the_ledger_is_logged_and_each_id_reads_its_own_record(
    emu: CdfEmulator, client: CogniteClient, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(READ_AHEAD_MIN_IDS)]
    emu.add_fault(Fault(method="GET", path_regex=ROWS, statuses=[500] * 50))
    emu.clear_requests()

    with caplog.at_level(logging.WARNING, logger="workflow_retry.service"):
        report = _retry_with_raw_ledger(client, {"executionIds": ids})

    assert [r.outcome for r in report.results] == [Outcome.RETRIED] * len(ids)
    assert len(emu.requests_matching("GET", ROW)) == len(ids)
    [warning] = [r.getMessage() for r in caplog.records if "in bulk" in r.getMessage()]
    assert warning.startswith("reading the attempt ledger in bulk failed, reading it per execution: ")
    assert "500" in warning


def test_an_id_the_deadline_cuts_before_its_retry_request_is_not_reached(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    """Other calls of the process hold every slot until the deadline: the ID never starts, and says so."""
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    settings = Settings(concurrency=1, deadline_seconds=1.5, request_timeout_seconds=1)

    async def while_the_slots_are_taken() -> RetryReport:
        async with shared_slots(settings.concurrency).hold():
            return await retry_executions(parse_payload({"executionId": failed}), SdkCdfGateway(client, None), settings)

    [result] = run(while_the_slots_are_taken()).results

    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == (None, True)
    assert result.reason == f"{DEADLINE_MESSAGE} ({CAP_NOT_ENFORCED})"
    assert emu.requests_matching("GET", EXECUTION_READ) == []
    assert emu.retry_count(failed) == 0
