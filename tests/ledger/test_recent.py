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
from workflow_retry.ledger.raw import LIST_PAGE_ROWS, RawLedger

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


def test_raw_lists_the_rows_it_wrote_from_the_millisecond_asked(emu: CdfEmulator, client: CogniteClient) -> None:
    ledger = RawLedger(client, "db", "t", 86_400)
    now = int(time.time() * 1000)
    run_on_sdk_loop(ledger.take_attempt(None, "exec-1", "wf", now))
    written = client.raw.rows.retrieve("db", "t", "exec-1")
    assert written is not None
    assert written.last_updated_time is not None

    since_then = run_on_sdk_loop(ledger.list_recent(written.last_updated_time, now, 10))
    after_it = run_on_sdk_loop(ledger.list_recent(written.last_updated_time + 1, now, 10))

    assert [r.execution_id for r in since_then.records] == ["exec-1"]
    assert (after_it.records, after_it.complete) == ((), True)


def test_raw_reads_a_listing_that_fits_the_limit_in_one_request(emu: CdfEmulator, client: CogniteClient) -> None:
    rows = {f"exec-{i:02}": {"attempts": 1, "expiresAt": 4_000_000_000} for i in range(30)}
    client.raw.rows.insert("db", "t", rows, ensure_parent=True)
    ledger = RawLedger(client, "db", "t", 86_400)
    emu.clear_requests()

    everything = run_on_sdk_loop(ledger.list_recent(0, int(time.time() * 1000), 30))
    assert len(emu.requests_matching("GET", r"/rows$")) == 1
    all_but_one = run_on_sdk_loop(ledger.list_recent(0, int(time.time() * 1000), 29))

    assert (len(everything.records), everything.complete) == (30, True)
    assert (len(all_but_one.records), all_but_one.complete) == (29, False)
    assert len(emu.requests_matching("GET", r"/rows$")) == 2


def test_raw_reads_a_listing_longer_than_a_page_to_its_end(emu: CdfEmulator, client: CogniteClient) -> None:
    rows = {f"exec-{i:04}": {"attempts": 1, "expiresAt": 4_000_000_000} for i in range(LIST_PAGE_ROWS + 100)}
    client.raw.rows.insert("db", "t", rows, ensure_parent=True)

    recent = run_on_sdk_loop(RawLedger(client, "db", "t", 86_400).list_recent(0, int(time.time() * 1000), 5_000))

    assert recent.complete is True
    assert sorted(r.execution_id for r in recent.records) == sorted(rows)
    assert len(emu.requests_matching("GET", r"/rows$")) == 2


def test_dynamodb_lists_records_active_from_the_millisecond_asked(ledger_table: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, 86_400)
    now = int(time.time() * 1000)
    run_on_sdk_loop(ledger.take_attempt(None, "exec-1", "wf", now))

    since_then = run_on_sdk_loop(ledger.list_recent(now, now, 10))
    after_it = run_on_sdk_loop(ledger.list_recent(now + 1, now, 10))

    assert [r.execution_id for r in since_then.records] == ["exec-1"]
    assert (after_it.records, after_it.complete) == ((), True)


def test_dynamodb_reads_a_scan_longer_than_a_page_to_its_end(ledger_table: str) -> None:
    """DynamoDB answers a scan 1 MB at a time: 110 items of 10 kB take two pages."""
    dynamodb: Any = boto3.client("dynamodb")
    now = int(time.time() * 1000)
    ids = [f"exec-{i:03}" for i in range(110)]
    for start in range(0, len(ids), 25):
        items = [
            {
                "PutRequest": {
                    "Item": {
                        "executionId": {"S": execution_id},
                        "attempts": {"N": "1"},
                        "lastAttemptAt": {"N": str(now)},
                        "expiresAt": {"N": str(now // 1000 + 86_400)},
                        "note": {"S": "x" * 10_000},  # not the ledger's: makes the item large
                    }
                }
            }
            for execution_id in ids[start : start + 25]
        ]
        dynamodb.batch_write_item(RequestItems={ledger_table: items})
    scans: list[dict[str, Any]] = []
    dynamodb.meta.events.register("provide-client-params.dynamodb.Scan", lambda params, **_: scans.append(params))

    recent = run_on_sdk_loop(DynamoDbLedger(dynamodb, ledger_table, 86_400).list_recent(now - 60_000, now, 1_000))

    assert recent.complete is True
    assert sorted(r.execution_id for r in recent.records) == ids
    assert len(scans) == 2
