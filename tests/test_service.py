"""The attempt count around a retry that did not happen, end to end: ``handle`` against the emulator, RAW ledger.

An attempt is counted before the retry request goes out (a crash must still count it). When CDF
certainly did not act on it (no session, a 4xx refusal, throttled), the attempt is given back: what the
ledger holds afterwards, and what the next call decides from it, is what these tests look at.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
RETRY_PATH = r"/workflows/executions/[^/]+/retry$"

pytestmark = pytest.mark.usefixtures("fast_env")


@pytest.fixture(autouse=True)
def _no_cooldown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_COOLDOWN_SECONDS", "0")
    monkeypatch.setenv("RETRY_COOLDOWN_MAX_SECONDS", "0")


def only(result: dict[str, Any]) -> dict[str, Any]:
    [item] = result["results"]
    return dict(item)


def ledger_row(emu: CdfEmulator, execution_id: str) -> dict[str, Any] | None:
    return emu.raw_rows("workflow_retry", "attempts").get(execution_id)


# (path, statuses, retryable); a Fault is built per test, as it consumes its statuses.
REFUSALS = [
    pytest.param(r"/sessions$", [403], False, id="session-refused"),
    pytest.param(r"/sessions$", [503] * 50, True, id="session-unavailable"),
    pytest.param(RETRY_PATH, [400], False, id="retry-refused"),
    pytest.param(RETRY_PATH, [429] * 50, True, id="retry-throttled"),
]


@pytest.mark.parametrize(("path", "statuses", "retryable"), REFUSALS)
def test_a_first_attempt_that_did_not_happen_is_given_back(
    emu: CdfEmulator, client: CogniteClient, path: str, statuses: list[int], retryable: bool
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=path, statuses=list(statuses)))

    refused = only(handler.handle({"executionId": failed}, client, SECRETS))

    assert (refused["outcome"], refused["error"]["retryable"], refused["attempts"]) == ("failed", retryable, 0)
    assert ledger_row(emu, failed) is None
    assert emu.retry_count(failed) == 0
    emu.clear_faults()
    retried = only(handler.handle({"executionId": failed}, client, SECRETS))
    assert (retried["outcome"], retried["attempts"]) == ("retried", 1)
    assert "(attempt 1 of 3)" in retried["reason"]


@pytest.mark.parametrize(("path", "statuses", "retryable"), REFUSALS)
def test_a_later_attempt_that_did_not_happen_leaves_the_earlier_count(
    emu: CdfEmulator,
    client: CogniteClient,
    path: str,
    statuses: list[int],
    retryable: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RETRY_MAX_ATTEMPTS", "2")
    emu.auto_fail_after_retry = True  # the first retry fails again at once
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    first = only(handler.handle({"executionId": failed}, client, SECRETS))
    assert (first["outcome"], first["attempts"]) == ("retried", 1)
    row_after_first = ledger_row(emu, failed)
    time.sleep(0.002)  # the next failure ends after the first attempt's time
    emu.add_fault(Fault(method="POST", path_regex=path, statuses=list(statuses)))

    refused = only(handler.handle({"executionId": failed}, client, SECRETS))

    assert (refused["outcome"], refused["error"]["retryable"], refused["attempts"]) == ("failed", retryable, 1)
    assert ledger_row(emu, failed) == row_after_first
    emu.clear_faults()
    second = only(handler.handle({"executionId": failed}, client, SECRETS))
    assert (second["outcome"], second["attempts"]) == ("retried", 2)  # the cap still has room for it
    assert emu.retry_count(failed) == 2


# --- a batch: the ledger read ahead beside the executions' reads -------------------------------------------

ROWS_LIST = r"/raw/dbs/[^/]+/tables/[^/]+/rows$"
BATCH = 20  # enough IDs for the ledger to be read ahead (RawLedger reads fewer one by one)


def _at_the_cap(client: CogniteClient, execution_id: str) -> None:
    now = int(time.time() * 1000)
    columns = {"workflowExternalId": "wf", "attempts": 3, "lastAttemptAt": now - 3_600_000}
    row = {**columns, "lastOutcome": "retried", "expiresAt": now // 1000 + 86_400}
    client.raw.rows.insert("workflow_retry", "attempts", {execution_id: row}, ensure_parent=True)


def test_a_batch_creates_no_session_for_an_execution_it_skips(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(BATCH)]
    running = [emu.seed_execution("wf", "1", "RUNNING")["id"] for _ in range(3)]
    for execution_id in failed[:4]:
        _at_the_cap(client, execution_id)
    emu.add_fault(Fault(method="GET", path_regex=ROWS_LIST, latency=0.3, times=1))  # executions read first
    emu.clear_requests()

    result = handler.handle({"executionIds": failed + running}, client, SECRETS)

    outcomes = {item["executionId"]: item["outcome"] for item in result["results"]}
    assert [outcomes[i] for i in failed[:4]] == ["exhausted"] * 4  # decided on the records read ahead
    assert [outcomes[i] for i in running] == ["skipped"] * 3
    assert [outcomes[i] for i in failed[4:]] == ["retried"] * (BATCH - 4)
    assert len(emu.requests_matching("POST", r"/sessions$")) == BATCH - 4
    assert len(emu.requests_matching("GET", ROWS_LIST)) == 1
    single_reads = {r.path.rsplit("/", 1)[-1] for r in emu.requests_matching("GET", r"/rows/[^/]+$")}
    assert single_reads == set(failed[:4])  # only the rows the listing found, read whole before a write


def test_a_batch_reads_its_executions_while_the_ledger_is_listed(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(BATCH)]
    emu.add_fault(Fault(method="GET", path_regex=ROWS_LIST, latency=0.5, times=1))
    emu.clear_requests()

    handler.handle({"executionIds": failed}, client, SECRETS)

    (listing,) = emu.requests_matching("GET", ROWS_LIST)
    first_read = min(r.time for r in emu.requests_matching("GET", r"/workflows/executions/[^/]+$"))
    assert first_read < listing.time + 0.5  # sent before the listing answered (read ahead first, it could not be)
    first_session = min(r.time for r in emu.requests_matching("POST", r"/sessions$"))
    assert first_session >= listing.time + 0.5  # but nothing was decided before it answered


def test_in_a_batch_each_attempt_is_written_before_its_retry_request_is_sent(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    failed = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(BATCH)]
    emu.add_fault(Fault(method="POST", path_regex=ROWS_LIST, latency=0.3))  # inserts answer after the sessions
    emu.clear_requests()

    result = handler.handle({"executionIds": failed}, client, SECRETS)

    assert {item["outcome"] for item in result["results"]} == {"retried"}
    written_at = {
        row["key"]: insert.time + 0.3
        for insert in emu.requests_matching("POST", ROWS_LIST)
        for row in insert.body["items"]
    }
    retried_at = {r.path.split("/")[-2]: r.time for r in emu.requests_matching("POST", r"/retry$")}
    assert sorted(retried_at) == sorted(failed)
    assert all(retried_at[i] >= written_at[i] for i in failed)


def test_an_execution_cdf_does_not_know_is_answered_without_waiting_for_its_ledger_row(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    unknown = "059edaa4-a17a-4102-910e-2c3591500cce"
    # The row read hangs past the request timeout (5 s in these tests): once the execution's read has
    # answered "not found", nothing the row could say changes the result.
    emu.add_fault(Fault(method="GET", path_regex=r"/rows/[^/]+$", latency=30))

    started = time.monotonic()
    result = only(handler.handle({"executionId": unknown}, client, SECRETS))

    assert result["outcome"] == "not_found"
    assert time.monotonic() - started < 4  # not the row read's 5 s timeout
    assert emu.requests_matching("POST", r"/sessions$") == []
