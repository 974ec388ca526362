"""The RAW ledger through cognite-sdk's ``client.raw`` against the emulator's RAW endpoints."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET, make_client
from workflow_retry.cdf import run_on_sdk_loop
from workflow_retry.errors import LedgerError
from workflow_retry.ledger import AttemptRecord
from workflow_retry.ledger.raw import CLOCK_SKEW_MS, READ_AHEAD_MIN_IDS, RawLedger

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
TTL = 7 * 86_400

pytestmark = pytest.mark.usefixtures("fast_env")


def test_the_database_and_table_are_created_on_first_write(emu: CdfEmulator, client: CogniteClient) -> None:
    ledger = RawLedger(client, "my_ledger_db", "my_attempts", TTL)
    now = int(time.time() * 1000)

    assert run_on_sdk_loop(ledger.get("exec-1", now)) is None  # neither database nor table exists yet
    taken = run_on_sdk_loop(ledger.take_attempt(None, "exec-1", "wf", now))

    assert emu.raw_rows("my_ledger_db", "my_attempts") == {
        "exec-1": {
            "workflowExternalId": "wf",
            "attempts": 1,
            "lastAttemptAt": now,
            "lastOutcome": "retried",
            "expiresAt": now // 1000 + TTL,
            "history": [],
        }
    }
    assert run_on_sdk_loop(ledger.get("exec-1", now + 1)) == taken
    assert taken == AttemptRecord("exec-1", "wf", 1, now, "retried", now // 1000 + TTL)
    [insert] = emu.requests_matching("POST", r"/raw/dbs/my_ledger_db/tables/my_attempts/rows$")
    assert insert.query == {"ensureParent": ["true"]}  # the API's documented spelling of the boolean


def test_an_expired_row_counts_as_none(emu: CdfEmulator, client: CogniteClient) -> None:
    ledger = RawLedger(client, "db", "t", ttl_seconds=1)
    now = int(time.time() * 1000)
    run_on_sdk_loop(ledger.take_attempt(None, "exec-2", "wf", now))

    assert run_on_sdk_loop(ledger.get("exec-2", now + 5_000)) is None


def test_release_restores_the_previous_record_and_a_give_up_is_recorded_once(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    ledger = RawLedger(client, "db", "t", TTL)
    now = int(time.time() * 1000)
    first = run_on_sdk_loop(ledger.take_attempt(None, "exec-3", "wf", now))
    second = run_on_sdk_loop(ledger.take_attempt(first, "exec-3", "wf", now + 1))

    run_on_sdk_loop(ledger.release_attempt(second, first))
    assert run_on_sdk_loop(ledger.get("exec-3", now + 3)) == first
    run_on_sdk_loop(ledger.release_attempt(first, None))
    assert run_on_sdk_loop(ledger.get("exec-3", now + 5)) is None
    record = run_on_sdk_loop(ledger.take_attempt(None, "exec-3", "wf", now + 6))
    assert run_on_sdk_loop(ledger.record_outcome(record, "gave_up", now + 7)) is True
    marked = run_on_sdk_loop(ledger.get("exec-3", now + 8))
    assert marked is not None
    assert run_on_sdk_loop(ledger.record_outcome(marked, "gave_up", now + 9)) is False


def test_rows_not_written_by_the_ledger_are_ignored(emu: CdfEmulator, client: CogniteClient) -> None:
    client.raw.rows.insert("db", "t", {"exec-4": {"note": "hand-written"}}, ensure_parent=True)
    assert run_on_sdk_loop(RawLedger(client, "db", "t", TTL).get("exec-4", 0)) is None


def test_a_missing_raw_capability_fails_the_id_clearly_and_retries_nothing(emu: CdfEmulator) -> None:
    emu.add_client(
        "no-raw",
        "no-raw-secret-value",
        ["workflowOrchestrationACL:READ", "workflowOrchestrationACL:WRITE", "sessionsACL:CREATE"],
    )
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    result = handler.handle({"executionId": failed}, make_client(emu, "no-raw", "no-raw-secret-value"), SECRETS)

    [item] = result["results"]
    assert item["outcome"] == "failed"
    assert item["error"]["code"] == 403
    assert item["error"]["retryable"] is False
    assert "rawACL:READ" in item["reason"]
    assert "not retried, as the attempt could not be counted" in item["reason"]
    assert emu.requests_matching("POST", r"/sessions$|/retry$") == []


def test_a_ledger_write_failing_means_no_retry_and_a_retryable_failure(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=r"/raw/dbs/.*/rows$", statuses=[503] * 20))

    [item] = handler.handle({"executionId": failed}, client, SECRETS)["results"]

    assert item["outcome"] == "failed"
    assert item["error"]["retryable"] is True
    assert emu.retry_count(failed) == 0
    assert emu.requests_matching("POST", r"/retry$") == []


def test_a_ledger_error_never_escapes(emu: CdfEmulator, client: CogniteClient) -> None:
    emu.add_fault(Fault(method="GET", path_regex=r"/raw/", statuses=[500] * 20))
    with pytest.raises(LedgerError, match="500"):
        run_on_sdk_loop(RawLedger(client, "db", "t", TTL).get("exec-5", 0))


def test_concurrent_invocations_under_raw_apply_one_retry_thanks_to_cdfs_status_check(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    """RAW cannot refuse a concurrent writer; CDF refusing to retry a RUNNING execution keeps it to one."""
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    start = threading.Barrier(5)

    def invocation(_: int) -> dict[str, Any]:
        start.wait()
        [item] = handler.handle({"executionId": failed}, client, SECRETS)["results"]
        return dict(item)

    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(invocation, range(5)))

    assert emu.retry_count(failed) == 1
    # One that reads the ledger after the winner counted its attempt is told to wait (deferred).
    assert all(r["outcome"] in ("retried", "skipped", "deferred") for r in results), [r["reason"] for r in results]
    assert [r["outcome"] for r in results].count("retried") == 1
    assert emu.raw_rows("workflow_retry", "attempts")[failed]["attempts"] == 1


# -- what a user sees of RAW's throttling and of clock differences ------------------------------------


@pytest.mark.parametrize(("method", "path"), [("GET", r"/raw/dbs/.*/rows/"), ("POST", r"/raw/dbs/.*/rows$")])
def test_a_throttled_ledger_is_a_retryable_failure_and_nothing_is_retried(
    emu: CdfEmulator, client: CogniteClient, method: str, path: str
) -> None:
    # RAW answering 429 (past the SDK's own retries) is passing: the delivery must come back later.
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method=method, path_regex=path, statuses=[429] * 50))

    [item] = handler.handle({"executionId": failed}, client, SECRETS)["results"]

    assert item["outcome"] == "failed"
    assert (item["error"]["code"], item["error"]["retryable"]) == (429, True)
    assert "not retried, as the attempt could not be counted" in item["reason"]
    assert emu.requests_matching("POST", r"/retry$") == []


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (503, True), (400, False), (403, False)])
def test_ledger_errors_are_retryable_when_raw_is_throttled_or_failing_and_final_when_refused(
    emu: CdfEmulator, client: CogniteClient, status: int, retryable: bool
) -> None:
    emu.add_fault(Fault(method="GET", path_regex=r"/raw/", statuses=[status] * 50))

    with pytest.raises(LedgerError) as raised:
        run_on_sdk_loop(RawLedger(client, "db", "t", TTL).get("exec-6", 0))

    assert (raised.value.code, raised.value.retryable) == (status, retryable)


@pytest.mark.parametrize(
    ("fault", "kind", "retryable"),
    [
        # CDF's 401: the SDK raises its own project-access error, not an API error: final.
        (Fault(method="GET", path_regex=r"/raw/", statuses=[401] * 50), "CogniteProjectAccessError", False),
        # Connections reset past the SDK's own retries: may pass.
        (Fault(method="GET", path_regex=r"/raw/", statuses=[0] * 50, reset=True), "CogniteConnectionError", True),
    ],
)
def test_a_ledger_error_without_an_answer_from_raw_is_named_by_its_kind(
    emu: CdfEmulator, client: CogniteClient, fault: Fault, kind: str, retryable: bool
) -> None:
    emu.add_fault(fault)

    with pytest.raises(LedgerError) as raised:
        run_on_sdk_loop(RawLedger(client, "db", "t", TTL).get("exec-7", 0))

    assert str(raised.value) == f"reading the RAW attempt ledger failed ({kind})"
    assert (raised.value.code, raised.value.retryable) == (None, retryable)


def test_by_raws_clock_a_row_is_live_to_the_millisecond_and_the_bulk_read_asks_only_for_live_rows(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    now = int(time.time() * 1000)
    run_on_sdk_loop(RawLedger(client, "db", "t", 30 * 86_400).take_attempt(None, "exec-8", "wf", now))
    written = client.raw.rows.retrieve("db", "t", "exec-8")
    assert written is not None
    assert written.last_updated_time is not None
    hour_ttl = RawLedger(client, "db", "t", 3_600)
    last_live = written.last_updated_time + 3_600_000 + CLOCK_SKEW_MS - 1

    assert run_on_sdk_loop(hour_ttl.get("exec-8", last_live)) is not None
    assert run_on_sdk_loop(hour_ttl.get("exec-8", last_live + 1)) is None
    emu.clear_requests()
    ids = ["exec-8"] + [f"other-{i}" for i in range(READ_AHEAD_MIN_IDS)]
    found = run_on_sdk_loop(hour_ttl.read_many(ids, last_live))
    assert found is not None
    assert found == frozenset({"exec-8"})
    (listing,) = emu.requests_matching("GET", r"/raw/dbs/db/tables/t/rows$")
    assert listing.query["minLastUpdatedTime"] == [str(last_live - 3_600_000 - CLOCK_SKEW_MS)]


def test_a_row_stays_live_for_an_hour_past_its_ttl_by_raws_clock(emu: CdfEmulator, client: CogniteClient) -> None:
    # RAW's lastUpdatedTime and this machine's clock may differ: the TTL counted from RAW's write time
    # gets an hour of slack, so a clock running ahead never forgets an attempt early.
    now = int(time.time() * 1000)
    run_on_sdk_loop(RawLedger(client, "db", "t", 30 * 86_400).take_attempt(None, "exec-7", "wf", now))
    hour_ttl = RawLedger(client, "db", "t", 3_600)
    ids = ["exec-7"] + [f"other-{i}" for i in range(READ_AHEAD_MIN_IDS)]
    within_slack = now + 3_600_000 + CLOCK_SKEW_MS - 60_000
    past_slack = now + 3_600_000 + CLOCK_SKEW_MS + 60_000

    assert run_on_sdk_loop(hour_ttl.get("exec-7", within_slack)) is not None
    listed = run_on_sdk_loop(hour_ttl.read_many(ids, within_slack))
    assert listed is not None
    assert listed == frozenset({"exec-7"})
    assert run_on_sdk_loop(hour_ttl.get("exec-7", past_slack)) is None
