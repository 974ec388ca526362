"""The DynamoDB ledger through real boto3 against moto's server, and under concurrent invocations."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from cognite.client import CogniteClient

from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry import function
from workflow_retry.cdf import ClientCredentials
from workflow_retry.errors import LedgerError
from workflow_retry.giveup import Announcer
from workflow_retry.ledger import AttemptEntry, AttemptRecord
from workflow_retry.ledger.dynamodb import DynamoDbLedger
from workflow_retry.payloads import parse_payload
from workflow_retry.settings import Settings

TTL = 7 * 86_400
CREDENTIALS = ClientCredentials(FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_record_is_written_counted_and_read_back(ledger_table: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)
    now = int(time.time() * 1000)

    first = run(ledger.take_attempt(None, "exec-1", "wf", now))
    second = run(ledger.take_attempt(first, "exec-1", None, now + 1))

    assert second == AttemptRecord("exec-1", "wf", 2, now + 1, "retried", (now + 1) // 1000 + TTL)
    assert run(ledger.get("exec-1", now + 2)) == second
    item = boto3.client("dynamodb").get_item(TableName=ledger_table, Key={"executionId": {"S": "exec-1"}})["Item"]
    assert set(item) == {
        "executionId",
        "workflowExternalId",
        "attempts",
        "lastAttemptAt",
        "lastOutcome",
        "expiresAt",
        "history",
        "purgeAt",
    }


def test_the_history_is_stored_as_compact_json_text(ledger_table: str) -> None:
    """DynamoDB items hold at most 400 KB, and the history grows with each attempt: no padding."""
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)
    now = int(time.time() * 1000)
    entry = AttemptEntry(now, "retried", "run-1", "task failed: timeout")

    run(ledger.take_attempt(None, "exec-compact", "wf", now, (entry,)))

    item = boto3.client("dynamodb").get_item(TableName=ledger_table, Key={"executionId": {"S": "exec-compact"}})["Item"]
    assert item["history"]["S"] == (
        f'[{{"at":{now},"outcome":"retried","engineExecutionId":"run-1","reason":"task failed: timeout"}}]'
    )


def test_a_stale_read_cannot_take_an_attempt(ledger_table: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)
    now = int(time.time() * 1000)
    seen = run(ledger.take_attempt(None, "exec-2", "wf", now))

    assert run(ledger.take_attempt(seen, "exec-2", "wf", now + 1)) is not None
    assert run(ledger.take_attempt(seen, "exec-2", "wf", now + 2)) is None  # someone else moved it on
    assert run(ledger.take_attempt(None, "exec-2", "wf", now + 3)) is None


def test_an_expired_record_counts_as_none_and_can_be_replaced(ledger_table: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, ttl_seconds=1)
    now = int(time.time() * 1000)
    run(ledger.take_attempt(None, "exec-3", "wf", now))
    later = now + 5_000  # past expiresAt; DynamoDB may not have deleted it yet

    assert run(ledger.get("exec-3", later)) is None
    fresh = run(ledger.take_attempt(None, "exec-3", "wf", later))
    assert fresh is not None
    assert fresh.attempts == 1


def test_release_and_record_outcome_are_conditional(ledger_table: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)
    now = int(time.time() * 1000)
    first = run(ledger.take_attempt(None, "exec-4", "wf", now))
    second = run(ledger.take_attempt(first, "exec-4", "wf", now + 1))

    run(ledger.release_attempt(second, first))
    assert run(ledger.get("exec-4", now + 3)) == first
    assert run(ledger.record_outcome(first, "gave_up", now + 4)) is True
    assert run(ledger.record_outcome(first, "gave_up", now + 5)) is False  # told once


def test_a_missing_table_is_a_clear_non_retryable_error(moto_endpoint: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), "no-such-table", TTL)
    with pytest.raises(LedgerError, match="ResourceNotFoundException") as caught:
        run(ledger.get("exec-5", 0))
    assert caught.value.retryable is False


@pytest.mark.usefixtures("fast_env")
def test_ten_concurrent_invocations_with_one_attempt_left_retry_exactly_once(
    emu: CdfEmulator, client: CogniteClient, ledger_table: str, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time() * 1000)
    execution_id = emu.seed_execution("wf", "1", "FAILED", end_time=now - 1_000)["id"]
    dynamodb: Any = boto3.client("dynamodb")
    dynamodb.put_item(
        TableName=ledger_table,
        Item={
            "executionId": {"S": execution_id},
            "workflowExternalId": {"S": "wf"},
            "attempts": {"N": "2"},
            "lastAttemptAt": {"N": str(now - 2 * 3_600_000)},
            "lastOutcome": {"S": "retried"},
            "expiresAt": {"N": str(now // 1000 + TTL)},
        },
    )
    settings = Settings(ledger="dynamodb", ledger_table=ledger_table)
    request = parse_payload({"executionId": execution_id})
    start = threading.Barrier(10)

    def invocation(_: int) -> dict[str, Any]:
        ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)  # each its own, as separate Lambdas
        start.wait()
        report = function.execute(request, client, CREDENTIALS, settings, ledger=ledger, environment={})
        return dict(report.to_dict()["results"][0])

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(invocation, range(10)))

    outcomes = sorted(r["outcome"] for r in results)
    assert outcomes == ["retried"] + ["skipped"] * 9, [r["reason"] for r in results]
    assert emu.retry_count(execution_id) == 1
    assert len(emu.requests_matching("POST", rf"/workflows/executions/{execution_id}/retry$")) == 1
    item = dynamodb.get_item(TableName=ledger_table, Key={"executionId": {"S": execution_id}})["Item"]
    assert item["attempts"] == {"N": "3"}
    assert not [r for r in caplog.records if r.name == "workflow_retry.giveup"]


@pytest.mark.usefixtures("fast_env")
def test_the_default_ledger_is_dynamodb_when_chosen_in_settings(
    emu: CdfEmulator, client: CogniteClient, ledger_table: str
) -> None:
    execution_id = emu.seed_execution("wf", "1", "FAILED")["id"]
    settings = Settings(ledger="dynamodb", ledger_table=ledger_table)

    report = function.execute(
        parse_payload({"executionId": execution_id}), client, None, settings, announcer=Announcer()
    )

    assert report.results[0].outcome.value == "retried"
    assert report.results[0].attempts == 1
    assert emu.requests_matching(None, r"/raw/") == []
    item = boto3.client("dynamodb").get_item(TableName=ledger_table, Key={"executionId": {"S": execution_id}})["Item"]
    assert item["attempts"] == {"N": "1"}


def test_a_give_up_is_marked_once_for_an_execution_never_retried(ledger_table: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)
    now = int(time.time() * 1000)
    never_retried = AttemptRecord("exec-access", "wf", 0, None, None, 0)

    assert run(ledger.record_outcome(never_retried, "gave_up", now)) is True
    assert run(ledger.record_outcome(never_retried, "gave_up", now + 1)) is False  # told once

    record = run(ledger.get("exec-access", now + 2))
    assert (record.attempts, record.last_outcome) == (0, "gave_up")
    assert run(ledger.take_attempt(record, "exec-access", "wf", now + 3)) is not None  # still countable later


@pytest.mark.usefixtures("fast_env")
def test_a_refused_first_retry_gives_its_attempt_back_in_dynamodb(
    emu: CdfEmulator, client: CogniteClient, ledger_table: str, caplog: pytest.LogCaptureFixture
) -> None:
    # DynamoDB gives an attempt back with a delete on the condition that the item is still the one taken.
    execution_id = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=r"/retry$", statuses=[400]))
    settings = Settings(ledger="dynamodb", ledger_table=ledger_table)

    report = function.execute(
        parse_payload({"executionId": execution_id}), client, None, settings, announcer=Announcer()
    )

    assert (report.results[0].outcome.value, report.results[0].attempts) == ("failed", 0)
    item = boto3.client("dynamodb").get_item(TableName=ledger_table, Key={"executionId": {"S": execution_id}})
    assert "Item" not in item
    assert not [r for r in caplog.records if "could not release" in r.getMessage()]


class RacedDynamoDbLedger(DynamoDbLedger):
    """The real ledger, with another invocation taking the same attempt just before each of its writes:
    DynamoDB's conditional write (on moto) then refuses this one, as it would in the race."""

    async def take_attempt(self, *args: Any, **kwargs: Any) -> AttemptRecord | None:
        await super().take_attempt(*args, **kwargs)  # the other invocation, first
        return await super().take_attempt(*args, **kwargs)


@pytest.mark.usefixtures("fast_env")
def test_an_attempt_another_invocation_took_at_the_same_moment_is_skipped_and_sends_no_retry(
    emu: CdfEmulator, client: CogniteClient, ledger_table: str
) -> None:
    execution_id = emu.seed_execution("wf", "1", "FAILED")["id"]
    ledger = RacedDynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)
    settings = Settings(ledger="dynamodb", ledger_table=ledger_table)

    report = function.execute(
        parse_payload({"executionId": execution_id}), client, None, settings, ledger=ledger, announcer=Announcer()
    )

    [result] = report.to_dict()["results"]
    assert result["outcome"] == "skipped"
    assert result["reason"] == "not retried: another invocation took attempt 1 at the same moment"
    assert (result["attempts"], result["execution"]["id"], result["execution"]["status"]) == (1, execution_id, "FAILED")
    assert emu.requests_matching("POST", r"/retry$") == []
