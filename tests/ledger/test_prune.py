"""Old ledger records are deleted: RAW by the ledger (each sweep, and ``prune``), DynamoDB by its TTL on ``purgeAt``."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from tests.test_cli import cli
from workflow_retry.cdf import run_on_sdk_loop
from workflow_retry.errors import LedgerError
from workflow_retry.ledger.dynamodb import DynamoDbLedger
from workflow_retry.ledger.raw import CLOCK_SKEW_MS, RawLedger

pytestmark = pytest.mark.usefixtures("fast_env")

DAY_MS = 86_400_000
SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}


def test_prune_deletes_rows_past_expiry_plus_retention_and_keeps_the_rest(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    ledger = RawLedger(client, "db", "t", ttl_seconds=86_400, retention_seconds=86_400)
    now = int(time.time() * 1000)
    for key in ("old-1", "old-2"):
        run_on_sdk_loop(ledger.take_attempt(None, key, "wf", now))  # expires in a day, pruned a day after
    run_on_sdk_loop(ledger.take_attempt(None, "expired-within-retention", "wf", now + DAY_MS + 3_600_000))
    run_on_sdk_loop(ledger.take_attempt(None, "live", "wf", now + 3 * DAY_MS - 60_000))
    client.raw.rows.insert("db", "t", {"not-ours": {"note": "someone else's row"}})

    deleted = run_on_sdk_loop(ledger.prune(now + 3 * DAY_MS, max_rows=1000))

    assert deleted == 2
    assert sorted(emu.raw_rows("db", "t")) == ["expired-within-retention", "live", "not-ours"]
    [listing] = [r for r in emu.requests if r.method == "GET" and r.path.endswith("/rows")]
    assert listing.query["columns"] == ["expiresAt"]  # the keys and one column, not the history
    assert run_on_sdk_loop(ledger.prune(now + 3 * DAY_MS, max_rows=1000)) == 0


def test_prune_deletes_at_most_max_rows_in_requests_of_at_most_1000_keys(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    old = {f"exec-{i}": {"attempts": 1, "expiresAt": 1_000} for i in range(2_500)}
    client.raw.rows.insert("db", "t", old, ensure_parent=True)
    emu.age_raw_rows("db", "t", by_ms=30 * DAY_MS)
    ledger = RawLedger(client, "db", "t", ttl_seconds=86_400, retention_seconds=86_400)
    now = int(time.time() * 1000)

    assert run_on_sdk_loop(ledger.prune(now, max_rows=2_000)) == 2_000
    assert len(emu.raw_rows("db", "t")) == 500
    deletes = [r for r in emu.requests if r.path.endswith("/rows/delete")]
    assert [len(r.body["items"]) for r in deletes] == [1_000, 1_000]
    listings = [r for r in emu.requests if r.method == "GET" and r.path.endswith("/rows")]
    assert len(listings) == 2  # no page listed past the 2,000th prunable row
    assert run_on_sdk_loop(ledger.prune(now, max_rows=2_000)) == 500
    assert emu.raw_rows("db", "t") == {}


def test_a_sweep_prunes_old_rows_and_a_dry_run_does_not(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_LEDGER", "raw")
    now_s = int(time.time())
    # Written 40 days ago: past the TTL (7 days) and the retention (30 days). Then one written 17 days ago:
    # expired, but within the retention (its history can still be read).
    gone = {"long-gone": {"workflowExternalId": "wf", "attempts": 3, "expiresAt": now_s - 33 * 86_400}}
    client.raw.rows.insert("workflow_retry", "attempts", gone, ensure_parent=True)
    emu.age_raw_rows("workflow_retry", "attempts", by_ms=23 * DAY_MS)
    kept = {"expired-lately": {"workflowExternalId": "wf", "attempts": 1, "expiresAt": now_s - 10 * 86_400}}
    client.raw.rows.insert("workflow_retry", "attempts", kept)
    emu.age_raw_rows("workflow_retry", "attempts", by_ms=17 * DAY_MS)
    live = emu.seed_execution("wf", "1", "FAILED")["id"]

    handler.handle({"sweep": {}, "dryRun": True}, client, SECRETS)
    assert "long-gone" in emu.raw_rows("workflow_retry", "attempts")
    report = handler.handle({"sweep": {}}, client, SECRETS)

    assert report["sweep"]["outcomes"] == {"retried": 1}
    assert sorted(emu.raw_rows("workflow_retry", "attempts")) == sorted(["expired-lately", live])


def test_prune_command_reports_what_it_deleted(emu: CdfEmulator, client: CogniteClient) -> None:
    old = {f"exec-{i}": {"attempts": 1, "expiresAt": 1_000} for i in range(3)}
    client.raw.rows.insert("workflow_retry", "attempts", old, ensure_parent=True)
    emu.age_raw_rows("workflow_retry", "attempts", by_ms=40 * DAY_MS)

    done = cli(emu, "prune", RETRY_LEDGER="raw")
    dynamodb = cli(emu, "prune", RETRY_LEDGER="none")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted 3 ledger record(s) past their expiry plus RETRY_LEDGER_RETENTION_DAYS 30")
    assert emu.raw_rows("workflow_retry", "attempts") == {}
    assert (dynamodb.returncode, dynamodb.stdout.strip()) == (
        0,
        "nothing to prune: the attempt ledger is none (RETRY_LEDGER=none)",
    )


def test_dynamodb_items_carry_purge_at_expiry_plus_retention(ledger_table: str) -> None:
    dynamodb: Any = boto3.client("dynamodb")
    ledger = DynamoDbLedger(dynamodb, ledger_table, ttl_seconds=3_600, retention_seconds=7 * 86_400)
    now = int(time.time() * 1000)

    taken = run_on_sdk_loop(ledger.take_attempt(None, "exec-1", "wf", now))
    assert taken is not None
    item = dynamodb.get_item(TableName=ledger_table, Key={"executionId": {"S": "exec-1"}})["Item"]
    assert int(item["purgeAt"]["N"]) == taken.expires_at + 7 * 86_400
    run_on_sdk_loop(ledger.record_outcome(taken, "gave_up", now + 60_000))
    item = dynamodb.get_item(TableName=ledger_table, Key={"executionId": {"S": "exec-1"}})["Item"]
    assert int(item["purgeAt"]["N"]) == int(item["expiresAt"]["N"]) + 7 * 86_400
    assert int(item["expiresAt"]["N"]) == (now + 60_000) // 1000 + 3_600
    ttl = dynamodb.describe_time_to_live(TableName=ledger_table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "purgeAt"
    assert run_on_sdk_loop(ledger.prune(now, 1000)) == 0  # DynamoDB's TTL does it


def test_a_row_is_pruned_from_the_millisecond_its_expiry_plus_the_retention_has_passed(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    ledger = RawLedger(client, "db", "t", ttl_seconds=86_400, retention_seconds=86_400)
    expires_at = int(time.time()) - 40 * 86_400
    rows = {"expired": {"attempts": 1, "expiresAt": expires_at}, "flagged": {"attempts": 1, "expiresAt": True}}
    client.raw.rows.insert("db", "t", rows, ensure_parent=True)
    emu.age_raw_rows("db", "t", by_ms=60 * DAY_MS)  # RAW wrote them long before: only the expiry decides
    prunable_at = expires_at * 1000 + DAY_MS

    assert run_on_sdk_loop(ledger.prune(prunable_at - 1, max_rows=1000)) == 0
    assert sorted(emu.raw_rows("db", "t")) == ["expired", "flagged"]
    assert run_on_sdk_loop(ledger.prune(prunable_at, max_rows=1000)) == 1
    assert sorted(emu.raw_rows("db", "t")) == ["flagged"]  # an expiry that is not a number is not ours


def test_a_row_raw_wrote_within_the_ttl_plus_retention_less_the_clock_skew_hour_is_kept(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    """However long past its ``expiresAt``: that expiry may come from a clock up to an hour ahead of RAW's."""
    ledger = RawLedger(client, "db", "t", ttl_seconds=86_400, retention_seconds=2 * 86_400)
    client.raw.rows.insert("db", "t", {"exec-1": {"attempts": 1, "expiresAt": 1_000}}, ensure_parent=True)
    written = client.raw.rows.retrieve("db", "t", "exec-1")
    assert written is not None
    assert written.last_updated_time is not None
    listed_from = written.last_updated_time + DAY_MS + 2 * DAY_MS - CLOCK_SKEW_MS

    assert run_on_sdk_loop(ledger.prune(listed_from - 1, max_rows=1000)) == 0
    assert list(emu.raw_rows("db", "t")) == ["exec-1"]
    assert run_on_sdk_loop(ledger.prune(listed_from, max_rows=1000)) == 1
    assert emu.raw_rows("db", "t") == {}


def test_pruning_a_ledger_never_written_deletes_nothing_and_creates_nothing(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    ledger = RawLedger(client, "never-written", "t", ttl_seconds=86_400)

    assert run_on_sdk_loop(ledger.prune(int(time.time() * 1000), max_rows=1000)) == 0
    assert emu.requests_matching("POST", r"/raw/") == []


def test_a_refused_prune_names_what_failed(emu: CdfEmulator, client: CogniteClient) -> None:
    client.raw.rows.insert("db", "t", {"exec-1": {"attempts": 1, "expiresAt": 1_000}}, ensure_parent=True)
    emu.age_raw_rows("db", "t", by_ms=60 * DAY_MS)
    emu.add_fault(Fault(method="POST", path_regex=r"/rows/delete$", statuses=[403] * 10))
    ledger = RawLedger(client, "db", "t", ttl_seconds=86_400, retention_seconds=86_400)

    with pytest.raises(LedgerError) as caught:
        run_on_sdk_loop(ledger.prune(int(time.time() * 1000), max_rows=1000))

    assert str(caught.value).startswith("pruning the RAW attempt ledger failed (403: ")
    assert (caught.value.code, caught.value.retryable) == (403, False)
    assert list(emu.raw_rows("db", "t")) == ["exec-1"]
