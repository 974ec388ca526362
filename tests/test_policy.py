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
    Decision,
    RetryPolicy,
    WorkflowSelector,
    decide,
    format_time,
    policy_overrides,
    resolve_policy,
    retry_was_applied,
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


# -- decide(): the edges of each window, to the millisecond -----------------------------------------
# A rule that moves by one millisecond changes what a user sees only at its edge: these pin each edge.

NO_COOLDOWN = RetryPolicy(cooldown_seconds=0, cooldown_max_seconds=0)


def test_an_execution_exactly_max_age_old_is_still_retried_and_one_ms_older_is_not() -> None:
    policy = RetryPolicy(max_age_hours=24)
    at_the_edge = execution(endTime=NOW - 24 * HOUR_MS)
    past_it = execution(endTime=NOW - 24 * HOUR_MS - 1)

    assert decide(at_the_edge, dry_run=False, policy=policy, now_ms=NOW).action is Action.RETRY
    skipped = decide(past_it, dry_run=False, policy=policy, now_ms=NOW)
    assert skipped.action is Action.SKIP
    assert skipped.reason == "ended 24.0 h ago, longer ago than maxAgeHours (24 h)"


def test_the_age_of_an_execution_without_end_time_counts_from_its_creation() -> None:
    never_ended = execution(endTime=None, createdTime=NOW - 25 * HOUR_MS)

    assert decide(never_ended, dry_run=False, now_ms=NOW).action is Action.SKIP


def test_a_failure_that_ended_when_the_last_retry_was_sent_is_a_new_failure_not_one_in_flight() -> None:
    # Only a failure that ended strictly before the last retry can be the one that retry answered.
    last = NOW - 1_000
    same_moment = decide(
        execution(endTime=last), dry_run=False, policy=NO_COOLDOWN, attempts=1, last_attempt_ms=last, now_ms=NOW
    )
    before = decide(
        execution(endTime=last - 1), dry_run=False, policy=NO_COOLDOWN, attempts=1, last_attempt_ms=last, now_ms=NOW
    )

    assert (same_moment.action, same_moment.attempt) == (Action.RETRY, 2)
    assert (before.action, before.not_before_ms) == (Action.DEFER, last + 60_000)


def test_the_in_flight_window_closes_after_exactly_sixty_seconds() -> None:
    failure = execution(endTime=NOW - 120_000)  # ended before the last retry: the read may predate it

    def at(now: int) -> Action:
        return decide(
            failure, dry_run=False, policy=NO_COOLDOWN, attempts=1, last_attempt_ms=NOW - 90_000, now_ms=now
        ).action

    assert at(NOW - 90_000 + 59_999) is Action.DEFER
    assert at(NOW - 90_000 + 60_000) is Action.RETRY


def test_the_cap_is_reached_at_max_attempts_not_before() -> None:
    policy = RetryPolicy(max_attempts=2, cooldown_seconds=0, cooldown_max_seconds=0)
    earlier = NOW - HOUR_MS

    one_left = decide(execution(), dry_run=False, policy=policy, attempts=1, last_attempt_ms=earlier, now_ms=NOW)
    none_left = decide(execution(), dry_run=False, policy=policy, attempts=2, last_attempt_ms=earlier, now_ms=NOW)

    assert (one_left.action, one_left.attempt) == (Action.RETRY, 2)
    assert (none_left.action, none_left.reason) == (
        Action.EXHAUSTED,
        "retried 2 time(s), maxAttempts is 2; last at 2027-01-15T07:00:00Z",
    )


def test_the_cooldown_ends_to_the_millisecond() -> None:
    policy = RetryPolicy(cooldown_seconds=60, cooldown_max_seconds=60)
    last = NOW - 100_000  # the failure below ended after it: not in flight

    def at(now: int) -> Decision:
        return decide(
            execution(endTime=NOW - 50_000), dry_run=False, policy=policy, attempts=1, last_attempt_ms=last, now_ms=now
        )

    cooling = at(last + 59_999)
    assert (cooling.action, cooling.not_before_ms) == (Action.DEFER, last + 60_000)
    assert cooling.reason.endswith("(in 0s)")
    assert at(last + 60_000).action is Action.RETRY


