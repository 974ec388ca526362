"""Sweeps against the emulator: paging, the policy, the per-sweep cap (oldest first), the deadline, dry runs."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry import function
from workflow_retry.cdf import ClientCredentials
from workflow_retry.errors import PayloadError
from workflow_retry.ledger import NoLedger
from workflow_retry.payloads import parse_payload
from workflow_retry.settings import Settings

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
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
    emu.seed_execution("wf-a", "1", "FAILED", created_time=now - 3 * HOUR_MS)  # outside the window
    emu.seed_execution("wf-a", "1", "TERMINATED")  # status not asked for

    payload = {"sweep": {"workflows": ["wf-a", "wf-b:2"], "lookbackMinutes": 60, "statuses": ["FAILED", "timed_out"]}}
    result = sweep(client, payload)

    assert sorted(r["executionId"] for r in result["results"]) == sorted([wanted_a, wanted_b])
    [body] = list_bodies(emu)
    flt = body["filter"]
    assert flt["workflowFilters"] == [{"externalId": "wf-a"}, {"externalId": "wf-b", "version": "2"}]
    assert flt["status"] == ["FAILED", "TIMED_OUT"]
    assert flt["createdTimeEnd"] - flt["createdTimeStart"] == 60 * 60_000
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


def test_a_sweep_stops_before_its_deadline_and_says_what_it_did_not_reach(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_DEADLINE_SECONDS", "4")
    monkeypatch.setenv("RETRY_REQUEST_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("RETRY_SWEEP_PAGE_SIZE", "10")
    emu.seed_many(200, status="FAILED")
    emu.add_fault(Fault(method="POST", path_regex=LIST_PATH, latency=0.5, times=1000))

    started = time.monotonic()
    result = sweep(client, {"sweep": {"maxRestarts": 5}})
    elapsed = time.monotonic() - started

    summary = result["sweep"]
    assert elapsed < 4 + 1
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
