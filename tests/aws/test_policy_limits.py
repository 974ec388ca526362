"""The retry policy as Lambda events carry it: what a payload's ``policy`` may do to a batch and to the limits.

Real SQS and SNS sample envelopes, a real CogniteClient over HTTP to the CDF emulator.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from emulator import CdfEmulator
from tests.aws import senders
from tests.aws.conftest import AppFactory
from tests.aws.samples import http_event, lambda_context, sns_event, sqs_event
from workflow_retry.errors import ConfigurationError

BACKTRACKING_PATTERN = r"(\w+\s?)+:$"
NORMAL_REASON = "Connection reset by peer while reading batch"


def seeded_failure(emu: CdfEmulator, workflow: str = "wf", **kwargs: Any) -> str:
    tasks = [{"status": "FAILED", "reasonForIncompletion": NORMAL_REASON}]
    return str(emu.seed_execution(workflow, "1", "FAILED", reason=NORMAL_REASON, tasks=tasks, **kwargs)["id"])


def test_one_poisoned_sqs_record_does_not_stop_the_five_normal_ones(
    new_app: AppFactory, emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_DEADLINE_SECONDS", "3")
    monkeypatch.setenv("RETRY_REQUEST_TIMEOUT_SECONDS", "2")
    poisoned = seeded_failure(emu)
    normal = [seeded_failure(emu) for _ in range(5)]
    event = sqs_event(
        {"executionId": poisoned, "policy": {"skipReasonPatterns": [BACKTRACKING_PATTERN]}},
        *({"executionId": execution_id} for execution_id in normal),
    )

    started = time.monotonic()
    response = new_app().handle(event, lambda_context())
    elapsed = time.monotonic() - started

    assert response == {"batchItemFailures": []}
    assert elapsed < 3
    assert [emu.retry_count(execution_id) for execution_id in [poisoned, *normal]] == [1] * 6


# -- the operator's limits are ceilings --------------------------------------------------------------

HOUR_MS = 3_600_000
OPERATOR_LIMITS = {
    "RETRY_EXCLUDE_WORKFLOWS": "payroll",
    "RETRY_MAX_ATTEMPTS": "1",
    "RETRY_MAX_AGE_HOURS": "24",
    "RETRY_SWEEP_MAX_RESTARTS": "2",
    "RETRY_LEDGER": "raw",
}
LOOSENING_OVERRIDES: list[dict[str, Any]] = [
    {"excludeWorkflows": []},
    {"excludeWorkflows": ["other"]},
    {"maxAttempts": 6},
    {"maxAgeHours": 200},
    {"retryTerminalErrors": True},
    {"cooldownSeconds": 0},
]


@pytest.fixture
def limited(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in OPERATOR_LIMITS.items():
        monkeypatch.setenv(name, value)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused" in r.getMessage() and "loosen" in r.getMessage()]


@pytest.mark.usefixtures("limited")
def test_sqs_messages_cannot_loosen_the_operators_policy(
    new_app: AppFactory, emu: CdfEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    payroll = seeded_failure(emu, "payroll")
    event = sqs_event(*({"executionId": payroll, "policy": policy} for policy in LOOSENING_OVERRIDES))

    response = new_app().handle(event, lambda_context())

    assert response == {"batchItemFailures": []}  # refused for good: the same message would be refused again
    assert emu.retry_count(payroll) == 0
    assert emu.requests_matching("POST", r"/sessions$") == []
    messages = refusals(caplog)
    assert len(messages) == 6
    assert any("excludeWorkflows" in m and "'payroll'" in m for m in messages)
    assert any("maxAttempts 6" in m and "RETRY_MAX_ATTEMPTS" in m and "1" in m for m in messages)
    assert any("maxAgeHours 200" in m and "24" in m for m in messages)
    assert any("retryTerminalErrors" in m for m in messages)
    assert any("cooldownSeconds 0" in m and "300" in m for m in messages)  # the default is the ceiling


@pytest.mark.usefixtures("limited")
def test_an_sns_message_cannot_retry_a_failure_older_than_the_operators_age_limit(
    new_app: AppFactory, emu: CdfEmulator
) -> None:
    now = int(time.time() * 1000)
    old = seeded_failure(emu, created_time=now - 145 * HOUR_MS, end_time=now - 144 * HOUR_MS)
    event = sns_event({"executionId": old, "policy": {"maxAgeHours": 24 * 7}})

    result = new_app().handle(event, lambda_context())

    [delivery] = result["deliveries"]
    assert delivery["status"] == "invalid"
    assert "maxAgeHours 168" in delivery["reason"]
    assert "RETRY_MAX_AGE_HOURS" in delivery["reason"]
    assert emu.retry_count(old) == 0


@pytest.mark.usefixtures("limited")
def test_a_signed_sweep_cannot_raise_max_restarts_or_lift_an_exclusion(new_app: AppFactory, emu: CdfEmulator) -> None:
    secret = senders.new_webhook_secret()
    app = new_app({"WEBHOOK_SECRET": secret})
    emu.seed_many(40, workflow_external_id="payroll", status="FAILED")
    payload = {"sweep": {"maxRestarts": 1000}, "policy": {"excludeWorkflows": [], "maxAttempts": 100}}

    response = app.handle(http_event("function-url", *senders.signed(payload, secret)), lambda_context())

    assert response["statusCode"] == 400
    error = json.loads(response["body"])["error"]
    assert "sweep.maxRestarts 1000" in error
    assert "RETRY_SWEEP_MAX_RESTARTS" in error
    assert "excludeWorkflows" in error
    assert "maxAttempts 100" in error
    assert emu.requests_matching("POST", r"/retry$") == []
    assert emu.requests_matching("POST", r"/list$") == []


@pytest.mark.usefixtures("limited")
def test_a_payload_may_tighten_the_policy(new_app: AppFactory, emu: CdfEmulator) -> None:
    kept, newly_excluded = seeded_failure(emu, "wf-a"), seeded_failure(emu, "wf-b")
    now = int(time.time() * 1000)
    older = seeded_failure(emu, "wf-a", created_time=now - 3 * HOUR_MS, end_time=now - 2 * HOUR_MS)
    tighter = {
        "excludeWorkflows": ["payroll", "wf-b:1"],
        "maxAgeHours": 1,
        "cooldownSeconds": 600,
        "cooldownMaxSeconds": 7200,
        "skipReasonPatterns": ["quota"],
        "includeWorkflows": ["wf-a", "wf-b"],
    }

    result = new_app().handle({"executionIds": [kept, newly_excluded, older], "policy": tighter}, lambda_context())

    outcomes = {r["executionId"]: r["outcome"] for r in result["results"]}
    assert outcomes == {kept: "retried", newly_excluded: "skipped", older: "skipped"}


@pytest.mark.usefixtures("limited")
def test_the_operator_may_allow_payloads_to_loosen_the_policy(
    new_app: AppFactory, emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_ALLOW_PAYLOAD_LOOSENING", "true")
    payroll = seeded_failure(emu, "payroll")

    result = new_app().handle({"executionId": payroll, "policy": {"excludeWorkflows": []}}, lambda_context())

    assert [r["outcome"] for r in result["results"]] == ["retried"]


def test_the_defaults_are_the_ceiling_when_the_environment_sets_nothing(new_app: AppFactory, emu: CdfEmulator) -> None:
    failed = seeded_failure(emu)

    with pytest.raises(ConfigurationError, match=r"maxAttempts 5 .*3") as caught:
        new_app().handle({"executionId": failed, "policy": {"maxAttempts": 5}}, lambda_context())

    assert "RETRY_ALLOW_PAYLOAD_LOOSENING" in str(caught.value)
    assert emu.requests_matching("POST", r"/sessions$|/retry$") == []


def test_a_refused_override_is_logged_at_error_level(
    new_app: AppFactory, emu: CdfEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    failed = seeded_failure(emu)
    caplog.set_level(logging.INFO)

    new_app().handle(sqs_event({"executionId": failed, "policy": {"maxAttempts": 4}}), lambda_context())

    assert any(r.levelno == logging.ERROR and "maxAttempts 4" in r.getMessage() for r in caplog.records)