# -- what the user reads: reasons, times and error messages ------------------------------------------


def test_a_wait_is_shown_in_seconds_minutes_or_hours() -> None:
    policy = RetryPolicy(cooldown_seconds=7 * 86_400, cooldown_max_seconds=7 * 86_400, max_age_hours=30 * 24)
    last = NOW - 100_000

    def shown(left_ms: int) -> str:
        not_before = last + 7 * 86_400_000
        reason = decide(
            execution(endTime=NOW - 50_000),
            dry_run=False,
            policy=policy,
            attempts=1,
            last_attempt_ms=last,
            now_ms=not_before - left_ms,
        ).reason
        return reason.rsplit("(in ", 1)[1].rstrip(")")

    assert [shown(ms) for ms in (59_000, 60_000, 3_599_000, 3_600_000, 7_260_000)] == [
        "59s",
        "1m 00s",
        "59m 59s",
        "1h 00m",
        "2h 01m",
    ]


def test_times_in_reasons_are_utc_whatever_the_machines_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        exhausted = decide(execution(), dry_run=False, attempts=3, last_attempt_ms=NOW - HOUR_MS, now_ms=NOW)
    finally:
        monkeypatch.undo()
        time.tzset()

    assert exhausted.reason == "retried 3 time(s), maxAttempts is 3; last at 2027-01-15T07:00:00Z"


def test_an_execution_that_never_ended_is_in_flight_from_its_creation_time() -> None:
    # No endTime (CDF has not recorded one): createdTime stands for when it failed.
    created_before_the_retry = execution(endTime=None, createdTime=NOW - 40_000)
    created_after_it = execution(endTime=None, createdTime=NOW - 20_000)

    def action(item: dict[str, Any]) -> Action:
        return decide(
            item, dry_run=False, policy=NO_COOLDOWN, attempts=1, last_attempt_ms=NOW - 30_000, now_ms=NOW
        ).action

    assert action(created_before_the_retry) is Action.DEFER
    assert action(created_after_it) is Action.RETRY


def test_excluded_workflows_are_named_as_configured() -> None:
    policy = resolve_policy(None, {"RETRY_EXCLUDE_WORKFLOWS": "legacy, wf:1"})

    assert decide(execution(), dry_run=False, policy=policy, now_ms=NOW).reason == (
        "workflow wf:1 is excluded (excludeWorkflows 'wf:1')"
    )
    legacy = execution(workflowExternalId="legacy", version="7")
    assert decide(legacy, dry_run=False, policy=policy, now_ms=NOW).reason == (
        "workflow legacy:7 is excluded (excludeWorkflows 'legacy')"
    )


def test_included_workflows_become_the_sweeps_list_filters() -> None:
    policy = resolve_policy(None, {"RETRY_INCLUDE_WORKFLOWS": "nightly:2, hourly"})

    assert policy.workflow_filters() == [{"externalId": "nightly", "version": "2"}, {"externalId": "hourly"}]
    assert DEFAULT_POLICY.workflow_filters() == []


@pytest.mark.parametrize(
    ("status", "running"),
    [("RUNNING", True), ("running", True), ("FAILED", False), ("COMPLETED", False), (None, False)],
)
def test_an_execution_shows_a_retry_was_applied_only_when_it_runs(status: str | None, running: bool) -> None:
    assert retry_was_applied({"status": status} if status is not None else {}) is running


def test_an_environment_list_that_is_not_json_says_so_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError) as refused:
        resolve_policy(None, {"RETRY_INCLUDE_WORKFLOWS": '["wf", '})

    assert (
        str(refused.value)
        == "invalid policy from the environment: RETRY_INCLUDE_WORKFLOWS: Value error, is not a valid JSON array"
    )


