"""The retry policy: its configuration layers, and every rule end to end through ``handle`` against the emulator.

The end-to-end tests use the default ledger of a Cognite Function (RAW, in the emulator), so the cap
and the cooldown are counted across separate calls, as they would be across separate function calls.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry.errors import ConfigurationError, PolicyOverrideError
from workflow_retry.policy import (
    DEFAULT_POLICY,
    Action,
    RetryPolicy,
    WorkflowSelector,
    decide,
    policy_overrides,
    resolve_policy,
)

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
RETRY_PATH = r"/workflows/executions/[^/]+/retry$"
HOUR_MS = 3_600_000


def retries(emu: CdfEmulator) -> list[Any]:
    return emu.requests_matching("POST", RETRY_PATH)


def only(result: dict[str, Any]) -> dict[str, Any]:
    [item] = result["results"]
    return dict(item)


# -- configuration: call data over environment over defaults ----------------------------------------


def test_defaults_are_documented_values() -> None:
    policy = resolve_policy(None, {})
    assert policy == DEFAULT_POLICY
    assert (policy.max_attempts, policy.max_age_hours, policy.retry_terminal_errors) == (3, 24.0, False)
    assert [policy.cooldown_after(n) for n in (0, 1, 2, 3, 10)] == [0.0, 300.0, 600.0, 1200.0, 3600.0]


def test_environment_overrides_defaults_and_call_data_overrides_environment() -> None:
    environment = {
        "RETRY_MAX_ATTEMPTS": "5",
        "RETRY_COOLDOWN_SECONDS": "10",
        "RETRY_INCLUDE_WORKFLOWS": "wf-a, wf-b:2",
        "RETRY_SKIP_REASON_PATTERNS": '["quota", "x{1,3}"]',
        "RETRY_TERMINAL_ERRORS": "true",
    }
    call = policy_overrides({"maxAttempts": 2, "excludeWorkflows": ["wf-c"]})

    policy = resolve_policy(call, environment)

    assert policy.max_attempts == 2  # the call wins
    assert policy.cooldown_seconds == 10  # the environment wins over the default
    assert policy.include_workflows == (
        WorkflowSelector(external_id="wf-a"),
        WorkflowSelector(external_id="wf-b", version="2"),
    )
    assert policy.exclude_workflows == (WorkflowSelector(external_id="wf-c"),)
    assert policy.skip_reason_patterns == ("quota", "x{1,3}")
    assert policy.retry_terminal_errors is True
    assert policy.max_age_hours == 24.0  # nobody set it


def test_a_single_skip_pattern_may_hold_commas() -> None:
    assert resolve_policy(None, {"RETRY_SKIP_REASON_PATTERNS": "a{1,2}"}).skip_reason_patterns == ("a{1,2}",)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"maxAtempts": 3}, "maxAtempts"),
        ({"maxAttempts": 0}, "maxAttempts"),
        ({"maxAttempts": "many"}, "maxAttempts"),
        ({"cooldownSeconds": 100, "cooldownMaxSeconds": 10}, "cooldownMaxSeconds"),
        ({"skipReasonPatterns": ["(unclosed"]}, "not a valid regular expression"),
        ({"skipReasonPatterns": [""]}, "empty"),
        ({"includeWorkflows": ["wf"], "excludeWorkflows": ["wf"]}, "both included and excluded"),
        ({"maxAgeHours": -1}, "maxAgeHours"),
    ],
)
def test_invalid_call_policy_is_a_configuration_error_naming_the_key(call: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid policy") as caught:
        policy_overrides(call)
    assert message in str(caught.value)


def test_layers_that_are_valid_alone_but_not_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="cooldownMaxSeconds"):
        resolve_policy(policy_overrides({"cooldownMaxSeconds": 10}), {"RETRY_COOLDOWN_SECONDS": "100"})


def test_invalid_environment_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="RETRY_MAX_ATTEMPTS"):
        resolve_policy(None, {"RETRY_MAX_ATTEMPTS": "three"})


def test_workflow_selector_forms() -> None:
    assert WorkflowSelector.model_validate("wf") == WorkflowSelector(external_id="wf")
    assert WorkflowSelector.model_validate("team:wf:3") == WorkflowSelector(external_id="team:wf", version="3")
    assert WorkflowSelector.model_validate({"externalId": "team:wf"}).version is None
    assert WorkflowSelector(external_id="wf", version="2").matches("wf", "2")
    assert not WorkflowSelector(external_id="wf", version="2").matches("wf", "1")
    assert WorkflowSelector(external_id="wf").matches("wf", "7")


# -- decide(): pure, one rule at a time --------------------------------------------------------------

NOW = 1_800_000_000_000


def execution(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "059edaa4-a17a-4102-910e-2c3591500cce",
        "workflowExternalId": "wf",
        "version": "1",
        "status": "FAILED",
        "createdTime": NOW - HOUR_MS,
        "endTime": NOW - 60_000,
        "reasonForIncompletion": "task failed",
        "executedTasks": [{"externalId": "t1", "status": "FAILED", "reasonForIncompletion": "boom"}],
    }
    return base | overrides


def test_decisions_in_rule_order() -> None:
    policy = RetryPolicy(max_attempts=2, cooldown_seconds=60, skip_reason_patterns=("quota exceeded",))
    assert decide(execution(), dry_run=False, policy=policy, now_ms=NOW).action is Action.RETRY
    assert decide(execution(status="RUNNING"), dry_run=False, policy=policy, now_ms=NOW).action is Action.SKIP
    old = execution(endTime=NOW - 25 * HOUR_MS)
    assert "maxAgeHours" in decide(old, dry_run=False, policy=policy, now_ms=NOW).reason
    tasks = [{"externalId": "load", "status": "FAILED", "reasonForIncompletion": "Quota Exceeded for x"}]
    skipped = decide(execution(executedTasks=tasks), dry_run=False, policy=policy, now_ms=NOW)
    assert (skipped.action, skipped.reason) == (
        Action.SKIP,
        "reasonForIncompletion of task 'load' matches skip pattern 'quota exceeded'",
    )
    exhausted = decide(execution(), dry_run=False, policy=policy, attempts=2, last_attempt_ms=NOW - HOUR_MS, now_ms=NOW)
    assert exhausted.action is Action.EXHAUSTED
    cooling = decide(execution(), dry_run=False, policy=policy, attempts=1, last_attempt_ms=NOW - 30_000, now_ms=NOW)
    # The failure it saw ended before that retry, moments ago: a stale read, or that retry was lost.
    assert (cooling.action, cooling.not_before_ms) == (Action.DEFER, NOW + 30_000)
    assert "may still be starting" in cooling.reason
    later = decide(execution(), dry_run=False, policy=policy, attempts=1, last_attempt_ms=NOW - 90_000, now_ms=NOW)
    assert later.action is Action.RETRY  # cooled down, and this failure came after the last retry
    cooling = decide(
        execution(endTime=NOW - 10_000),
        dry_run=False,
        policy=policy,
        attempts=1,
        last_attempt_ms=NOW - 30_000,
        now_ms=NOW,
    )
    assert (cooling.action, cooling.not_before_ms) == (Action.DEFER, NOW + 30_000)
    assert decide(execution(), dry_run=True, policy=policy, now_ms=NOW).action is Action.REPORT_ONLY


def test_terminal_errors_are_not_retried_unless_asked() -> None:
    tasks = [
        {"externalId": "a", "status": "FAILED_WITH_TERMINAL_ERROR"},
        {"externalId": "b", "status": "COMPLETED"},
    ]
    assert decide(execution(executedTasks=tasks), dry_run=False, now_ms=NOW).action is Action.SKIP
    mixed = [*tasks, {"externalId": "c", "status": "FAILED"}]
    assert decide(execution(executedTasks=mixed), dry_run=False, now_ms=NOW).action is Action.RETRY
    allowed = RetryPolicy(retry_terminal_errors=True)
    assert decide(execution(executedTasks=tasks), dry_run=False, policy=allowed, now_ms=NOW).action is Action.RETRY


def test_include_and_exclude_with_versions() -> None:
    only_v2 = RetryPolicy(include_workflows=(WorkflowSelector(external_id="wf", version="2"),))
    assert (
        decide(execution(), dry_run=False, policy=only_v2, now_ms=NOW).reason
        == "workflow wf:1 is not in includeWorkflows"
    )
    assert decide(execution(version="2"), dry_run=False, policy=only_v2, now_ms=NOW).action is Action.RETRY
    no_wf = RetryPolicy(exclude_workflows=(WorkflowSelector(external_id="wf"),))
    assert "excluded" in decide(execution(), dry_run=False, policy=no_wf, now_ms=NOW).reason


# -- every rule end to end: handle() against the emulator, RAW ledger ----------------------------------


@pytest.mark.usefixtures("fast_env")
def test_the_cap_holds_across_invocations_and_the_give_up_is_announced_once(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RETRY_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("RETRY_COOLDOWN_SECONDS", "0")
    emu.auto_fail_after_retry = True  # every retry fails again at once
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    outcomes = []
    for _ in range(4):
        time.sleep(0.002)  # the next failure ends after the last attempt's time
        outcomes.append(only(handler.handle({"executionId": failed}, client, SECRETS)))

    assert [o["outcome"] for o in outcomes] == ["retried", "retried", "exhausted", "exhausted"]
    assert [o["attempts"] for o in outcomes] == [1, 2, 2, 2]
    assert "(announced)" in outcomes[2]["reason"]
    assert "gave up earlier" in outcomes[3]["reason"]
    assert emu.retry_count(failed) == 2
    assert len(retries(emu)) == 2
    give_ups = [r for r in caplog.records if r.name == "workflow_retry.giveup" and failed in r.getMessage()]
    assert len(give_ups) == 1
    row = emu.raw_rows("workflow_retry", "attempts")[failed]
    assert (row["attempts"], row["workflowExternalId"], row["lastOutcome"]) == (2, "wf", "gave_up")


@pytest.mark.usefixtures("fast_env")
def test_cooldown_defers_the_next_retry(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_COOLDOWN_SECONDS", "3600")
    emu.auto_fail_after_retry = True
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    first = only(handler.handle({"executionId": failed}, client, SECRETS))
    time.sleep(0.002)
    second = only(handler.handle({"executionId": failed}, client, SECRETS))

    assert first["outcome"] == "retried"
    assert second["outcome"] == "deferred"
    assert "cooling down: retry 2 of 3 is allowed from" in second["reason"]
    assert second["error"] is None
    assert emu.retry_count(failed) == 1


@pytest.mark.usefixtures("fast_env")
def test_terminal_errors_old_executions_patterns_and_workflows_are_skipped_without_a_session(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_EXCLUDE_WORKFLOWS", "legacy")
    now = int(time.time() * 1000)
    terminal = emu.seed_execution(
        "wf", "1", "FAILED", tasks=[{"status": "FAILED_WITH_TERMINAL_ERROR", "reasonForIncompletion": "bad input"}]
    )["id"]
    old = emu.seed_execution("wf", "1", "FAILED", created_time=now - 30 * HOUR_MS, end_time=now - 26 * HOUR_MS)["id"]
    quota = emu.seed_execution(
        "wf", "1", "FAILED", tasks=[{"status": "FAILED", "reasonForIncompletion": "Quota exceeded"}]
    )["id"]
    legacy = emu.seed_execution("legacy", "1", "FAILED")["id"]
    payload = {"executionIds": [terminal, old, quota, legacy], "policy": {"skipReasonPatterns": ["quota"]}}

    result = handler.handle(payload, client, SECRETS)

    reasons = {r["executionId"]: r["reason"] for r in result["results"]}
    assert {r["outcome"] for r in result["results"]} == {"skipped"}
    assert "FAILED_WITH_TERMINAL_ERROR" in reasons[terminal]
    assert "maxAgeHours" in reasons[old]
    assert "matches skip pattern 'quota'" in reasons[quota]
    assert "excluded" in reasons[legacy]
    assert emu.requests_matching("POST", r"/sessions$") == []
    assert retries(emu) == []


@pytest.mark.usefixtures("fast_env")
def test_dry_run_counts_nothing_and_changes_nothing(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    item = only(handler.handle({"executionId": failed, "dryRun": True}, client, SECRETS))

    assert item["outcome"] == "dry_run"
    assert "attempt 1 of 3" in item["reason"]
    assert emu.requests_matching("POST", r"/sessions$|/retry$|/raw/") == []
    assert emu.raw_rows("workflow_retry", "attempts") == {}
    assert emu.retry_count(failed) == 0


@pytest.mark.usefixtures("fast_env")
def test_an_invalid_call_policy_fails_the_call_before_any_request(emu: CdfEmulator, client: CogniteClient) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.clear_requests()
    with pytest.raises(ConfigurationError, match="maxAttempts"):
        handler.handle({"executionId": failed, "policy": {"maxAttempts": 0}}, client, SECRETS)
    assert emu.requests == []


@pytest.mark.usefixtures("fast_env")
def test_ledger_none_is_explicit_and_every_result_says_the_cap_is_not_enforced(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_LEDGER", "none")
    emu.auto_fail_after_retry = True
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    results = [handler.handle({"executionIds": [failed, "nope"]}, client, SECRETS)["results"] for _ in range(3)]

    assert [r[0]["outcome"] for r in results] == ["retried"] * 3  # nothing counted: no cap, no cooldown
    assert all(r["capEnforced"] is False for rs in results for r in rs)
    assert all("attempt cap not enforced (ledger: none)" in rs[0]["reason"] for rs in results)
    assert emu.retry_count(failed) == 3
    assert emu.requests_matching(None, r"/raw/") == []


# -- skip patterns from outside run in linear time (RE2) -------------------------------------------

BACKTRACKING_PATTERN = r"(\w+\s?)+:$"
"""Exponential in a backtracking engine: 46 s on a 44-character reason with Python's ``re``."""
NORMAL_REASON = "Connection reset by peer while reading batch"  # 44 characters, no colon at the end


