"""The RAW ledger sends the row writes of concurrent retries together (fewer requests in a batch)."""

from __future__ import annotations

import asyncio
import time

import pytest
from cognite.client import CogniteClient, global_config

import handler
from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry.cdf import SdkCdfGateway, run_on_sdk_loop
from workflow_retry.errors import LedgerError
from workflow_retry.ledger import AttemptRecord
from workflow_retry.ledger import raw as raw_ledger
from workflow_retry.ledger.raw import RawLedger
from workflow_retry.models import Outcome
from workflow_retry.payloads import parse_payload
from workflow_retry.service import RetryContext, retry_executions
from workflow_retry.settings import Settings

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
TTL = 86_400
ROWS = r"/raw/dbs/[^/]+/tables/[^/]+/rows$"

pytestmark = pytest.mark.usefixtures("fast_env")


def test_concurrent_attempts_are_written_in_fewer_requests_and_every_row_lands(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    ledger = RawLedger(client, "db", "t", TTL)
    now = int(time.time() * 1000)
    ids = [f"exec-{i}" for i in range(20)]

    async def take_all() -> list[AttemptRecord | None]:
        return list(await asyncio.gather(*(ledger.take_attempt(None, i, "wf", now) for i in ids)))

    taken = run_on_sdk_loop(take_all())

    assert [r.attempts if r else None for r in taken] == [1] * 20
    assert sorted(emu.raw_rows("db", "t")) == sorted(ids)
    assert len(emu.requests_matching("POST", ROWS)) < len(ids)


def test_a_failed_insert_fails_every_write_it_carried(emu: CdfEmulator, client: CogniteClient) -> None:
    ledger = RawLedger(client, "db", "t", TTL)
    emu.add_fault(Fault(method="POST", path_regex=ROWS, statuses=[403] * 5))

    async def take_two() -> list[object]:
        return list(
            await asyncio.gather(
                ledger.take_attempt(None, "exec-a", "wf", 0),
                ledger.take_attempt(None, "exec-b", "wf", 0),
                return_exceptions=True,
            )
        )

    outcomes = run_on_sdk_loop(take_two())

    assert all(isinstance(o, LedgerError) for o in outcomes), outcomes
    assert emu.raw_rows("db", "t") == {}


def test_a_batch_of_retries_counts_each_attempt_once(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = emu.seed_many(30, workflow_external_id="wf")

    result = handler.handle({"executionIds": ids}, client, SECRETS)

    assert result["counts"]["retried"] == 30
    rows = emu.raw_rows("workflow_retry", "attempts")
    assert {key: row["attempts"] for key, row in rows.items()} == dict.fromkeys(ids, 1)
    assert all(emu.retry_count(i) == 1 for i in ids)
    assert len(emu.requests_matching("POST", ROWS)) < len(ids)


def test_an_execution_waiting_for_its_insert_lends_its_slot(emu: CdfEmulator, client: CogniteClient) -> None:
    """Once its session is made, an execution waiting for the insert that counts its attempt is not sending a
    request of its own: its slot starts the next executions, and its retry still waits for the insert."""
    ids = emu.seed_many(6, workflow_external_id="wf")  # fewer than the read-ahead takes: no listing
    emu.add_fault(Fault(method="POST", path_regex=ROWS, latency=1.5, times=1))  # the first insert is slow
    settings = Settings(concurrency=2)
    ledger = RawLedger(client, "workflow_retry", "attempts", TTL)

    report = run_on_sdk_loop(
        retry_executions(
            parse_payload({"executionIds": ids}), SdkCdfGateway(client, None), settings, RetryContext(ledger=ledger)
        )
    )

    assert [r.outcome for r in report.results] == [Outcome.RETRIED] * 6
    [slow, *_] = emu.requests_matching("POST", ROWS)
    slow_rows = {item["key"] for item in slow.body["items"]}
    retries = {r.path.rsplit("/", 2)[-2]: r.time for r in emu.requests_matching("POST", r"/retry$")}
    # The retries counted by the slow insert went out after it answered; the others before it did.
    assert slow_rows
    assert all(retries[i] >= slow.time + 1.5 for i in slow_rows)
    assert all(retries[i] < slow.time + 1.5 for i in set(ids) - slow_rows)
    assert len(slow_rows) < len(ids)
    assert emu.max_in_flight <= settings.concurrency + 2  # the executions' requests, and two inserts


def _take_spaced(ledger: RawLedger, ids: list[str], gap_seconds: float) -> None:
    """Take an attempt for each ID, ``gap_seconds`` apart (as retries of a throttled batch come, spread out).

    Each write is due at a time fixed up front, so however late the loop runs them they keep their order
    against the ledger's batching window (asyncio runs timers in the order of their deadlines).
    """

    async def take_all() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def take_at(i: int, execution_id: str) -> None:
            await asyncio.sleep(start + i * gap_seconds - loop.time())
            await ledger.take_attempt(None, execution_id, "wf", 0)

        await asyncio.gather(*(take_at(i, execution_id) for i, execution_id in enumerate(ids)))

    run_on_sdk_loop(take_all())


def _take_each_after_the_last(ledger: RawLedger, ids: list[str], gap_seconds: float) -> None:
    """Take an attempt for each ID, each ``gap_seconds`` after the previous one was handed to the ledger.

    Counted from each write, not from the start: a loaded machine that runs a write late then delays the
    next one as much, so only a stall between handing a row over and its batch opening (no I/O in
    between) could make two writes meet in one window.
    """

    async def take_all() -> None:
        writes = []
        for execution_id in ids:
            writes.append(asyncio.ensure_future(ledger.take_attempt(None, execution_id, "wf", 0)))
            await asyncio.sleep(gap_seconds)
        await asyncio.gather(*writes)

    run_on_sdk_loop(take_all())


@pytest.fixture
def never_slow(client: CogniteClient, monkeypatch: pytest.MonkeyPatch) -> RawLedger:
    """A ledger with one row written, whose inserts never count as slow: only a 429 may open the long window.

    (A loaded test machine can make an insert slow enough to look throttled.)
    """
    monkeypatch.setattr(raw_ledger, "SLOW_INSERT_SECONDS", 3600.0)
    ledger = RawLedger(client, "db", "t", TTL)
    _take_spaced(ledger, ["warm"], 0)
    return ledger


def test_without_throttling_a_row_waits_only_the_short_window(emu: CdfEmulator, never_slow: RawLedger) -> None:
    ledger = never_slow
    emu.clear_requests()

    # 0.1 s apart: far more than the short window (2 ms), far less than the throttled one (0.5 s).
    _take_each_after_the_last(ledger, [f"exec-{i}" for i in range(4)], gap_seconds=0.1)

    assert len(emu.requests_matching("POST", ROWS)) == 4  # none waited for the next: the retry is not held up


def test_no_more_than_two_inserts_are_out_at_once_and_rows_written_meanwhile_go_together(
    emu: CdfEmulator, never_slow: RawLedger
) -> None:
    ledger = never_slow
    emu.clear_requests()
    emu.add_fault(Fault(method="POST", path_regex=ROWS, latency=0.3))  # every insert takes 0.3 s
    ids = [f"exec-{i}" for i in range(8)]

    # 50 ms apart: each row past the short window (2 ms), six of them while two inserts are out.
    _take_each_after_the_last(ledger, ids, gap_seconds=0.05)

    inserts = emu.requests_matching("POST", ROWS)
    assert sorted(k for k in emu.raw_rows("db", "t") if k != "warm") == ids  # every row landed
    assert len(inserts) <= 5  # two alone, then the rest in at most three (eight without the bound)
    # An insert is out from its arrival for its 0.3 s: never a third beside two.
    arrivals = sorted(r.time for r in inserts)
    assert all(sum(1 for a in arrivals if a <= t < a + 0.3) <= 2 for t in arrivals)


def test_an_insert_refused_for_another_reason_than_throttling_holds_no_later_row(
    emu: CdfEmulator, never_slow: RawLedger
) -> None:
    ledger = never_slow
    emu.add_fault(Fault(method="POST", path_regex=ROWS, statuses=[400]))
    with pytest.raises(LedgerError, match="400"):
        _take_spaced(ledger, ["refused"], 0)
    emu.clear_requests()

    _take_each_after_the_last(ledger, [f"exec-{i}" for i in range(4)], gap_seconds=0.1)

    assert len(emu.requests_matching("POST", ROWS)) == 4


def test_after_a_throttled_insert_rows_spread_out_in_time_stay_batched(emu: CdfEmulator, client: CogniteClient) -> None:
    ledger = RawLedger(client, "db", "t", TTL)
    started = time.monotonic()
    _take_spaced(ledger, ["warm"], 0)  # the fastest insert: what an unthrottled one takes
    fastest = time.monotonic() - started
    slow = max(1.0, 4 * fastest)  # slow by the ledger's measure however loaded the machine
    emu.add_fault(Fault(method="POST", path_regex=ROWS, latency=slow, times=1))  # as the SDK's backoff after a 429
    _take_spaced(ledger, ["slow"], 0)
    emu.clear_requests()

    _take_spaced(ledger, [f"exec-{i}" for i in range(4)], gap_seconds=0.03)

    assert len(emu.requests_matching("POST", ROWS)) == 1
    assert sorted(emu.raw_rows("db", "t")) == sorted(["warm", "slow"] + [f"exec-{i}" for i in range(4)])


def test_while_an_insert_is_slow_in_flight_rows_spread_out_in_time_stay_batched(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    """The SDK backs off after a 429 inside the insert: the rows that come meanwhile wait for each other,
    before the slow insert has answered, instead of each going out alone."""
    ledger = RawLedger(client, "db", "t", TTL)
    started = time.monotonic()
    _take_spaced(ledger, ["warm"], 0)  # the fastest insert: what an unthrottled one takes
    fastest = time.monotonic() - started
    slow = max(2.0, 6 * fastest)  # in flight past the slow mark (3 x the fastest, at least 0.2 s) with room
    emu.add_fault(Fault(method="POST", path_regex=ROWS, latency=slow, times=1))
    emu.clear_requests()

    async def scenario() -> bool:
        slow_write = asyncio.ensure_future(ledger.take_attempt(None, "slow", "wf", 0))
        await asyncio.sleep(max(0.4, 4 * fastest))
        in_flight = not slow_write.done()
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def take_at(i: int) -> None:
            await asyncio.sleep(start + i * 0.03 - loop.time())
            await ledger.take_attempt(None, f"exec-{i}", "wf", 0)

        await asyncio.gather(*(take_at(i) for i in range(4)))
        await slow_write
        return in_flight

    assert run_on_sdk_loop(scenario())  # the slow insert was still in flight when the rows came
    assert len(emu.requests_matching("POST", ROWS)) == 2  # the slow one, and one for the four
    assert sorted(emu.raw_rows("db", "t")) == sorted(["warm", "slow"] + [f"exec-{i}" for i in range(4)])


def test_after_an_insert_refused_429_rows_spread_out_in_time_stay_batched(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(global_config, "max_retries", 0)  # the 429 reaches the ledger, as after the SDK's retries
    ledger = RawLedger(client, "db", "t", TTL)
    emu.add_fault(Fault(method="POST", path_regex=ROWS, statuses=[429], retry_after=1))
    with pytest.raises(LedgerError, match="429"):
        _take_spaced(ledger, ["throttled"], 0)
    emu.clear_requests()

    _take_spaced(ledger, [f"exec-{i}" for i in range(4)], gap_seconds=0.03)

    assert len(emu.requests_matching("POST", ROWS)) == 1
    assert sorted(emu.raw_rows("db", "t")) == [f"exec-{i}" for i in range(4)]


def test_an_insert_three_times_as_slow_as_the_fastest_opens_the_long_window() -> None:
    """The rule itself, on the loop's clock (which the inserts are timed by): an insert that took three
    times the fastest so far (and at least SLOW_INSERT_SECONDS) counts as throttled; one just under does not."""

    async def windows_after_inserts_taking(seconds: list[float]) -> list[float]:
        loop = asyncio.get_running_loop()
        real_time, taken = loop.time, iter(seconds)
        offset = 0.0
        loop.time = lambda: real_time() + offset  # type: ignore[method-assign]

        async def send(rows: list[dict[str, object]]) -> None:
            nonlocal offset
            offset += next(taken)  # this insert "took" that long by the loop's clock

        inserts = raw_ledger._BatchedInserts(send)
        windows = []
        for i in range(len(seconds)):
            await inserts.put({"key": f"exec-{i}"})
            windows.append(inserts.window())
        return windows

    short, long = raw_ledger.WRITE_WINDOW_SECONDS, raw_ledger.THROTTLED_WRITE_WINDOW_SECONDS
    assert asyncio.run(windows_after_inserts_taking([1.0, 2.9, 3.1])) == [short, short, long]