def test_errors_name_the_path_to_the_bad_value_and_stop_after_five() -> None:
    with pytest.raises(ConfigurationError) as nested:
        policy_overrides({"includeWorkflows": [{"externalId": "wf", "version": ""}]})
    assert str(nested.value).startswith("invalid policy: includeWorkflows.0.version: String should have at least 1")

    with pytest.raises(ConfigurationError) as many:
        policy_overrides({f"unknown{i}": 1 for i in range(7)})
    assert str(many.value) == "invalid policy: " + "; ".join(
        f"unknown{i}: Extra inputs are not permitted" for i in range(5)
    )


def test_blank_environment_values_leave_the_defaults() -> None:
    blank = {variable: " " for variable in ("RETRY_MAX_ATTEMPTS", "RETRY_EXCLUDE_WORKFLOWS", "RETRY_MAX_AGE_HOURS")}

    assert resolve_policy(None, blank) == DEFAULT_POLICY


def test_layers_that_clash_are_refused_with_a_message_saying_so() -> None:
    with pytest.raises(ConfigurationError) as refused:
        resolve_policy(policy_overrides({"cooldownMaxSeconds": 10}), {"RETRY_COOLDOWN_SECONDS": "100"})

    assert str(refused.value) == (
        "invalid policy: policy: Value error, cooldownMaxSeconds must not be smaller than cooldownSeconds"
    )


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (None, "status is unknown; only FAILED, TIMED_OUT and TERMINATED are retried"),
        ("running", "status is RUNNING; only FAILED, TIMED_OUT and TERMINATED are retried"),
    ],
)
def test_an_execution_that_cannot_be_retried_says_its_status(status: str | None, reason: str) -> None:
    item = execution(status=status)
    if status is None:
        del item["status"]

    assert decide(item, dry_run=False, now_ms=NOW).reason == reason


def test_a_workflow_without_version_is_named_without_one() -> None:
    policy = RetryPolicy(include_workflows=(WorkflowSelector(external_id="other"),))

    assert decide(execution(version=None), dry_run=False, policy=policy, now_ms=NOW).reason == (
        "workflow wf is not in includeWorkflows"
    )


def test_terminal_errors_name_the_first_five_failed_tasks() -> None:
    tasks = [{"externalId": f"t{i}", "status": "FAILED_WITH_TERMINAL_ERROR"} for i in range(7)]

    assert decide(execution(executedTasks=tasks), dry_run=False, now_ms=NOW).reason == (
        "every failed task ended FAILED_WITH_TERMINAL_ERROR (t0, t1, t2, t3, t4); set retryTerminalErrors to retry them"
    )


@pytest.mark.parametrize("status", ["FAILED", "timed_out", "TERMINATED"])
def test_a_first_retry_reports_the_status_it_started_from(status: str) -> None:
    shown = status.upper()
    # No attempts and no time given: a first attempt, decided now.
    fresh = execution(status=status, endTime=int(time.time() * 1000) - 60_000)

    assert decide(fresh, dry_run=False).reason == f"retried from the point of failure (status was {shown})"
    assert decide(fresh, dry_run=True).reason == f"would retry: status is {shown} (attempt 1 of 3)"
    an_hour_ago = int(time.time() * 1000) - HOUR_MS  # the last retry: the default cooldown (300 s) has passed
    assert decide(fresh, dry_run=False, attempts=1, last_attempt_ms=an_hour_ago).action is Action.RETRY


def test_the_executions_own_reason_is_matched_against_skip_patterns() -> None:
    policy = RetryPolicy(skip_reason_patterns=("quota",))
    failed = execution(reasonForIncompletion="Quota exceeded", executedTasks=[])

    assert decide(failed, dry_run=False, policy=policy, now_ms=NOW).reason == (
        "reasonForIncompletion of the execution matches skip pattern 'quota'"
    )


