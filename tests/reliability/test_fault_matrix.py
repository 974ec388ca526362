"""The fault matrix: every fault of ``faults.CASES`` through ``handle``, SQS and HTTP (``lambda_handler``).

One call carries a target execution (the fault's), a control execution and an invalid ID. For each
case and entrypoint: every ID has exactly one result with the expected outcome, ``retryable`` flag and
status; the retry requests that reached the emulator and the retries CDF applied (never more than
one) are as expected; nothing was sent for the invalid ID; the platform is told to deliver again
exactly the IDs that may succeed later (SQS ``batchItemFailures``, HTTP 5xx); the call ended inside
its deadline; and no secret shows in anything the caller or the log saw.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

import handler
from emulator import CdfEmulator, Fault
from tests.aws.samples import lambda_context, sqs_event
from tests.reliability.conftest import (
    DEADLINE_SECONDS,
    DEADLINE_SLACK_SECONDS,
    ENTRYPOINTS,
    Delivered,
    Entrypoint,
    Harness,
    Seen,
)
from tests.reliability.faults import CASES, SLOW, Expect, FaultCase
from tests.reliability.secrets import known_secrets
from tests.support.leaks import find_leaks
from workflow_retry.aws.config import LAMBDA_SAFETY_MARGIN_SECONDS
from workflow_retry.errors import ConfigurationError

pytestmark = [pytest.mark.reliability]


def expected_http_status(expects: list[Expect]) -> int:
    """docs/aws.md: 200 unless something must come again; 503 for throttling/unavailable, else 502."""
    again = [e for e in expects if e.wants_redelivery]
    if not again:
        return 200
    return 503 if any(e.outcome == "deferred" or e.code in (429, 503) for e in again) else 502


def check(seen: Seen | None, expect: Expect, entrypoint: Entrypoint, what: str) -> None:
    assert seen is not None, f"{what}: no result at all"
    assert (seen.outcome, seen.retryable) == (expect.outcome, expect.retryable), f"{what}: {seen}"
    if entrypoint != "sqs":  # SQS answers only batchItemFailures; its log line has no status field
        assert seen.code == expect.code, f"{what}: {seen}"


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_every_id_gets_its_one_honest_outcome_under_the_fault(
    harness: Harness, request: pytest.FixtureRequest, case: FaultCase, entrypoint: Entrypoint
) -> None:
    if case.needs_moto:
        request.getfixturevalue("moto_endpoint")
    for delivered in run_case(harness, case, entrypoint):
        assert find_leaks(delivered.texts, known_secrets(harness.emu)) == []


def run_case(harness: Harness, case: FaultCase, entrypoint: Entrypoint) -> list[Delivered]:
    """One row of the matrix through one entrypoint, asserted; the first delivery and the redelivery."""
    emu = harness.emu
    target = failed_a_minute_ago(emu) if case.seed_target else str(uuid.uuid4())
    control = failed_a_minute_ago(emu)
    invalid = f"../{control}/retry"
    case.arrange(harness, target)
    deadline = case.deadline_seconds or DEADLINE_SECONDS
    if case.deadline_seconds:
        harness.setenv({"RETRY_DEADLINE_SECONDS": f"{deadline:g}"})

    # One SQS batch, one deadline: the records of a standard queue run at the same time within it.
    first = harness.deliver(entrypoint, [control, invalid, target])
    time.sleep(case.settle_seconds)  # a slow request still asleep in the emulator lands before counting

    assert first.elapsed < deadline + DEADLINE_SLACK_SECONDS, f"took {first.elapsed:.1f} s"
    expects = {target: case.target, control: case.expect_control()}
    assert set(first.results) == {target, control, invalid}, "every ID, and only those, has a result"
    for execution_id, expect in expects.items():
        what = f"{'target' if execution_id == target else 'control'} {execution_id}"
        check(first.results.get(execution_id), expect, entrypoint, what)
        posts = len(emu.requests_matching("POST", rf"/executions/{execution_id}/retry$"))
        assert expect.posts_ok(posts), f"{what}: {posts} retry request(s) reached CDF"
        if execution_id != target or case.seed_target:
            assert emu.retry_count(execution_id) == expect.applied, f"{what}: retries applied"
    assert first.results[invalid].outcome == "invalid"
    assert all(".." not in r.raw_path for r in emu.requests), "the invalid ID was sent"
    again = [i for i in (target, control) if expects[i].wants_redelivery]
    # A webhook sender sends its whole request again on a 5xx; SQS only the records it was told to.
    expected_back = (first.ids if again else []) if entrypoint == "http" else again
    assert sorted(first.comes_back) == sorted(expected_back)
    if entrypoint == "http":
        assert first.http_status == expected_http_status(list(expects.values()))

    # The fault passes; the platform delivers again what it was told to (a configuration fault stays).
    emu.clear_faults()
    second = harness.redeliver(first)
    seeded = [target, control] if case.seed_target else [control]
    assert_nothing_lost_or_doubled(emu, seeded, first, second)
    if second is None:
        return [first]
    assert second.elapsed < deadline + DEADLINE_SLACK_SECONDS, f"took {second.elapsed:.1f} s"
    return [first, second]


def failed_a_minute_ago(emu: CdfEmulator) -> str:
    now = int(time.time() * 1000)
    return str(emu.seed_execution("wf", "1", "FAILED", created_time=now - 120_000, end_time=now - 60_000)["id"])


def assert_nothing_lost_or_doubled(
    emu: CdfEmulator, execution_ids: list[str], first: Delivered, second: Delivered | None
) -> None:
    """After the redelivery: never two retries; an ID reported done really runs; one not running comes back.

    Every execution of the matrix starts FAILED, so ``retried`` or ``skipped`` (someone restarted it)
    is only honest when CDF shows it RUNNING. One still FAILED must be reported as such: ``failed``
    (coming back when retryable, announced as given up when not) or ``deferred`` (coming back).
    """
    last = second or first
    for execution_id in execution_ids:
        seen = last.results.get(execution_id) or first.results[execution_id]
        running = emu.get_execution(execution_id)["status"] == "RUNNING"  # type: ignore[index]
        assert emu.retry_count(execution_id) == (1 if running else 0), execution_id
        if running:
            continue
        assert seen.outcome in ("failed", "deferred"), f"{execution_id} is still FAILED but reported {seen}"
        if seen.wants_redelivery:
            assert execution_id in last.comes_back, f"{execution_id} still FAILED, and will not come back: {seen}"


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_a_dynamodb_ledger_without_a_region_is_a_configuration_error_before_any_request(
    harness: Harness, entrypoint: Entrypoint, tmp_path: Path
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        harness.monkeypatch.delenv(name, raising=False)
    harness.setenv({"RETRY_LEDGER": "dynamodb", "RETRY_LEDGER_TABLE": "ledger"})
    harness.setenv({"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")})
    execution_id = failed_a_minute_ago(harness.emu)

    first = harness.deliver(entrypoint, [execution_id])

    if entrypoint == "handle":
        assert isinstance(first.answer, ConfigurationError)
        assert "region" in str(first.answer)
    elif entrypoint == "sqs":
        assert first.comes_back == [execution_id]  # fixed configuration: the message is handled then
    else:
        assert first.http_status == 500
    assert harness.emu.requests == []


@pytest.mark.parametrize(
    ("deadline", "lambda_seconds"),
    [(DEADLINE_SECONDS, 60.0), (60, LAMBDA_SAFETY_MARGIN_SECONDS + DEADLINE_SECONDS)],
    ids=["retry-deadline", "lambda-time-left"],
)
def test_an_sqs_batch_keeps_one_deadline_and_what_it_did_not_reach_comes_back(
    harness: Harness, deadline: float, lambda_seconds: float
) -> None:
    """A batch of slow records ends inside one deadline (RETRY_DEADLINE_SECONDS, or Lambda's time less
    its margin), not one deadline per record: a Lambda timeout would throw away the whole batch."""
    harness.setenv({"RETRY_DEADLINE_SECONDS": str(deadline)})
    ids = [failed_a_minute_ago(harness.emu) for _ in range(6)]
    harness.emu.add_fault(Fault(method="GET", path_regex=r"/workflows/executions/[^/]+$", latency=SLOW))
    harness.new_container()
    event = sqs_event(*({"executionId": i} for i in ids))
    budget = min(deadline, lambda_seconds - LAMBDA_SAFETY_MARGIN_SECONDS)

    started = time.monotonic()
    answer = handler.lambda_handler(event, lambda_context(lambda_seconds))
    elapsed = time.monotonic() - started
    time.sleep(SLOW)

    assert elapsed < budget + DEADLINE_SLACK_SECONDS, f"took {elapsed:.1f} s for a {budget:.0f} s budget"
    records = [r["messageId"] for r in event["Records"]]
    assert answer == {"batchItemFailures": [{"itemIdentifier": r} for r in records]}
    assert all(harness.emu.retry_count(i) == 0 for i in ids)
