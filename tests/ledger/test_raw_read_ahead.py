"""A batch reads its ledger records by listing the rows written within the TTL, not one request per ID."""

from __future__ import annotations

import itertools
import time

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry.cdf import SdkCdfGateway, run_on_sdk_loop
from workflow_retry.errors import LedgerError
from workflow_retry.ids import ExecutionId
from workflow_retry.ledger import READ_AHEAD_FRESH_MS, AttemptRecord, LedgerSnapshot
from workflow_retry.ledger import raw as raw_ledger
from workflow_retry.ledger.raw import CLOCK_SKEW_MS, READ_AHEAD_MIN_IDS, RawLedger
from workflow_retry.models import Outcome
from workflow_retry.payloads import parse_payload
from workflow_retry.service import ReadAhead, RetryContext, retry_executions
from workflow_retry.settings import Settings

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
TTL = 86_400
LIST = r"/raw/dbs/[^/]+/tables/[^/]+/rows$"
ONE_ROW = r"/raw/dbs/[^/]+/tables/[^/]+/rows/[^/]+$"

pytestmark = pytest.mark.usefixtures("fast_env")


def _now() -> int:
    return int(time.time() * 1000)


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {outcome: n for outcome, n in counts.items() if n}


def _take(ledger: RawLedger, ids: list[str], now: int, times: int = 1) -> None:
    for execution_id in ids:
        record: AttemptRecord | None = None
        for _ in range(times):
            record = run_on_sdk_loop(ledger.take_attempt(record, execution_id, "wf", now))


def test_read_many_lists_the_keys_once_and_tells_which_ids_have_a_row(emu: CdfEmulator, client: CogniteClient) -> None:
    ledger = RawLedger(client, "db", "t", TTL)
    now = _now()
    _take(ledger, ["a", "b"], now, times=2)
    _take(ledger, ["not-asked"], now)
    run_on_sdk_loop(RawLedger(client, "db", "t", ttl_seconds=1).take_attempt(None, "expired", "wf", now - 5_000))
    client.raw.rows.insert("db", "t", {"foreign": {"note": "a row the ledger did not write"}})
    wanted = ["a", "b", "expired", "foreign"] + [f"new-{i}" for i in range(READ_AHEAD_MIN_IDS)]
    emu.clear_requests()

    found = run_on_sdk_loop(ledger.read_many(wanted, now))

    assert found == frozenset({"a", "b", "expired", "foreign"})
    assert len(emu.requests_matching("GET", LIST)) == 1
    assert emu.requests_matching("GET", ONE_ROW) == []
    # A listed row is read alone before a decision: that read tells the live records from the others.
    assert run_on_sdk_loop(ledger.get("a", now)) is not None
    assert run_on_sdk_loop(ledger.get("expired", now)) is None
    assert run_on_sdk_loop(ledger.get("foreign", now)) is None


def test_read_many_lists_the_keys_only(emu: CdfEmulator, client: CogniteClient) -> None:
    ledger = RawLedger(client, "db", "t", TTL)
    now = _now()
    _take(ledger, ["a"], now)
    bulky = {"history": [{"at": now, "note": "x" * 200}] * 20}  # what a listing of whole rows would carry
    client.raw.rows.insert("db", "t", {"a": {**emu.raw_rows("db", "t")["a"], **bulky}})
    emu.clear_requests()

    found = run_on_sdk_loop(ledger.read_many(["a"] + [f"e-{i}" for i in range(READ_AHEAD_MIN_IDS)], now))

    assert found == frozenset({"a"})
    (listing,) = emu.requests_matching("GET", LIST)
    assert listing.query["columns"] == [","]  # RAW's "keys only"