def test_reasons_that_are_not_text_are_not_matched_and_do_not_crash() -> None:
    policy = RetryPolicy(skip_reason_patterns=("4",))
    hostile = execution(
        reasonForIncompletion=42, executedTasks=[{"externalId": "t", "status": "FAILED", "reasonForIncompletion": 4}]
    )

    assert decide(hostile, dry_run=False, policy=policy, now_ms=NOW).action is Action.RETRY


def test_an_in_flight_deferral_says_when_the_retry_was_sent_and_when_to_look_again() -> None:
    deferred = decide(
        execution(endTime=NOW - 60_000), dry_run=False, attempts=1, last_attempt_ms=NOW - 30_000, now_ms=NOW
    )

    assert deferred.reason == (
        "retry 1 was sent at 2027-01-15T07:59:30Z, after this failure: it may still be starting; "
        "to be looked at again from 2027-01-15T08:00:30Z"
    )


def test_a_cooldown_deferral_says_from_when() -> None:
    policy = RetryPolicy(cooldown_seconds=60, cooldown_max_seconds=60)
    cooling = decide(
        execution(endTime=NOW - 10_000),
        dry_run=False,
        policy=policy,
        attempts=1,
        last_attempt_ms=NOW - 20_000,
        now_ms=NOW,
    )

    assert cooling.reason == "cooling down: retry 2 of 3 is allowed from 2027-01-15T08:00:40Z (in 40s)"


def test_an_exhausted_execution_without_a_last_attempt_time_names_none() -> None:
    exhausted = decide(execution(), dry_run=False, attempts=3, last_attempt_ms=None, now_ms=NOW)

    assert exhausted.reason == "retried 3 time(s), maxAttempts is 3"


def test_without_cooldown_a_last_attempt_ahead_of_our_clock_does_not_hold_a_new_failure_back() -> None:
    # CDF's clock (endTime) and the ledger's times ahead of this machine's: no cooldown means no wait.
    ahead = decide(
        execution(endTime=NOW + 2_000),
        dry_run=False,
        policy=NO_COOLDOWN,
        attempts=1,
        last_attempt_ms=NOW + 1_000,
        now_ms=NOW,
    )

    assert ahead.action is Action.RETRY


def test_a_one_millisecond_cooldown_is_still_a_cooldown() -> None:
    policy = RetryPolicy(cooldown_seconds=0.001, cooldown_max_seconds=0.001)

    def at(now: int) -> Action:
        return decide(
            execution(endTime=NOW), dry_run=False, policy=policy, attempts=1, last_attempt_ms=NOW, now_ms=now
        ).action

    assert (at(NOW), at(NOW + 1)) == (Action.DEFER, Action.RETRY)


def test_a_dry_run_gives_the_number_the_attempt_would_have() -> None:
    assert decide(execution(), dry_run=True, attempts=0, now_ms=NOW).attempt == 1
    later = decide(execution(), dry_run=True, attempts=2, last_attempt_ms=NOW - 2 * HOUR_MS, now_ms=NOW)
    assert (later.action, later.attempt) == (Action.REPORT_ONLY, 3)


def test_a_policy_that_is_not_an_object_is_refused_in_full_words() -> None:
    with pytest.raises(ConfigurationError) as refused:
        policy_overrides(["maxAttempts", 1])

    assert str(refused.value) == "invalid policy: 'policy' must be an object"