@pytest.mark.usefixtures("fast_env")
def test_a_backtracking_pattern_from_the_payload_cannot_hold_the_call_past_its_deadline(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_DEADLINE_SECONDS", "3")
    monkeypatch.setenv("RETRY_REQUEST_TIMEOUT_SECONDS", "2")
    assert len(NORMAL_REASON) == 44
    failed = emu.seed_execution(
        "wf", "1", "FAILED", reason=NORMAL_REASON, tasks=[{"status": "FAILED", "reasonForIncompletion": NORMAL_REASON}]
    )["id"]
    payload = {"executionId": failed, "policy": {"skipReasonPatterns": [BACKTRACKING_PATTERN]}}

    started = time.monotonic()
    item = only(handler.handle(payload, client, SECRETS))
    elapsed = time.monotonic() - started

    assert elapsed < 3
    assert item["outcome"] == "retried"  # the pattern does not match: the reason has no colon at its end
    assert emu.retry_count(failed) == 1


def test_skip_patterns_stay_case_insensitive_searches() -> None:
    policy = RetryPolicy(skip_reason_patterns=(r"quota\s+exceeded", r"^HTTP 4\d\d", BACKTRACKING_PATTERN))

    def action(reason: str) -> Action:
        tasks = [{"externalId": "load", "status": "FAILED", "reasonForIncompletion": reason}]
        return decide(execution(executedTasks=tasks), dry_run=False, policy=policy, now_ms=NOW).action

    assert action("the QUOTA   Exceeded today") is Action.SKIP
    assert action("http 429 from source") is Action.SKIP
    assert action("source said: HTTP 429") is Action.RETRY
    assert action("bad line:") is Action.SKIP
    assert action("\ud800 QUOTA exceeded") is Action.SKIP  # a lone surrogate (JSON can carry one) is no crash
    with pytest.raises(ConfigurationError, match="lone surrogate"):
        policy_overrides({"skipReasonPatterns": ["\udc00"]})


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [(r"(a+)\1", "backreference"), (r"fail(?=ed)", "lookahead"), (r"(?<!not )found", "lookbehind")],
)
def test_patterns_a_linear_time_engine_cannot_run_are_refused_when_the_policy_is_read(
    pattern: str, feature: str
) -> None:
    with pytest.raises(ConfigurationError, match="linear-time") as caught:
        policy_overrides({"skipReasonPatterns": [pattern]})
    assert "skipReasonPatterns" in str(caught.value)
    with pytest.raises(ConfigurationError, match="RETRY_SKIP_REASON_PATTERNS"):
        resolve_policy(None, {"RETRY_SKIP_REASON_PATTERNS": pattern})


