"""Edges of the RAW ledger and of choosing a ledger: exact expiry, rows edited by hand, the words of each failure.

Each test pins a behaviour that a small change to ``workflow_retry/ledger/`` would alter unseen by the
broader ledger tests (found by mutation testing, docs/reliability.md).
"""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from cognite.client import CogniteClient

from emulator import CdfEmulator, Fault
from tests.support.silent import SilentServer
from workflow_retry.cdf import run_on_sdk_loop
from workflow_retry.errors import ConfigurationError, LedgerError
from workflow_retry.ledger import AttemptEntry, NoLedger, build_ledger
from workflow_retry.ledger.raw import RawLedger
from workflow_retry.settings import Settings

TTL = 7 * 86_400

pytestmark = pytest.mark.usefixtures("fast_env")


def test_a_raw_record_is_live_until_the_second_it_expires(emu: CdfEmulator, client: CogniteClient) -> None:
    ledger = RawLedger(client, "db", "edges", TTL)
    now = int(time.time() * 1000)
    taken = run_on_sdk_loop(ledger.take_attempt(None, "exec-edge", "wf", now))
    expires_ms = taken.expires_at * 1000

    assert run_on_sdk_loop(ledger.get("exec-edge", expires_ms - 1)) == taken
    assert run_on_sdk_loop(ledger.get("exec-edge", expires_ms)) is None


@pytest.mark.parametrize(
    "columns",
    [
        {"attempts": "three", "expiresAt": 4_000_000_000},
        {"attempts": 2, "expiresAt": "never"},
        {"attempts": 2},
    ],
    ids=["attempts-not-a-number", "expiry-not-a-number", "no-expiry"],
)
def test_a_row_whose_count_or_expiry_is_not_a_number_is_no_record(
    emu: CdfEmulator, client: CogniteClient, columns: dict[str, Any]
) -> None:
    client.raw.rows.insert("db", "edited", {"exec-edited": columns}, ensure_parent=True)

    assert run_on_sdk_loop(RawLedger(client, "db", "edited", TTL).get("exec-edited", 0)) is None