@pytest.mark.parametrize("end_time", ["2026-01-01T00:00:00Z", True, 1.5e12, None])
def test_an_end_time_that_is_not_epoch_milliseconds_counts_as_absent(end_time: object) -> None:
    hostile = execution(endTime=end_time, createdTime=NOW - 60_000)

    assert decide(hostile, dry_run=False, now_ms=NOW).action is Action.RETRY


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
        # Equal to the operator's is not a loosening (the bounds are "no higher" and "no lower").
        {"maxAttempts": 2, "maxAgeHours": 24, "cooldownSeconds": 300, "cooldownFactor": 2, "cooldownMaxSeconds": 3600},
        {"includeWorkflows": ["wf-a:2", "wf-b:2"]},
        {"excludeWorkflows": ["wf-a:1", "wf-c"]},
        {"includeWorkflows": ["wf-b:2"], "excludeWorkflows": ["wf-a"]},  # wf-a covers the operator's wf-a:1
        {"skipReasonPatterns": ["quota", "forbidden"]},
        {"retryTerminalErrors": False},
        {"skipAccessErrors": True},
    ],
)
def test_a_call_may_tighten_every_field(call: dict[str, Any]) -> None:
    policy = resolve_policy(policy_overrides(call), OPERATOR)
    assert policy.max_attempts <= 2
    assert all(getattr(policy, field) == value for field, value in policy_overrides(call).items())


HOW_TO_ALLOW = (
    ". A payload may tighten the operator's limits, never loosen them "
    "(set RETRY_ALLOW_PAYLOAD_LOOSENING=true to allow that)"
)


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        ({"maxAttempts": 3}, "maxAttempts 3 is above the operator's limit 2 (RETRY_MAX_ATTEMPTS or its default)"),
        ({"maxAgeHours": 25}, "maxAgeHours 25 is above the operator's limit 24 (RETRY_MAX_AGE_HOURS or its default)"),
        (
            {"cooldownSeconds": 299},
            "cooldownSeconds 299 is below the operator's 300 (RETRY_COOLDOWN_SECONDS or its default)",
        ),
        (
            {"cooldownFactor": 1.5},
            "cooldownFactor 1.5 is below the operator's 2 (RETRY_COOLDOWN_FACTOR or its default)",
        ),
        (
            {"cooldownMaxSeconds": 1800},
            "cooldownMaxSeconds 1800 is below the operator's 3600 (RETRY_COOLDOWN_MAX_SECONDS or its default)",
        ),
        (
            {"includeWorkflows": ["wf-b"]},
            "includeWorkflows ['wf-b'] reaches ['wf-b'], beyond the operator's ['wf-a', 'wf-b:2'] "
            "(RETRY_INCLUDE_WORKFLOWS or its default)",
        ),
        (
            {"includeWorkflows": []},
            "includeWorkflows [] means every workflow, beyond the operator's ['wf-a', 'wf-b:2'] "
            "(RETRY_INCLUDE_WORKFLOWS or its default)",
        ),
        (
            {"excludeWorkflows": ["wf-c"]},
            "excludeWorkflows ['wf-c'] leaves out ['wf-a:1'], which the operator excludes "
            "(RETRY_EXCLUDE_WORKFLOWS or its default)",
        ),
        (
            {"skipReasonPatterns": ["forbidden"]},
            "skipReasonPatterns ['forbidden'] leaves out ['quota'], which the operator skips on "
            "(RETRY_SKIP_REASON_PATTERNS or its default)",
        ),
        (
            {"retryTerminalErrors": True},
            "retryTerminalErrors true retries what the operator does not (false) "
            "(RETRY_TERMINAL_ERRORS or its default)",
        ),
        (
            {"skipAccessErrors": False},
            "skipAccessErrors false retries what the operator skips (true) (RETRY_SKIP_ACCESS_ERRORS or its default)",
        ),
        (
            {"maxAttempts": 3, "cooldownSeconds": 1},
            "maxAttempts 3 is above the operator's limit 2 (RETRY_MAX_ATTEMPTS or its default); "
            "cooldownSeconds 1 is below the operator's 300 (RETRY_COOLDOWN_SECONDS or its default)",
        ),
    ],
)
def test_a_call_that_loosens_a_field_is_refused_naming_field_value_and_limit(
    call: dict[str, Any], problem: str
) -> None:
    with pytest.raises(PolicyOverrideError) as caught:
        resolve_policy(policy_overrides(call), OPERATOR)
    assert str(caught.value) == "override refused: " + problem + HOW_TO_ALLOW
    allowed = resolve_policy(policy_overrides(call), {**OPERATOR, "RETRY_ALLOW_PAYLOAD_LOOSENING": "true"})
    assert allowed.model_fields_set >= set(policy_overrides(call))


