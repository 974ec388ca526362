"""Sweeps against the emulator: paging, the policy, the per-sweep cap (oldest first), the deadline, dry runs."""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import replace
from typing import Any

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry import function
from workflow_retry.cdf import ClientCredentials
from workflow_retry.errors import PayloadError, PolicyOverrideError
from workflow_retry.ledger import NoLedger
from workflow_retry.payloads import parse_payload
from workflow_retry.settings import Settings, cached_settings

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
CREDENTIALS = ClientCredentials(FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET)
LIST_PATH = r"/workflows/executions/list$"
HOUR_MS = 3_600_000

pytestmark = pytest.mark.usefixtures("fast_env")


def list_bodies(emu: CdfEmulator) -> list[dict[str, Any]]:
    return [dict(request.body) for request in emu.requests_matching("POST", LIST_PATH)]


def sweep(client: CogniteClient, payload: dict[str, Any]) -> dict[str, Any]:
    return handler.handle(payload, client, SECRETS)


def test_a_sweep_over_5000_failures_pages_through_all_and_restarts_the_oldest_up_to_the_cap(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_SWEEP_PAGE_SIZE", "100")
    ids = emu.seed_many(5000, status="FAILED")  # created 1 ms apart, oldest first

    result = sweep(client, {"sweep": {"maxRestarts": 20, "lookbackMinutes": 60}})

    summary = result["sweep"]
    assert summary["pagesRead"] == 50
    assert summary["executionsSeen"] == 5000
    assert summary["listingComplete"] is True
    assert summary["eligible"] == 5000
    assert summary["leftForNextSweep"] == 4980
    assert summary["outcomes"] == {"retried": 20}
    assert [r["executionId"] for r in result["results"]] == ids[:20]
    assert all(emu.retry_count(i) == 1 for i in ids[:20])
    assert sum(emu.retry_count(i) for i in ids) == 20
    assert all(body["limit"] == 100 for body in list_bodies(emu))


def test_the_next_sweep_takes_the_next_oldest(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = emu.seed_many(30, status="FAILED")

    first = sweep(client, {"sweep": {"maxRestarts": 10}})
    second = sweep(client, {"sweep": {"maxRestarts": 10}})

    assert [r["executionId"] for r in first["results"]] == ids[:10]
    assert [r["executionId"] for r in second["results"]] == ids[10:20]  # the first ten run: not listed as FAILED
    assert second["sweep"]["leftForNextSweep"] == 10


def test_a_dry_sweep_lists_what_it_would_do_and_changes_nothing(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = emu.seed_many(12, status="FAILED")

    result = sweep(client, {"sweep": {"maxRestarts": 5}, "dryRun": True})

    assert [r["outcome"] for r in result["results"]] == ["dry_run"] * 5
    assert [r["executionId"] for r in result["results"]] == ids[:5]
    assert result["sweep"]["leftForNextSweep"] == 7
    assert emu.requests_matching("POST", r"/sessions$|/retry$|/raw/") == []
    assert sum(emu.retry_count(i) for i in ids) == 0


def test_the_window_workflows_and_statuses_go_into_the_list_filter(emu: CdfEmulator, client: CogniteClient) -> None:
    now = int(time.time() * 1000)
    wanted_a = emu.seed_execution("wf-a", "1", "FAILED")["id"]
    wanted_b = emu.seed_execution("wf-b", "2", "TIMED_OUT")["id"]
    emu.seed_execution("wf-b", "1", "FAILED")  # other version
    emu.seed_execution("wf-c", "1", "FAILED")  # other workflow
    emu.seed_execution("wf-a", "1", "FAILED", created_time=now - 3 * HOUR_MS)  # ended before the window
    emu.seed_execution("wf-a", "1", "TERMINATED")  # status not asked for

    payload = {"sweep": {"workflows": ["wf-a", "wf-b:2"], "lookbackMinutes": 60, "statuses": ["FAILED", "timed_out"]}}
    result = sweep(client, payload)

    assert sorted(r["executionId"] for r in result["results"]) == sorted([wanted_a, wanted_b])
    [body] = list_bodies(emu)
    flt = body["filter"]
    assert flt["workflowFilters"] == [{"externalId": "wf-a"}, {"externalId": "wf-b", "version": "2"}]
    assert flt["status"] == ["FAILED", "TIMED_OUT"]
    # Failures that ended in the last 60 minutes, of executions that may have run for up to 24 hours.
    assert flt["createdTimeEnd"] - flt["createdTimeStart"] == 60 * 60_000 + 24 * HOUR_MS
    assert result["sweep"]["workflows"] == ["wf-a", "wf-b:2"]


def test_the_policy_screens_listed_executions_before_any_detail_is_read(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    emu.seed_many(5, workflow_external_id="wf-skip", status="FAILED")
    kept = emu.seed_execution("wf-keep", "1", "FAILED")["id"]

    result = sweep(client, {"sweep": {}, "policy": {"excludeWorkflows": ["wf-skip"]}})

    assert [r["executionId"] for r in result["results"]] == [kept]
    assert result["sweep"]["outcomes"] == {"retried": 1, "skipped": 5}
    assert len(emu.requests_matching("GET", r"/workflows/executions/[^/]+$")) == 1


def test_terminal_errors_found_in_details_leave_room_for_the_next_oldest(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    terminal = emu.seed_many(2, status="FAILED", tasks=[{"status": "FAILED_WITH_TERMINAL_ERROR"}])
    flaky = emu.seed_many(3, status="FAILED")

    result = sweep(client, {"sweep": {"maxRestarts": 2}})

    retried = [r["executionId"] for r in result["results"] if r["outcome"] == "retried"]
    assert retried == flaky[:2]
    assert all(emu.retry_count(i) == 0 for i in terminal)


def test_exhausted_executions_are_announced_once_across_sweeps(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RETRY_MAX_ATTEMPTS", "1")
    emu.auto_fail_after_retry = True
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    first = sweep(client, {"sweep": {}})
    time.sleep(0.002)
    second = sweep(client, {"sweep": {}})
    third = sweep(client, {"sweep": {}})

    assert first["sweep"]["outcomes"] == {"retried": 1}
    assert [r["outcome"] for r in second["results"]] == ["exhausted"]
    assert third["results"] == []
    assert third["sweep"]["outcomes"] == {"exhausted": 1}
    assert emu.retry_count(failed) == 1
    assert len([r for r in caplog.records if r.name == "workflow_retry.giveup"]) == 1


@pytest.mark.slow  # waits out a deadline of seconds
def test_a_sweep_stops_before_its_deadline_and_says_what_it_did_not_reach(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 6 s of listing (a page per second) and 2 s kept for the 5 retries: the retries' share of the deadline
    # is what a loaded machine squeezes (with 4 s and 0.5 s pages, 1 s for 5 retries was missed at load 5-10).
    monkeypatch.setenv("RETRY_DEADLINE_SECONDS", "8")
    monkeypatch.setenv("RETRY_REQUEST_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("RETRY_SWEEP_PAGE_SIZE", "10")
    emu.seed_many(200, status="FAILED")
    emu.add_fault(Fault(method="POST", path_regex=LIST_PATH, latency=1.0, times=1000))

    started = time.monotonic()
    result = sweep(client, {"sweep": {"maxRestarts": 5}})
    elapsed = time.monotonic() - started

    summary = result["sweep"]
    assert elapsed < 8 + 1
    assert summary["listingComplete"] is False
    assert "to keep time for retries" in summary["stoppedEarly"]
    assert 0 < summary["executionsSeen"] < 200
    assert summary["outcomes"] == {"retried": 5}  # what it saw, it still handled, oldest first


def test_a_failing_list_request_is_reported(emu: CdfEmulator, client: CogniteClient) -> None:
    emu.seed_many(3, status="FAILED")
    emu.add_fault(Fault(method="POST", path_regex=LIST_PATH, statuses=[403]))

    result = sweep(client, {"sweep": {}})

    assert result["sweep"]["listingError"]["code"] == 403
    assert result["sweep"]["listingComplete"] is False
    assert result["results"] == []


def test_a_sweep_payload_cannot_also_name_ids() -> None:
    with pytest.raises(PayloadError, match="not both"):
        parse_payload({"sweep": {}, "executionId": "059edaa4-a17a-4102-910e-2c3591500cce"})
    with pytest.raises(PayloadError, match="statuses"):
        parse_payload({"sweep": {"statuses": ["RUNNING"]}})
    with pytest.raises(PayloadError, match="lookbackMinutes"):
        parse_payload({"sweep": {"lookbackMinutes": 0}})


def test_sweep_true_uses_the_configured_defaults(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_SWEEP_WORKFLOWS", "wf-a")
    monkeypatch.setenv("RETRY_SWEEP_MAX_RESTARTS", "1")
    emu.seed_many(2, workflow_external_id="wf-a", status="FAILED")

    result = sweep(client, {"sweep": True})

    assert result["sweep"]["workflows"] == ["wf-a"]
    assert result["sweep"]["maxRestarts"] == 1
    assert result["sweep"]["outcomes"] == {"retried": 1}


@pytest.mark.slow
def test_memory_stays_flat_however_many_executions_the_window_holds(emu: CdfEmulator, client: CogniteClient) -> None:
    settings = Settings(sweep_page_size=1000, deadline_seconds=600, sweep_max_restarts=50)
    credentials = ClientCredentials(FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET)
    request = parse_payload({"sweep": {"maxRestarts": 50}, "dryRun": True}, settings=settings)

    def peak_for(n: int) -> int:
        emu.reset()
        emu.seed_many(n, status="FAILED")
        tracemalloc.start()
        try:
            report = function.execute(request, client, credentials, settings, ledger=NoLedger(), environment={})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert report.sweep is not None
        assert report.sweep.executions_seen == n
        return peak

    small, large = peak_for(2_000), peak_for(40_000)

    assert large - small < 10 * 1024 * 1024, f"peak grew by {(large - small) / 2**20:.1f} MiB for 20x the executions"


# -- the window: failures by when they ended -------------------------------------------------------


def seed_failure(emu: CdfEmulator, created_ago_ms: int, ended_ago_ms: int, status: str = "FAILED") -> str:
    """An execution of ``wf`` created and ended that long ago (it started when it was created)."""
    now = int(time.time() * 1000)
    created = now - created_ago_ms
    return str(
        emu.seed_execution("wf", "1", status, created_time=created, start_time=created, end_time=now - ended_ago_ms)[
            "id"
        ]
    )


def test_a_sweep_finds_failures_by_when_they_ended_however_long_the_execution_ran(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    minute = 60_000
    ran_130_minutes = seed_failure(emu, 150 * minute, 20 * minute)
    ran_20_hours = seed_failure(emu, 21 * HOUR_MS, HOUR_MS)
    ended_23_hours_ago = seed_failure(emu, 46 * HOUR_MS, 23 * HOUR_MS, "TIMED_OUT")
    too_old = seed_failure(emu, 30 * HOUR_MS, 25 * HOUR_MS)

    result = sweep(client, {"sweep": {}})

    retried = sorted(r["executionId"] for r in result["results"] if r["outcome"] == "retried")
    assert retried == sorted([ran_130_minutes, ran_20_hours, ended_23_hours_ago])
    assert emu.retry_count(too_old) == 0
    [body] = list_bodies(emu)
    window = body["filter"]["createdTimeEnd"] - body["filter"]["createdTimeStart"]
    assert window == (24 + 24) * HOUR_MS  # maxAgeHours plus CDF's longest run
    assert result["sweep"]["endedAfter"] == body["filter"]["createdTimeEnd"] - 24 * HOUR_MS


def test_lookback_minutes_narrows_the_end_time_window_within_the_operators(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_run_recent_failure = seed_failure(emu, 5 * HOUR_MS, 30 * 60_000)
    earlier_failure = seed_failure(emu, 3 * HOUR_MS, 2 * HOUR_MS)

    result = sweep(client, {"sweep": {"lookbackMinutes": 60}})

    assert [r["executionId"] for r in result["results"]] == [long_run_recent_failure]
    assert emu.retry_count(earlier_failure) == 0
    monkeypatch.setenv("RETRY_SWEEP_LOOKBACK_MINUTES", "60")
    cached_settings.cache_clear()
    with pytest.raises(PolicyOverrideError, match=r"sweep\.lookbackMinutes 120"):
        sweep(client, {"sweep": {"lookbackMinutes": 120}})


def test_a_long_running_workflow_goes_through_its_whole_life_cycle_by_sweeps_alone(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """fail, retry, fail again, cool down, retry, fail, give up: each step found by a sweep.

    The workflow runs three hours, longer than the 120-minute window sweeps used to list. Time moves
    on by the context's clock (the ledger counts with it); CDF's times are the emulator's own.
    """
    monkeypatch.setenv("RETRY_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("RETRY_LEDGER", "raw")
    now = int(time.time() * 1000)
    failed = emu.seed_execution(
        "wf-long", "1", "FAILED", created_time=now - 3 * HOUR_MS, start_time=now - 3 * HOUR_MS, end_time=now - 60_000
    )["id"]
    settings = Settings()
    request = parse_payload({"sweep": {}})
    offset = 0

    def sweep_at(seconds_later: int) -> dict[str, Any]:
        nonlocal offset
        offset = seconds_later * 1000
        context = replace(
            function.build_context(request, client, settings), clock=lambda: int(time.time() * 1000) + offset
        )
        report = function.execute_sweep(request, client, CREDENTIALS, settings, context=context)
        time.sleep(0.002)  # CDF's next endTime comes after this sweep's attempt
        return report.to_dict()

    first = sweep_at(0)
    emu.fail_execution(failed, "failed again after three hours")
    cooling = sweep_at(120)  # 2 minutes on: the 5-minute cooldown after retry 1 holds
    second = sweep_at(400)
    emu.fail_execution(failed, "failed once more")
    gave_up = sweep_at(520)
    after = sweep_at(4000)

    assert [r["outcome"] for r in first["results"]] == ["retried"]
    assert cooling["sweep"]["outcomes"] == {"deferred": 1}
    assert [r["outcome"] for r in second["results"]] == ["retried"]
    assert [r["outcome"] for r in gave_up["results"]] == ["exhausted"]
    assert "(announced)" in gave_up["results"][0]["reason"]
    assert after["sweep"]["outcomes"] == {"exhausted": 1}
    assert emu.retry_count(failed) == 2
    announced = [r for r in caplog.records if r.name == "workflow_retry.giveup" and failed in r.getMessage()]
    assert len(announced) == 1


def test_a_candidate_waiting_for_its_attempts_insert_lends_its_slot_to_the_next_oldest(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a batch: the attempt is counted by a batched insert while the session is made; an execution
    waiting for that insert sends nothing of its own, so its slot starts the next candidates meanwhile."""
    monkeypatch.setenv("RETRY_LEDGER", "raw")
    monkeypatch.setenv("RETRY_CONCURRENCY", "2")
    ids = emu.seed_many(6, workflow_external_id="wf", status="FAILED")  # oldest first
    emu.add_fault(Fault(method="POST", path_regex=r"/raw/dbs/[^/]+/tables/[^/]+/rows$", latency=1.5, times=1))

    result = sweep(client, {"sweep": {"maxRestarts": 6, "lookbackMinutes": 60}})

    assert [(r["executionId"], r["outcome"]) for r in result["results"]] == [(i, "retried") for i in ids]
    [slow, *_] = emu.requests_matching("POST", r"/raw/dbs/[^/]+/tables/[^/]+/rows$")
    slow_rows = {item["key"] for item in slow.body["items"]}
    retries = {r.path.rsplit("/", 2)[-2]: r.time for r in emu.requests_matching("POST", r"/retry$")}
    # The retries counted by the slow insert went out after it answered; the others before it did.
    assert slow_rows
    assert len(slow_rows) < len(ids)
    assert all(retries[i] >= slow.time + 1.5 for i in slow_rows)
    assert all(retries[i] < slow.time + 1.5 for i in set(ids) - slow_rows)
    assert sum(emu.retry_count(i) for i in ids) == 6


def test_a_sweep_restarts_no_more_than_its_cap_with_more_candidates_at_work_than_slots(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_LEDGER", "raw")
    monkeypatch.setenv("RETRY_CONCURRENCY", "2")  # up to 6 executions at work at once, slots lent included
    ids = emu.seed_many(40, workflow_external_id="wf", status="FAILED")
    emu.add_fault(Fault(method="POST", path_regex=r"/raw/dbs/[^/]+/tables/[^/]+/rows$", latency=0.3, times=3))

    result = sweep(client, {"sweep": {"maxRestarts": 5, "lookbackMinutes": 60}})

    assert [r["executionId"] for r in result["results"]] == ids[:5]
    assert sum(emu.retry_count(i) for i in ids) == 5
    assert result["sweep"]["leftForNextSweep"] == 35


def test_executions_given_up_on_do_not_hold_newer_failures_back(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More executions already given up on than a sweep keeps as candidates (maxRestarts x 10): the sweep
    lists again past them for the newer failures, oldest first, instead of reporting the same ones each time."""
    monkeypatch.setenv("RETRY_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("RETRY_COOLDOWN_SECONDS", "0")
    monkeypatch.setenv("RETRY_SWEEP_MAX_RESTARTS", "25")
    emu.auto_fail_after_retry = True
    given_up = emu.seed_many(25, status="FAILED")
    assert sweep(client, {"sweep": {"maxRestarts": 25}})["sweep"]["outcomes"] == {"retried": 25}
    time.sleep(0.002)
    assert sweep(client, {"sweep": {"maxRestarts": 25}})["sweep"]["outcomes"] == {"exhausted": 25}
    fresh = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(3)]
    emu.clear_requests()

    first = sweep(client, {"sweep": {"maxRestarts": 2}})  # keeps 20 candidates: all of them given up on
    second = sweep(client, {"sweep": {"maxRestarts": 2}})

    assert first["sweep"]["outcomes"] == {"exhausted": 25, "retried": 2}
    assert {r["executionId"] for r in first["results"]} < set(fresh)  # two of the three, as maxRestarts says
    assert first["sweep"]["eligible"] == 28
    assert first["sweep"]["leftForNextSweep"] == 1
    assert first["sweep"]["pagesRead"] == 2  # the window listed twice
    assert second["sweep"]["outcomes"] == {"exhausted": 27, "retried": 1}  # the two retried failed again
    assert [emu.retry_count(i) for i in fresh] == [1, 1, 1]
    assert all(emu.retry_count(i) == 1 for i in given_up)


def test_a_later_listing_that_fails_is_named_as_such(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first listing read the whole window; the one past the candidates handled failed: the summary says
    which, and carries that listing's error."""
    monkeypatch.setenv("RETRY_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("RETRY_COOLDOWN_SECONDS", "0")
    monkeypatch.setenv("RETRY_SDK_MAX_RETRIES", "0")
    monkeypatch.setenv("RETRY_SWEEP_MAX_RESTARTS", "25")
    emu.auto_fail_after_retry = True
    emu.seed_many(25, status="FAILED")
    assert sweep(client, {"sweep": {"maxRestarts": 25}})["sweep"]["outcomes"] == {"retried": 25}
    time.sleep(0.002)
    emu.seed_execution("wf", "1", "FAILED")
    emu.add_fault(Fault(method="POST", path_regex=LIST_PATH, statuses=[200, 503]))

    summary = sweep(client, {"sweep": {"maxRestarts": 2}})["sweep"]

    assert summary["outcomes"] == {"exhausted": 20}
    assert summary["listingComplete"] is True
    assert summary["stoppedEarly"].startswith(
        "listing again past the candidates handled: "
        "listing failed after 0 page(s): Service Unavailable (injected fault) (x-request-id: "
    )
    assert summary["listingError"]["code"] == 503
    assert summary["pagesRead"] == 1


def test_a_sweep_whose_candidates_fail_does_not_list_again_for_more(emu: CdfEmulator, client: CogniteClient) -> None:
    """During an outage (every retry request answered 503), a sweep tries the candidates it kept, not the
    whole window: a failure is no reason to list again for newer candidates."""
    emu.seed_many(25, status="FAILED")
    emu.add_fault(Fault(method="POST", path_regex=r"/workflows/executions/[^/]+/retry$", statuses=[503] * 1000))

    result = sweep(client, {"sweep": {"maxRestarts": 2}})  # keeps 20 candidates

    assert result["sweep"]["outcomes"] == {"failed": 20}
    assert result["sweep"]["pagesRead"] == 1
    assert result["sweep"]["leftForNextSweep"] == 5