def test_columns_of_the_wrong_type_in_a_counted_row_are_left_out_not_trusted(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    edited = {"attempts": 2, "expiresAt": 4_000_000_000, "workflowExternalId": 7, "lastAttemptAt": "noon"}
    edited["lastOutcome"] = ["gave_up"]
    client.raw.rows.insert("db", "edited", {"exec-typed": edited}, ensure_parent=True)

    record = run_on_sdk_loop(RawLedger(client, "db", "edited", TTL).get("exec-typed", 0))

    assert record is not None
    assert (record.attempts, record.workflow_external_id, record.last_attempt_at, record.last_outcome) == (
        2,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_a_refused_write_or_release_names_what_failed(emu: CdfEmulator, client: CogniteClient, method: str) -> None:
    ledger = RawLedger(client, "db", "refused", TTL)
    now = int(time.time() * 1000)
    first = run_on_sdk_loop(ledger.take_attempt(None, "exec-refused", "wf", now))
    second = run_on_sdk_loop(ledger.take_attempt(first, "exec-refused", "wf", now + 1))
    emu.add_fault(Fault(method="POST", path_regex=r"/raw/dbs/.*/rows", statuses=[403] * 10))

    with pytest.raises(LedgerError) as writing:
        run_on_sdk_loop(ledger.take_attempt(second, "exec-refused", "wf", now + 2))
    with pytest.raises(LedgerError) as releasing:
        run_on_sdk_loop(ledger.release_attempt(first, None))  # deletes the row: a POST to rows/delete

    for error in (writing.value, releasing.value):
        assert str(error).startswith("writing the RAW attempt ledger failed (403: ")
        assert (error.code, error.retryable) == (403, False)


# -- choosing a ledger ----------------------------------------------------------------------------------


def settings(**values: Any) -> Settings:
    return Settings.model_validate(values)


def test_each_ledger_that_cannot_be_made_says_which_setting_is_missing(client: CogniteClient) -> None:
    with pytest.raises(ConfigurationError) as raw_without_client:
        build_ledger(settings(ledger="raw"), None)
    with pytest.raises(ConfigurationError) as dynamodb_without_table:
        build_ledger(settings(ledger="dynamodb"), client)
    with pytest.raises(ConfigurationError) as nothing:
        build_ledger(settings(), None)

    assert str(raw_without_client.value) == "RETRY_LEDGER=raw needs a CDF client"
    assert str(dynamodb_without_table.value) == (
        "RETRY_LEDGER=dynamodb needs RETRY_LEDGER_TABLE (the DynamoDB table name)"
    )
    assert str(nothing.value) == "no attempt ledger: set RETRY_LEDGER to raw, dynamodb or none"


def test_none_is_chosen_only_by_name_and_raw_is_the_default_with_a_client(client: CogniteClient) -> None:
    assert isinstance(build_ledger(settings(ledger="none"), client), NoLedger)
    assert isinstance(build_ledger(settings(), client), RawLedger)


def test_a_database_and_table_named_with_slashes_are_one_path_segment_each(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    ledger = RawLedger(client, "team/ledgers", "retry/attempts", TTL)
    now = int(time.time() * 1000)

    taken = run_on_sdk_loop(ledger.take_attempt(None, "exec-slash", "wf", now))

    assert run_on_sdk_loop(ledger.get("exec-slash", now)) == taken
    assert list(emu.raw_rows("team/ledgers", "retry/attempts")) == ["exec-slash"]


def test_the_raw_ledger_counts_for_the_hours_set_and_keeps_rows_for_the_days_set(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    ledger = build_ledger(settings(ledger="raw", ledger_ttl_hours=2, ledger_retention_days=1), client)
    now = int(time.time() * 1000)

    taken = run_on_sdk_loop(ledger.take_attempt(None, "exec-ttl", "wf", now))

    assert taken is not None
    assert taken.expires_at == now // 1000 + 2 * 3600
    # Pruned once its expiry plus the one day set has passed (the default keeps rows 30 days).
    day_after_expiry = taken.expires_at * 1000 + 86_400_000
    assert run_on_sdk_loop(ledger.prune(day_after_expiry - 1, max_rows=10)) == 0
    assert run_on_sdk_loop(ledger.prune(day_after_expiry, max_rows=10)) == 1


def test_a_dynamodb_ledger_from_settings_counts_for_the_hours_set_and_keeps_the_calls_deadline(
    ledger_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = settings(
        ledger="dynamodb",
        ledger_table=ledger_table,
        ledger_ttl_hours=2,
        ledger_retention_days=3,
        deadline_seconds=1.5,
        request_timeout_seconds=1,
    )
    now = int(time.time() * 1000)
    taken = run_on_sdk_loop(build_ledger(chosen, None).take_attempt(None, "exec-ttl", "wf", now))
    assert taken is not None
    assert taken.expires_at == now // 1000 + 2 * 3600
    # DynamoDB deletes the item (its TTL attribute) after the retention set, not the default.
    item = boto3.client("dynamodb").get_item(TableName=ledger_table, Key={"executionId": {"S": "exec-ttl"}})["Item"]
    assert int(item["purgeAt"]["N"]) == taken.expires_at + 3 * 86_400

    with SilentServer() as silent:
        monkeypatch.setenv("AWS_ENDPOINT_URL", silent.url)  # put back after the test: moto's, for the next
        hanging = build_ledger(chosen, None)
        started = time.monotonic()
        with pytest.raises(LedgerError):
            run_on_sdk_loop(hanging.get("exec-ttl", now))
        assert time.monotonic() - started < 1.5


def test_a_history_edited_by_hand_keeps_only_its_entries_and_never_guesses(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    history = [
        {"at": 1_000, "outcome": "retried", "engineExecutionId": "run-1", "reason": "x" * 400},
        {"at": 2_000.0, "outcome": "failed_again", "engineExecutionId": 7},
        {"at": True, "outcome": "retried"},
        {"at": "noon", "outcome": "retried"},
        {"at": 3_000, "outcome": 5},
        {"outcome": "retried"},
        "retried",
    ]
    columns = {"attempts": 2, "expiresAt": 4_000_000_000, "history": history}
    client.raw.rows.insert("db", "edited", {"exec-history": columns}, ensure_parent=True)

    record = run_on_sdk_loop(RawLedger(client, "db", "edited", TTL).get("exec-history", 0))

    assert record is not None
    assert record.history == (
        AttemptEntry(at=1_000, outcome="retried", engine_execution_id="run-1", reason="x" * 300),
        AttemptEntry(at=2_000, outcome="failed_again", engine_execution_id=None, reason=None),
    )


@pytest.mark.parametrize("history", ["[{", '{"at": 1, "outcome": "retried"}', 42], ids=["broken", "object", "number"])
def test_a_history_that_is_not_a_list_of_entries_is_an_empty_history(
    emu: CdfEmulator, client: CogniteClient, history: object
) -> None:
    columns = {"attempts": 2, "expiresAt": 4_000_000_000, "history": history}
    client.raw.rows.insert("db", "edited", {"exec-history": columns}, ensure_parent=True)

    record = run_on_sdk_loop(RawLedger(client, "db", "edited", TTL).get("exec-history", 0))

    assert record is not None
    assert (record.attempts, record.history) == (2, ())