def test_read_many_parses_one_bounded_page_at_a_time(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(raw_ledger, "LIST_PAGE_KEYS", 4)
    ledger = RawLedger(client, "db", "t", TTL)
    now = _now()
    _take(ledger, [f"old-{i}" for i in range(10)], now)
    ids = ["old-9"] + [f"e-{i}" for i in range(3 * raw_ledger.READ_AHEAD_IDS_PER_PAGE)]  # worth three pages
    emu.clear_requests()

    found = run_on_sdk_loop(ledger.read_many(ids, now))

    assert found == frozenset({"old-9"})
    pages = emu.requests_matching("GET", LIST)
    assert [page.query["limit"] for page in pages] == [["4"]] * 3


def test_a_few_ids_are_left_to_single_reads(emu: CdfEmulator, client: CogniteClient) -> None:
    ledger = RawLedger(client, "db", "t", TTL)
    emu.clear_requests()

    assert run_on_sdk_loop(ledger.read_many([f"e-{i}" for i in range(READ_AHEAD_MIN_IDS - 1)], _now())) is None
    assert emu.requests_matching("GET") == []


def test_a_ledger_that_does_not_exist_yet_holds_no_records(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = [f"e-{i}" for i in range(READ_AHEAD_MIN_IDS)]

    assert run_on_sdk_loop(RawLedger(client, "no_db", "no_table", TTL).read_many(ids, _now())) == frozenset()


def test_a_listing_longer_than_the_batch_is_worth_gives_way_to_single_reads(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(raw_ledger, "LIST_PAGE_KEYS", 5)
    ledger = RawLedger(client, "db", "t", TTL)
    now = _now()
    _take(ledger, [f"old-{i}" for i in range(12)], now)
    ids = [f"e-{i}" for i in range(READ_AHEAD_MIN_IDS)]  # worth one page; the rows fill three
    emu.clear_requests()

    assert run_on_sdk_loop(ledger.read_many(ids, now)) is None
    assert len(emu.requests_matching("GET", LIST)) == 1

    monkeypatch.setattr(raw_ledger, "READ_AHEAD_IDS_PER_PAGE", 5)  # now three pages are worth it
    found = run_on_sdk_loop(ledger.read_many([*ids, "old-11"], now))
    assert found == frozenset({"old-11"})


def test_a_lowered_ttl_applies_at_once_to_single_and_bulk_reads(emu: CdfEmulator, client: CogniteClient) -> None:
    now = _now()
    _take(RawLedger(client, "db", "t", ttl_seconds=30 * 86_400), ["long-lived"], now)  # expiresAt in 30 days
    short = RawLedger(client, "db", "t", ttl_seconds=3_600)
    later = now + 3_600_000 + CLOCK_SKEW_MS + 60_000  # past the lowered TTL (and the clock slack) since the write
    ids = ["long-lived"] + [f"e-{i}" for i in range(READ_AHEAD_MIN_IDS)]

    assert run_on_sdk_loop(short.get("long-lived", now)) is not None
    assert run_on_sdk_loop(short.get("long-lived", later)) is None
    assert run_on_sdk_loop(short.read_many(ids, later)) == frozenset()
    assert run_on_sdk_loop(short.read_many(ids, now)) == frozenset({"long-lived"})


def test_a_failed_listing_is_a_ledger_error(emu: CdfEmulator, client: CogniteClient) -> None:
    emu.add_fault(Fault(method="GET", path_regex=LIST, statuses=[403]))

    with pytest.raises(LedgerError, match="reading the RAW attempt ledger failed"):
        run_on_sdk_loop(RawLedger(client, "db", "t", TTL).read_many([f"e-{i}" for i in range(20)], _now()))


def test_a_snapshot_answers_only_for_its_ids_and_only_while_fresh() -> None:
    snapshot = LedgerSnapshot(frozenset(), frozenset({"a"}), read_at_ms=1_000)

    assert snapshot.knows("a", 1_000 + READ_AHEAD_FRESH_MS)
    assert not snapshot.knows("a", 1_001 + READ_AHEAD_FRESH_MS)
    assert not snapshot.knows("b", 1_000)


# --- through handle: what a user of a batch sees -------------------------------------------------------


def test_a_batch_reads_the_ledger_once_and_still_honours_each_record(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = emu.seed_many(30, workflow_external_id="wf")
    capped, cooling = ids[0], ids[1]
    ledger = RawLedger(client, "workflow_retry", "attempts", 168 * 3600)
    _take(ledger, [capped], _now() - 7_200_000, times=3)  # the default cap: 3 attempts
    _take(ledger, [cooling], _now() - 1_000)  # attempt 1 a second ago: cooling down
    emu.clear_requests()

    result = handler.handle({"executionIds": ids}, client, SECRETS)

    outcomes = {r["executionId"]: r["outcome"] for r in result["results"]}
    assert outcomes[capped] == "exhausted"
    assert outcomes[cooling] == "deferred"
    assert [outcomes[i] for i in ids[2:]] == ["retried"] * 28
    assert len(emu.requests_matching("GET", LIST)) == 1
    # Only the rows the listing found are read alone (whole, with their history); the other 28 IDs are not.
    assert sorted(r.path.rsplit("/", 1)[-1] for r in emu.requests_matching("GET", ONE_ROW)) == sorted([capped, cooling])
    assert [emu.retry_count(i) for i in ids] == [0, 0] + [1] * 28


def test_when_the_bulk_read_fails_each_id_reads_its_own_record(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = emu.seed_many(20, workflow_external_id="wf")
    ledger = RawLedger(client, "workflow_retry", "attempts", 168 * 3600)
    _take(ledger, [ids[0]], _now() - 7_200_000, times=3)
    emu.add_fault(Fault(method="GET", path_regex=LIST, statuses=[500] * 10))
    emu.clear_requests()

    result = handler.handle({"executionIds": ids}, client, SECRETS)

    assert _nonzero(result["counts"]) == {"exhausted": 1, "retried": 19}
    assert len(emu.requests_matching("GET", ONE_ROW)) == 20


def test_records_read_ahead_are_read_again_in_bulk_once_stale(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = emu.seed_many(20, workflow_external_id="wf")
    capped = ids[0]
    ledger = RawLedger(client, "workflow_retry", "attempts", 168 * 3600)
    _take(ledger, [capped], _now() - 7_200_000, times=3)  # the default cap: 3 attempts
    settings = Settings()
    start, ticks = _now(), itertools.count()
    # Each reading of the clock is a minute later: the records listed first are stale when any ID's turn comes.
    context = RetryContext(ledger=ledger, clock=lambda: start + 60_000 * next(ticks))
    emu.clear_requests()

    report = run_on_sdk_loop(
        retry_executions(parse_payload({"executionIds": ids}), SdkCdfGateway(client, None), settings, context)
    )

    assert [r.outcome for r in report.results] == [Outcome.EXHAUSTED] + [Outcome.RETRIED] * 19
    # One listing more for all of them, not a row read per ID; the row the listing found is read whole.
    assert len(emu.requests_matching("GET", LIST)) == 2
    assert [r.path.rsplit("/", 1)[-1] for r in emu.requests_matching("GET", ONE_ROW)] == [capped]


def test_a_stale_read_ahead_is_read_again_only_for_the_ids_not_yet_served(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    ledger = RawLedger(client, "db", "t", TTL)
    ids = [ExecutionId(f"exec-{i:02d}") for i in range(2 * READ_AHEAD_MIN_IDS - 2)]
    served_while_fresh = ids[:READ_AHEAD_MIN_IDS]  # the other 14 are too few for a bulk read of their own
    start = _now()
    emu.clear_requests()

    async def serve() -> tuple[list[LedgerSnapshot | None], LedgerSnapshot | None]:
        read_ahead = ReadAhead(ids, RetryContext(ledger=ledger, clock=lambda: start))
        try:
            fresh = [await read_ahead.snapshot_for(i, start) for i in served_while_fresh]
            return fresh, await read_ahead.snapshot_for(ids[-1], start + READ_AHEAD_FRESH_MS + 1)
        finally:
            read_ahead.close()

    fresh, late = run_on_sdk_loop(serve())

    assert None not in fresh
    assert late is None  # each of the 14 left reads its own record
    assert len(emu.requests_matching("GET", LIST)) == 1


def test_a_slow_listing_does_not_hold_up_the_executions_reads_nor_the_concurrency_bound(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    """While the listing is out, the slots of the executions already read read the next ones (lent, taken back),
    until twice as many wait with their slot lent as there are slots: so much is read ahead, no more."""
    ids = emu.seed_many(24, workflow_external_id="wf")
    ledger = RawLedger(client, "workflow_retry", "attempts", 168 * 3600)
    _take(ledger, ["another-execution"], _now())  # the table exists: the listing reads it
    emu.add_fault(Fault(method="GET", path_regex=LIST, latency=1.0))
    emu.add_fault(Fault(method="GET", path_regex=r"/workflows/executions/[^/]+$", latency=0.1))
    emu.add_fault(Fault(method="POST", path_regex=r"/sessions$", latency=0.1))
    settings = Settings(concurrency=4)
    emu.clear_requests()

    report = run_on_sdk_loop(
        retry_executions(
            parse_payload({"executionIds": ids}), SdkCdfGateway(client, None), settings, RetryContext(ledger=ledger)
        )
    )

    assert [r.outcome for r in report.results] == [Outcome.RETRIED] * 24
    [listing] = emu.requests_matching("GET", LIST)
    reads = emu.requests_matching("GET", r"/workflows/executions/[^/]+$")
    # 4 at a time, 0.1 s each: 12 reads (4 holding their slots, 8 waiting with theirs lent) take 0.3 s,
    # before the 1 s listing answers; the other 12 wait for it.
    assert len(reads) == 24
    assert sum(r.time < listing.time + 1.0 for r in reads) == 3 * settings.concurrency
    assert emu.max_in_flight <= settings.concurrency + 1  # the executions' requests, and the listing