# -- the environment's policy is the ceiling of a call's -------------------------------------------

OPERATOR = {
    "RETRY_MAX_ATTEMPTS": "2",
    "RETRY_INCLUDE_WORKFLOWS": "wf-a,wf-b:2",
    "RETRY_EXCLUDE_WORKFLOWS": "wf-a:1",
    "RETRY_SKIP_REASON_PATTERNS": "quota",
}


@pytest.mark.parametrize(
    "call",
    [
        {"maxAttempts": 1},
        {"maxAgeHours": 0.5},
        {"cooldownSeconds": 900, "cooldownFactor": 3, "cooldownMaxSeconds": 7200},
        {"includeWorkflows": ["wf-a:2", "wf-b:2"]},
        {"excludeWorkflows": ["wf-a:1", "wf-c"]},
        {"includeWorkflows": ["wf-b:2"], "excludeWorkflows": ["wf-a"]},  # wf-a covers the operator's wf-a:1
        {"skipReasonPatterns": ["quota", "forbidden"]},
        {"retryTerminalErrors": False},
    ],
)
def test_a_call_may_tighten_every_field(call: dict[str, Any]) -> None:
    policy = resolve_policy(policy_overrides(call), OPERATOR)
    assert policy.max_attempts <= 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"maxAttempts": 3}, "maxAttempts 3 is above the operator's limit 2 (RETRY_MAX_ATTEMPTS"),
        ({"maxAgeHours": 25}, "maxAgeHours 25 is above the operator's limit 24 (RETRY_MAX_AGE_HOURS"),
        ({"cooldownSeconds": 299}, "cooldownSeconds 299 is below the operator's 300"),
        ({"cooldownFactor": 1.5}, "cooldownFactor 1.5 is below the operator's 2"),
        ({"cooldownMaxSeconds": 1800}, "cooldownMaxSeconds 1800 is below the operator's 3600"),
        ({"includeWorkflows": ["wf-b"]}, "includeWorkflows ['wf-b'] reaches ['wf-b']"),
        ({"includeWorkflows": []}, "means every workflow"),
        ({"excludeWorkflows": ["wf-c"]}, "leaves out ['wf-a:1'], which the operator excludes"),
        ({"skipReasonPatterns": ["forbidden"]}, "leaves out ['quota'], which the operator skips on"),
        ({"retryTerminalErrors": True}, "retryTerminalErrors true retries what the operator does not"),
    ],
)
def test_a_call_that_loosens_a_field_is_refused_naming_field_value_and_limit(
    call: dict[str, Any], message: str
) -> None:
    with pytest.raises(PolicyOverrideError, match="override refused") as caught:
        resolve_policy(policy_overrides(call), OPERATOR)
    assert message in str(caught.value)
    assert "RETRY_ALLOW_PAYLOAD_LOOSENING=true" in str(caught.value)
    allowed = resolve_policy(policy_overrides(call), {**OPERATOR, "RETRY_ALLOW_PAYLOAD_LOOSENING": "true"})
    assert allowed.model_fields_set >= set(policy_overrides(call))


