"""``list_recent``: the records written since a time, with their history, for RAW and DynamoDB alike."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from cognite.client import CogniteClient

from emulator import CdfEmulator
from workflow_retry.cdf import run_on_sdk_loop
from workflow_retry.history import with_attempt, with_give_up
from workflow_retry.ledger import AttemptLedger
from workflow_retry.ledger.dynamodb import DynamoDbLedger
from workflow_retry.ledger.raw import RawLedger

pytestmark = pytest.mark.usefixtures("fast_env")

FAILED = {"status": "FAILED", "endTime": 1, "reasonForIncompletion": "Task 'load' failed"}


@pytest.fixture(params=["raw", "dynamodb"])
def ledger(request: pytest.FixtureRequest) -> AttemptLedger:
    if request.param == "raw":
        client: CogniteClient = request.getfixturevalue("client")
        return RawLedger(client, "db", "t", 86_400)
    table = request.getfixturevalue("ledger_table")  # first: it points boto3 at moto's server
    dynamodb: Any = boto3.client("dynamodb")
    return DynamoDbLedger(dynamodb, table, 86_400)


def test_nothing_written_yet_is_an_empty_complete_listing(emu: CdfEmulator, ledger: AttemptLedger) -> None:
    recent = run_on_sdk_loop(ledger.list_recent(0, int(time.time() * 1000), 10))

    assert (recent.records, recent.complete) == ((), True)


def test_records_come_with_their_history_and_the_limit_says_when_more_are_left(
    emu: CdfEmulator, ledger: AttemptLedger
) -> None:
    now = int(time.time() * 1000)
    for i in range(3):
        history = with_attempt(None, FAILED, now + i, 3)
        run_on_sdk_loop(ledger.take_attempt(None, f"exec-{i}", f"wf-{i}", now + i, history))
    taken = run_on_sdk_loop(ledger.get("exec-0", now + 10))
    assert taken is not None
    run_on_sdk_loop(ledger.record_outcome(with_give_up(taken, FAILED, now + 20, "enough", 3), "gave_up", now + 20))

    everything = run_on_sdk_loop(ledger.list_recent(now - 60_000, now + 30, 10))
    some = run_on_sdk_loop(ledger.list_recent(now - 60_000, now + 30, 2))

    assert everything.complete is True
    by_id = {r.execution_id: r for r in everything.records}
    assert sorted(by_id) == ["exec-0", "exec-1", "exec-2"]
    assert [(e.outcome, e.reason) for e in by_id["exec-0"].history] == [
        ("retried", "Task 'load' failed"),
        ("gave_up", "enough"),
    ]
    assert by_id["exec-0"].last_activity_at == now + 20
    assert (by_id["exec-2"].workflow_external_id, by_id["exec-2"].attempts) == ("wf-2", 1)
    assert (len(some.records), some.complete) == (2, False)


def test_dynamodb_leaves_out_records_not_active_since_then(ledger_table: str) -> None:
    dynamodb: Any = boto3.client("dynamodb")
    ledger = DynamoDbLedger(dynamodb, ledger_table, 86_400)
    now = int(time.time() * 1000)
    run_on_sdk_loop(ledger.take_attempt(None, "old", "wf", now - 3_600_000))
    run_on_sdk_loop(ledger.take_attempt(None, "new", "wf", now))

    recent = run_on_sdk_loop(ledger.list_recent(now - 60_000, now, 10))

    assert [r.execution_id for r in recent.records] == ["new"]