def test_a_long_value_in_a_refusal_is_cut_to_120_characters() -> None:
    names = [f"workflow-number-{i}" for i in range(12)]
    with pytest.raises(PolicyOverrideError) as caught:
        resolve_policy(policy_overrides({"includeWorkflows": names}), OPERATOR)
    shown = repr(names)[:117] + "..."
    assert str(caught.value) == (
        f"override refused: includeWorkflows {shown} reaches {shown}, beyond the operator's ['wf-a', 'wf-b:2'] "
        "(RETRY_INCLUDE_WORKFLOWS or its default)" + HOW_TO_ALLOW
    )
    # 120 characters exactly are shown whole.
    exact = ["x" * 116]  # repr: ['xxx...'] is 120 characters
    assert len(repr(exact)) == 120
    with pytest.raises(PolicyOverrideError) as whole:
        resolve_policy(policy_overrides({"skipReasonPatterns": exact}), OPERATOR)
    assert f"skipReasonPatterns {exact!r} leaves out" in str(whole.value)


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


def test_an_access_error_reads_in_full_and_names_the_failed_tasks_reason_before_the_executions() -> None:
    refused = "Forbidden: missing timeSeriesAcl:WRITE"
    tasks = [{"externalId": "load", "status": "FAILED", "reasonForIncompletion": refused}]
    both = execution(reasonForIncompletion="403 Forbidden: missing functionsAcl:WRITE", executedTasks=tasks)
    decision = decide(both, dry_run=False, now_ms=NOW)
    assert decision.reason == (
        "reasonForIncompletion of task 'load' is an access error (missing capability timeSeriesAcl:WRITE): a retry "
        "runs as this tool's principal and would fail the same way; not retried (give the principal the access, "
        "then retry by ID; RETRY_SKIP_ACCESS_ERRORS=false turns this check off)"
    )
    unnamed = decide(execution(reasonForIncompletion="Permission denied"), dry_run=False, now_ms=NOW)
    assert unnamed.reason is not None
    assert unnamed.reason.startswith("reasonForIncompletion of the execution is an access error: a retry runs")


def test_an_access_error_names_at_most_five_capabilities() -> None:
    acls = ", ".join(f"source{i}Acl:READ" for i in range(7))
    decision = decide(execution(reasonForIncompletion=f"Forbidden: missing {acls}"), dry_run=False, now_ms=NOW)
    named = ", ".join(f"source{i}Acl:READ" for i in range(5))
    assert decision.reason is not None
    assert f"an access error (missing capability {named}):" in decision.reason


def test_a_snake_case_key_in_a_call_policy_is_named_as_the_documented_camel_case_one() -> None:
    with pytest.raises(ConfigurationError) as refused:
        policy_overrides({"max_attempts": "three"})
    assert str(refused.value) == (
        "invalid policy: maxAttempts: Input should be a valid integer, unable to parse string as an integer"
    )


def test_a_tightening_call_that_clashes_with_the_operators_other_fields_is_refused_in_full_words() -> None:
    # Alone each layer is valid, and 250 s is a longer wait than the operator's 100 s: the clash is the
    # operator's cooldownMaxSeconds of 200 against the call's cooldownSeconds.
    operator = {"RETRY_COOLDOWN_SECONDS": "100", "RETRY_COOLDOWN_MAX_SECONDS": "200"}
    with pytest.raises(PolicyOverrideError) as refused:
        resolve_policy(policy_overrides({"cooldownSeconds": 250}), operator)
    assert str(refused.value) == (
        "invalid policy: policy: Value error, cooldownMaxSeconds must not be smaller than cooldownSeconds"
    )


def test_a_time_that_is_not_known_is_shown_as_a_dash() -> None:
    assert format_time(None) == "-"
    assert format_time(0) == "1970-01-01T00:00:00Z"