def test_the_loosening_opt_in_must_be_a_boolean() -> None:
    with pytest.raises(ConfigurationError, match="RETRY_ALLOW_PAYLOAD_LOOSENING"):
        resolve_policy(policy_overrides({"maxAttempts": 1}), {"RETRY_ALLOW_PAYLOAD_LOOSENING": "maybe"})


# -- access errors: a retry runs as the same principal, so it fails the same way ---------------------


@pytest.mark.parametrize(
    ("reason", "capability"),
    [
        ("Request failed with status 403", None),
        ('{"error": {"code": 403, "message": "not allowed"}}', None),
        ("HTTP/1.1 403 from the source", None),
        ("403 Forbidden", None),
        ("HTTP 403: forbidden", None),
        ("Forbidden: missing capability functionsAcl:WRITE", "functionsAcl:WRITE"),
        (
            "Missing capabilities: transformationsAcl:READ, dataSetsAcl:OWNER",
            "transformationsAcl:READ, dataSetsAcl:OWNER",
        ),
        ("missing capability timeSeriesAcl", "timeSeriesAcl"),
        ("The principal has insufficient access rights to the data set", None),
        ("Insufficient permissions to run the transformation", None),
        ("Access denied for the function call", None),
        ("Permission denied", None),
    ],
)
def test_access_errors_are_skipped_and_marked_for_announcement(reason: str, capability: str | None) -> None:
    tasks = [{"externalId": "call", "status": "FAILED", "reasonForIncompletion": reason}]
    decision = decide(execution(executedTasks=tasks), dry_run=False, now_ms=NOW)
    assert decision.action is Action.SKIP
    assert decision.announce is True
    assert "access error" in decision.reason
    assert "task 'call'" in decision.reason
    if capability is not None:
        assert f"missing capability {capability}" in decision.reason


@pytest.mark.parametrize(
    "reason",
    [
        "task failed",
        "Timed out after 4030 seconds",
        "HTTP 404 not found",
        "Connection reset by peer",
        "HTTP 401",
        "loaded 403 rows, then the source closed the connection",
    ],
)
def test_other_failures_are_not_access_errors(reason: str) -> None:
    assert decide(execution(reasonForIncompletion=reason), dry_run=False, now_ms=NOW).action is Action.RETRY


def test_the_access_error_skip_can_be_turned_off_by_the_operator_only() -> None:
    forbidden = execution(reasonForIncompletion="403 Forbidden")
    assert decide(forbidden, dry_run=False, now_ms=NOW).action is Action.SKIP
    off = resolve_policy(None, {"RETRY_SKIP_ACCESS_ERRORS": "false"})
    assert decide(forbidden, dry_run=False, policy=off, now_ms=NOW).action is Action.RETRY
    with pytest.raises(PolicyOverrideError, match="skipAccessErrors false"):
        resolve_policy(policy_overrides({"skipAccessErrors": False}), {})
    assert resolve_policy(
        policy_overrides({"skipAccessErrors": True}), {"RETRY_SKIP_ACCESS_ERRORS": "false"}
    ).skip_access_errors
