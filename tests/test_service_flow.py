"""The service's flow, called directly over real HTTP against the CDF emulator.

What a caller of ``retry_executions`` / ``retry_one`` sees of the orchestration: progress as results
come in, the concurrency bound shared by the calls of one loop, and the one-task-at-a-time rule per
execution (which waiting calls take the handling task's result, and how that result reads).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from cognite.client import CogniteClient

from emulator import CdfEmulator, Fault
from workflow_retry.cdf import SdkCdfGateway, run_on_sdk_loop
from workflow_retry.ids import ExecutionId
from workflow_retry.models import Outcome, RetryReport
from workflow_retry.payloads import parse_payload
from workflow_retry.policy import RetryPolicy
from workflow_retry.service import SHARED_PREFIX, RetryContext, retry_executions, retry_one
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
