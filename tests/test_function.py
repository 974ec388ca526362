"""``handle`` end to end: a real CogniteClient over HTTP against the CDF emulator.

Each test asserts what the caller gets back and what reached the emulator: exactly one session and
one retry per retried ID, and nothing at all for invalid or skipped IDs.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from cognite.client import CogniteClient, global_config

import handler
from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry.errors import ConfigurationError, PayloadError

RETRY_PATH = r"/workflows/executions/[^/]+/retry$"
SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}

pytestmark = pytest.mark.usefixtures("fast_env")


def sessions(emu: CdfEmulator) -> list[Any]:
    return emu.requests_matching("POST", r"/sessions$")


def retries(emu: CdfEmulator, execution_id: str | None = None) -> list[Any]:
    pattern = rf"/workflows/executions/{execution_id}/retry$" if execution_id else RETRY_PATH
    return emu.requests_matching("POST", pattern)


def stored(emu: CdfEmulator, execution_id: str) -> dict[str, Any]:
    execution = emu.get_execution(execution_id)
    assert execution is not None
    return execution


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["executionId"]: r for r in result["results"]}


# -- payload shapes ---------------------------------------------------------------------------------


def test_single_execution_id_is_retried_and_the_api_json_is_returned(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")

    result = handler.handle({"executionId": failed["id"]}, client, SECRETS)

    [item] = result["results"]
    assert item["executionId"] == failed["id"]
    assert item["outcome"] == "retried"
    assert item["error"] is None
    execution = item["execution"]
    assert execution["status"] == "RUNNING"
    assert execution["engineExecutionId"] == failed["engineExecutionId"]
    assert execution["workflowExternalId"] == "wf"
    assert "createdTime" in execution
    assert result["counts"]["retried"] == 1
    assert stored(emu, failed["id"])["status"] == "RUNNING"
    assert len(sessions(emu)) == 1
    assert len(retries(emu, failed["id"])) == 1


def test_list_of_ids(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(3)]

    result = handler.handle({"executionIds": ids}, client, SECRETS)

    assert [r["executionId"] for r in result["results"]] == ids
    assert all(r["outcome"] == "retried" for r in result["results"])
    assert len(sessions(emu)) == 3
    assert all(len(retries(emu, i)) == 1 for i in ids)


def test_an_execution_object_as_payload(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "TIMED_OUT")
    payload = {k: v for k, v in failed.items() if k not in ("executedTasks", "workflowDefinition", "input")}

    result = handler.handle(payload, client, SECRETS)

    assert by_id(result)[failed["id"]]["outcome"] == "retried"
    assert len(retries(emu, failed["id"])) == 1


def test_the_list_endpoint_shape_as_payload(emu: CdfEmulator, client: CogniteClient) -> None:
    a = emu.seed_execution("wf", "1", "FAILED")
    b = emu.seed_execution("wf", "2", "TERMINATED")

    result = handler.handle({"items": [a, b]}, client, SECRETS)

    assert [r["outcome"] for r in result["results"]] == ["retried", "retried"]
    assert len(sessions(emu)) == 2


# -- outcomes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "TERMINATED"])
def test_every_retryable_status_is_retried(emu: CdfEmulator, client: CogniteClient, status: str) -> None:
    execution = emu.seed_execution("wf", "1", status)

    result = handler.handle({"executionId": execution["id"]}, client, SECRETS)

    assert result["results"][0]["outcome"] == "retried"
    assert status in result["results"][0]["reason"]
    assert emu.retry_count(execution["id"]) == 1


@pytest.mark.parametrize("status", ["RUNNING", "COMPLETED"])
def test_running_and_completed_executions_are_skipped_without_a_session(
    emu: CdfEmulator, client: CogniteClient, status: str
) -> None:
    execution = emu.seed_execution("wf", "1", status)

    result = handler.handle({"executionId": execution["id"]}, client, SECRETS)

    [item] = result["results"]
    assert item["outcome"] == "skipped"
    assert f"status is {status}" in item["reason"]
    assert item["execution"]["status"] == status
    assert sessions(emu) == []
    assert retries(emu) == []


@pytest.mark.parametrize("unknown_status", [404, 400])
def test_unknown_ids_are_not_found(emu: CdfEmulator, client: CogniteClient, unknown_status: int) -> None:
    emu.unknown_execution_status = unknown_status
    unknown = str(uuid.uuid4())

    result = handler.handle({"executionId": unknown}, client, SECRETS)

    [item] = result["results"]
    assert item["outcome"] == "not_found"
    assert item["execution"] is None
    assert sessions(emu) == []


def test_invalid_ids_cost_nothing(emu: CdfEmulator, client: CogniteClient) -> None:
    bad = ["../../token/inspect", "059EDAA4-A17A-1102-910E-2C3591500CCE", 12, " x "]

    result = handler.handle({"executionIds": bad}, client, SECRETS)

    assert [r["outcome"] for r in result["results"]] == ["invalid"] * 4
    assert "version 1" in result["results"][1]["reason"]
    assert emu.requests == []


def test_dry_run_reports_what_would_be_retried_and_changes_nothing(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")
    running = emu.seed_execution("wf", "1", "RUNNING")

    result = handler.handle({"executionIds": [failed["id"], running["id"]], "dryRun": True}, client, SECRETS)

    assert [r["outcome"] for r in result["results"]] == ["dry_run", "skipped"]
    assert "would retry" in result["results"][0]["reason"]
    assert sessions(emu) == []
    assert retries(emu) == []
    assert stored(emu, failed["id"])["status"] == "FAILED"


def test_mixed_batch_gives_one_result_per_distinct_id_in_input_order(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    completed = emu.seed_execution("wf", "1", "COMPLETED")["id"]
    unknown = str(uuid.uuid4())
    payload = {"executionIds": [failed, "nope", completed, failed.upper(), unknown, failed]}

    result = handler.handle(payload, client, SECRETS)

    assert [(r["executionId"], r["outcome"]) for r in result["results"]] == [
        (failed, "retried"),
        ("nope", "invalid"),
        (completed, "skipped"),
        (unknown, "not_found"),
    ]
    counts = result["counts"]
    assert (counts["retried"], counts["invalid"], counts["skipped"], counts["not_found"]) == (1, 1, 1, 1)
    assert sum(counts.values()) == 4
    assert len(retries(emu, failed)) == 1


# -- sessions -----------------------------------------------------------------------------------------


def test_client_credentials_from_secrets_are_used_for_the_session(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")

    handler.handle({"executionId": failed["id"]}, client, SECRETS)

    [session] = sessions(emu)
    assert session.body == {"items": [{"clientId": FUNCTION_CLIENT_ID, "clientSecret": FUNCTION_CLIENT_SECRET}]}
    [retry] = retries(emu)
    assert retry.body["authentication"]["nonce"] in emu.issued_nonces


def test_without_credentials_in_the_secrets_every_id_fails_with_a_configuration_error(
    emu: CdfEmulator, function_client: CogniteClient
) -> None:
    # The runtime's token comes from a session: CDF refuses a token-exchange session made with it.
    ids = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(3)]

    result = handler.handle({"executionIds": ids}, function_client)

    outcomes = {r["outcome"] for r in result["results"]}
    assert outcomes == {"failed"}
    for item in result["results"]:
        assert item["error"]["retryable"] is False
        assert "'client-id'" in item["error"]["message"]
        assert "'client-secret'" in item["error"]["message"]
    assert [s.body for s in sessions(emu)] == [{"items": [{"tokenExchange": True}]}]  # asked once, not per ID
    assert retries(emu) == []
    assert all(emu.retry_count(i) == 0 for i in ids)


def test_with_credentials_in_the_secrets_a_session_token_retries(
    emu: CdfEmulator, function_client: CogniteClient
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")

    result = handler.handle({"executionId": failed["id"]}, function_client, SECRETS)

    assert result["results"][0]["outcome"] == "retried"
    [session] = sessions(emu)
    assert "clientId" in session.body["items"][0]


def test_a_transient_failure_of_the_first_token_exchange_session_holds_back_no_one(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    # A token that does not come from a session may exchange itself; the first session goes alone,
    # and when it fails for a passing reason (503 after the SDK's retries) the others still go ahead.
    ids = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(3)]
    emu.add_fault(Fault(method="POST", path_regex=r"/sessions$", statuses=[503] * 4))  # 1 + 3 SDK retries

    result = handler.handle({"executionIds": ids}, client)

    outcomes = sorted(r["outcome"] for r in result["results"])
    assert outcomes == ["failed", "retried", "retried"]
    [failed] = [r for r in result["results"] if r["outcome"] == "failed"]
    assert failed["error"]["retryable"] is True
    assert "client-id" not in failed["error"]["message"]
    assert all(s.body == {"items": [{"tokenExchange": True}]} for s in sessions(emu))


def test_each_retry_gets_its_own_fresh_nonce(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(5)]

    handler.handle({"executionIds": ids}, client, SECRETS)

    nonces = [r.body["authentication"]["nonce"] for r in retries(emu)]
    assert len(nonces) == len(set(nonces)) == 5


def test_half_of_the_client_credentials_is_a_clear_error_before_any_request(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")

    with pytest.raises(ConfigurationError, match="'client-secret' is missing"):
        handler.handle({"executionId": failed["id"]}, client, {"client-id": FUNCTION_CLIENT_ID})
    assert emu.requests == []


def test_a_payload_without_ids_raises_before_any_request(emu: CdfEmulator, client: CogniteClient) -> None:
    with pytest.raises(PayloadError, match="no execution ID found"):
        handler.handle({"workflow": "wf"}, client, SECRETS)
    assert emu.requests == []


def test_more_than_1000_ids_raise(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = [str(uuid.uuid4()) for _ in range(1001)]
    with pytest.raises(PayloadError, match="too many execution IDs"):
        handler.handle({"executionIds": ids}, client, SECRETS)
    assert emu.requests == []


# -- batches ------------------------------------------------------------------------------------------


def test_a_batch_of_100_is_retried_once_each_and_concurrently(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = emu.seed_many(100, workflow_external_id="bulk", status="FAILED")
    emu.latency = 0.02

    result = handler.handle({"executionIds": ids}, client, SECRETS)

    assert [r["executionId"] for r in result["results"]] == ids
    assert result["counts"]["retried"] == 100
    assert len(sessions(emu)) == 100
    assert all(emu.retry_count(i) == 1 for i in ids)
    assert emu.max_in_flight > 1, "IDs should be processed concurrently"


def test_request_bodies_go_uncompressed(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A few hundred bytes each: gzip would cost CPU on every POST of a CPU-bound batch and save nothing.
    monkeypatch.setattr(global_config, "disable_gzip", False)
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    result = handler.handle({"executionId": failed}, client, SECRETS)

    assert result["results"][0]["outcome"] == "retried"
    posts = [r for r in emu.requests if r.method == "POST" and not r.path.endswith("/oauth2/token")]
    assert {r.path.rsplit("/", 1)[-1] for r in posts} >= {"sessions", "retry"}
    assert [r.headers.get("content-encoding") for r in posts] == [None] * len(posts)


def test_duplicated_ids_are_retried_once(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    result = handler.handle({"executionIds": [failed] * 10}, client, SECRETS)

    assert len(result["results"]) == 1
    assert len(sessions(emu)) == 1
    assert len(retries(emu, failed)) == 1


# -- errors and injected faults ------------------------------------------------------------------------


def test_a_429_with_retry_after_is_absorbed_by_the_sdk(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=RETRY_PATH, statuses=[429, 429], retry_after=0.1))

    result = handler.handle({"executionId": failed}, client, SECRETS)

    assert result["results"][0]["outcome"] == "retried"
    assert emu.retry_count(failed) == 1
    assert [r.status for r in retries(emu, failed)] == [429, 429, 200]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_transient_gateway_errors_are_retried_by_the_sdk(emu: CdfEmulator, client: CogniteClient, status: int) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="GET", path_regex=r"/workflows/executions/[^/]+$", statuses=[status]))

    result = handler.handle({"executionId": failed}, client, SECRETS)

    assert result["results"][0]["outcome"] == "retried"
    assert emu.retry_count(failed) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_persistent_server_errors_fail_retryably(emu: CdfEmulator, client: CogniteClient, status: int) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=r"/sessions$", statuses=[status] * 10))

    result = handler.handle({"executionId": failed}, client, SECRETS)

    [item] = result["results"]
    assert item["outcome"] == "failed"
    assert item["error"]["code"] == status
    assert item["error"]["retryable"] is True
    assert retries(emu) == []
    assert emu.retry_count(failed) == 0


def test_a_4xx_on_retry_fails_without_being_retryable(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=RETRY_PATH, statuses=[409]))

    result = handler.handle({"executionId": failed}, client, SECRETS)

    [item] = result["results"]
    assert item["outcome"] == "failed"
    assert item["error"]["code"] == 409
    assert item["error"]["retryable"] is False
    assert emu.retry_count(failed) == 0


def test_missing_capability_is_a_non_retryable_403(emu: CdfEmulator) -> None:
    emu.add_client(
        "reader",
        "reader-secret-value",
        capabilities=["workflowOrchestrationACL:READ", "sessionsACL:CREATE", "rawACL:READ", "rawACL:WRITE"],
    )
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    from tests.conftest import make_client

    reader = make_client(emu, "reader", "reader-secret-value")
    result = handler.handle(
        {"executionId": failed}, reader, {"client-id": "reader", "client-secret": "reader-secret-value"}
    )

    [item] = result["results"]
    assert item["outcome"] == "failed"
    assert item["error"]["code"] == 403
    assert item["error"]["retryable"] is False
    assert "workflowOrchestrationACL" in item["error"]["message"]


def test_a_slow_server_beyond_the_request_timeout_fails_retryably(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_REQUEST_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("RETRY_SDK_MAX_RETRIES", "0")
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="GET", path_regex=r"/workflows/executions/[^/]+$", latency=2.5, times=5))

    result = handler.handle({"executionId": failed}, client, SECRETS)

    [item] = result["results"]
    assert item["outcome"] == "failed"
    assert item["error"]["retryable"] is True
    assert item["error"]["code"] is None


def test_a_dropped_connection_fails_retryably(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=r"/sessions$", statuses=[0] * 10))

    result = handler.handle({"executionId": failed}, client, SECRETS)

    [item] = result["results"]
    assert item["outcome"] == "failed"
    assert item["error"]["retryable"] is True
    assert emu.retry_count(failed) == 0


def test_a_lost_answer_after_the_retry_was_applied_is_not_retried_twice(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=RETRY_PATH, statuses=[503], apply_then_fail=True))

    result = handler.handle({"executionId": failed}, client, SECRETS)

    [item] = result["results"]
    assert item["outcome"] == "retried"
    assert "RUNNING again" in item["reason"]
    assert item["execution"]["status"] == "RUNNING"
    assert emu.retry_count(failed) == 1


def test_a_refusal_because_another_caller_restarted_it_is_skipped_not_failed(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    # Between our read and our request, the execution is restarted elsewhere and CDF refuses ours.
    emu.add_fault(Fault(method="POST", path_regex=RETRY_PATH, statuses=[400], apply_then_fail=True))

    result = handler.handle({"executionId": failed}, client, SECRETS)

    [item] = result["results"]
    assert item["outcome"] == "skipped"
    assert "restarted by another caller" in item["reason"]
    assert item["error"] is None
    assert item["execution"]["status"] == "RUNNING"  # as read after the refusal, not before
    assert emu.retry_count(failed) == 1
    assert len(retries(emu, failed)) == 1


def test_an_execution_that_fails_again_can_be_retried_by_a_later_call(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_COOLDOWN_SECONDS", "0")  # the policy's cooldown is tested in tests/test_policy.py
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    handler.handle({"executionId": failed}, client, SECRETS)
    emu.fail_execution(failed, reason="flaky again")

    result = handler.handle({"executionId": failed}, client, SECRETS)

    assert result["results"][0]["outcome"] == "retried"
    assert emu.retry_count(failed) == 2


@pytest.mark.slow  # waits out a deadline of seconds
def test_the_deadline_holds_when_cdf_answers_429_to_everything(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_DEADLINE_SECONDS", "3")
    monkeypatch.setenv("RETRY_REQUEST_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("RETRY_SDK_MAX_RETRIES", "10")
    monkeypatch.setenv("RETRY_SDK_MAX_BACKOFF_SECONDS", "1")
    monkeypatch.setenv("RETRY_CONCURRENCY", "2")
    ids = emu.seed_many(6, status="FAILED")
    emu.add_fault(Fault(statuses=[429] * 10_000, path_regex=r"/workflows/"))

    started = time.monotonic()
    result = handler.handle({"executionIds": ids}, client, SECRETS)
    elapsed = time.monotonic() - started

    assert elapsed < 3 + 1.5, f"the call took {elapsed:.1f}s with a 3s deadline"
    assert [r["executionId"] for r in result["results"]] == ids
    assert all(r["outcome"] == "failed" and r["error"]["retryable"] for r in result["results"])
    assert any("deadline" in r["reason"] for r in result["results"])
    assert all(emu.retry_count(i) == 0 for i in ids)


# -- the function folder -------------------------------------------------------------------------------


def test_cognites_function_folder_check_accepts_handler_py() -> None:
    from pathlib import Path

    from cognite.client._api.functions import validate_function_folder

    root = Path(__file__).resolve().parents[1]
    validate_function_folder(str(root), "handler.py", skip_folder_validation=False)


@pytest.mark.slow  # waits out a deadline of seconds
def test_a_deadline_that_cuts_a_sent_retry_request_says_it_may_have_been_applied(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_DEADLINE_SECONDS", "3")
    monkeypatch.setenv("RETRY_REQUEST_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("RETRY_SDK_MAX_RETRIES", "0")
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    not_reached = emu.seed_execution("wf", "1", "FAILED")["id"]
    # The retry request goes out after 1.5 s (a slow session) and outlives the 3 s deadline.
    emu.add_fault(Fault(method="POST", path_regex=r"/sessions$", latency=1.5, times=1))
    emu.add_fault(Fault(method="POST", path_regex=rf"/workflows/executions/{failed}/retry$", latency=5.0, times=1))
    emu.add_fault(Fault(method="GET", path_regex=rf"/workflows/executions/{not_reached}$", latency=5.0, times=1))

    result = by_id(handler.handle({"executionIds": [failed, not_reached]}, client, SECRETS))

    assert result[failed]["outcome"] == "failed"
    assert result[failed]["error"]["retryable"] is True
    assert "may have applied it" in result[failed]["reason"]
    assert result[not_reached]["outcome"] == "failed"
    assert "may have applied" not in result[not_reached]["reason"]


def test_a_429_storm_on_the_retry_request_does_not_use_up_attempts(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    storm = emu.add_fault(Fault(method="POST", path_regex=RETRY_PATH, statuses=[429], probability=1.0))

    for _ in range(3):
        [item] = handler.handle({"executionId": failed}, client, SECRETS)["results"]
        assert item["outcome"] == "failed"
        assert item["error"]["code"] == 429
        assert item["error"]["retryable"] is True
    emu.clear_faults()
    assert storm.applied > 3

    [item] = handler.handle({"executionId": failed}, client, SECRETS)["results"]

    assert item["outcome"] == "retried"
    assert item["attempts"] == 1
    assert emu.retry_count(failed) == 1


def test_a_misspelt_retry_variable_is_logged_once_per_process(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from workflow_retry import settings

    monkeypatch.setattr(settings, "_unknown_reported", False)
    monkeypatch.setenv("RETRY_CONCURENCY", "4")
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    with caplog.at_level("WARNING", logger="workflow_retry.settings"):
        first = handler.handle({"executionIds": [failed], "dryRun": True}, client)
        settings.cached_settings.cache_clear()  # a later call that reads the settings again
        second = handler.handle({"executionIds": [failed], "dryRun": True}, client)

    assert [r["outcome"] for r in first["results"] + second["results"]] == ["dry_run", "dry_run"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "workflow_retry.settings"]
    assert warnings == [
        "RETRY_CONCURENCY is not a setting of this tool and is ignored; did you mean RETRY_CONCURRENCY?"
    ]
