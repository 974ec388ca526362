"""What a user sees of each outcome, whole: the result, its log line, the give-up announcement, the ledger row.

Each test runs a real call (``function.execute``, RAW ledger unless it says otherwise) against the emulator
and compares what comes out whole, not by a word it contains: the words of a reason, the fields of a log
line and of an announcement, and the row the ledger keeps are what operators and alerts read.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from cognite.client import CogniteClient

from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry import function
from workflow_retry.cdf import ClientCredentials
from workflow_retry.giveup import Announcer, GiveUp
from workflow_retry.models import compact_execution
from workflow_retry.payloads import parse_payload
from workflow_retry.policy import format_time
from workflow_retry.settings import Settings

CREDENTIALS = ClientCredentials(FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET)
TTL_SECONDS = 168 * 3600  # RETRY_LEDGER_TTL_HOURS' default
ROWS = r"/raw/dbs/[^/]+/tables/[^/]+/rows$"
ACCESS_REASON = "Forbidden (403): missing capability functionsAcl:WRITE"
ACCESS_WHY = (
    "reasonForIncompletion of task 'publish' is an access error (missing capability functionsAcl:WRITE): a retry "
    "runs as this tool's principal and would fail the same way; not retried (give the principal the access, then "
    "retry by ID; RETRY_SKIP_ACCESS_ERRORS=false turns this check off)"
)
INJECTED_400 = "Bad Request (injected fault)"
EXECUTION_LOG_FIELDS = ("event", "execution_id", "workflow", "version", "outcome", "attempt", "reason", "retryable")

pytestmark = pytest.mark.usefixtures("fast_env")


@pytest.fixture(autouse=True)
def _no_cooldown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_COOLDOWN_SECONDS", "0")
    monkeypatch.setenv("RETRY_COOLDOWN_MAX_SECONDS", "0")


def call(client: CogniteClient, payload: dict[str, Any], announcer: Announcer) -> dict[str, Any]:
    """The one result of a call, as the caller receives it."""
    report = function.execute(parse_payload(payload), client, CREDENTIALS, Settings(), announcer=announcer)
    [result] = report.to_dict()["results"]
    return dict(result)


def seed_access_error(emu: CdfEmulator) -> str:
    tasks = [
        {"externalId": "build", "status": "COMPLETED"},
        {"externalId": "publish", "status": "FAILED", "reasonForIncompletion": ACCESS_REASON},
    ]
    execution_id: str = emu.seed_execution("wf-deploy", "2", "FAILED", tasks=tasks, reason=ACCESS_REASON)["id"]
    return execution_id


def as_reported(emu: CdfEmulator, execution_id: str) -> dict[str, Any]:
    """The execution as a result shows it: compact, as CDF answers it now."""
    execution = emu.get_execution(execution_id)
    assert execution is not None
    return compact_execution(execution)


def ledger_row(emu: CdfEmulator, execution_id: str) -> dict[str, Any] | None:
    return emu.raw_rows("workflow_retry", "attempts").get(execution_id)


def lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == logger]


def execution_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, dict[str, Any]]]:
    """The per-execution log lines: level, message and their structured fields."""
    return [
        (r.levelname, r.getMessage(), {k: getattr(r, k) for k in EXECUTION_LOG_FIELDS})
        for r in caplog.records
        if r.name == "workflow_retry.service" and getattr(r, "event", None) == "execution"
    ]


def give_up_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r.levelname, r.getMessage(), r.__dict__) for r in caplog.records if r.name == "workflow_retry.giveup"]


def within(value: int, low: int, high: int) -> int:
    assert low <= value <= high
    return value


# --- an access error: skipped and given up on at first sight ------------------------------------------------


def test_an_access_error_is_given_up_once_whole_result_log_announcement_and_ledger_row(
    emu: CdfEmulator, client: CogniteClient, caplog: pytest.LogCaptureFixture
) -> None:
    failed = seed_access_error(emu)
    announcer = Announcer()
    before = int(time.time() * 1000)

    first = call(client, {"executionId": failed}, announcer)

    after = int(time.time() * 1000)
    assert first == {
        "executionId": failed,
        "outcome": "skipped",
        "reason": f"{ACCESS_WHY}; gave up (announced)",
        "execution": as_reported(emu, failed),
        "error": None,
        "attempts": None,  # no ledger record was read: never retried
        "capEnforced": True,
    }
    assert announcer.announced == [
        GiveUp(
            execution_id=failed,
            workflow_external_id="wf-deploy",
            version="2",
            attempts=0,
            max_attempts=3,
            outcome="skipped",
            last_reason=ACCESS_REASON,
            why=ACCESS_WHY,
        )
    ]
    [(level, message, fields)] = give_up_lines(caplog)
    assert level == "WARNING"
    assert message == f"gave up on execution {failed} of workflow wf-deploy after 0 attempt(s): {ACCESS_WHY}"
    assert (fields["attempt"], fields["workflow"]) == (0, "wf-deploy")
    assert execution_lines(caplog) == [
        (
            "INFO",
            f"execution {failed}: skipped ({ACCESS_WHY}; gave up (announced))",
            {
                "event": "execution",
                "execution_id": failed,
                "workflow": "wf-deploy",
                "version": "2",
                "outcome": "skipped",
                "attempt": None,
                "reason": f"{ACCESS_WHY}; gave up (announced)",
                "retryable": None,
            },
        )
    ]
    row = ledger_row(emu, failed)
    assert row is not None
    at = within(row["history"][0]["at"], before, after)
    assert row == {
        "workflowExternalId": "wf-deploy",
        "attempts": 0,
        "lastAttemptAt": None,
        "lastOutcome": "gave_up",
        "expiresAt": at // 1000 + TTL_SECONDS,
        "history": [{"at": at, "outcome": "gave_up", "engineExecutionId": None, "reason": ACCESS_WHY}],
    }

    caplog.clear()
    again = call(client, {"executionId": failed}, announcer)  # a redelivered event

    assert again == {**first, "reason": f"{ACCESS_WHY}; gave up earlier (announced then)", "attempts": 0}
    assert len(announcer.announced) == 1
    assert give_up_lines(caplog) == []
    assert ledger_row(emu, failed) == row
    assert emu.requests_matching("POST", r"/sessions$|/retry$") == []


# --- exhausted: the give-up settles the last attempt in the ledger's history ---------------------------------


def test_an_exhausted_execution_is_given_up_with_its_last_attempt_settled_in_the_ledger(
    emu: CdfEmulator, client: CogniteClient, caplog: pytest.LogCaptureFixture
) -> None:
    emu.auto_fail_after_retry = True  # the retry's run fails again at once
    failed = emu.seed_execution("wf-night", "4", "FAILED", reason="disk full")["id"]
    announcer = Announcer()
    payload = {"executionId": failed, "policy": {"maxAttempts": 1}}
    assert call(client, payload, announcer)["outcome"] == "retried"
    retried_row = ledger_row(emu, failed)
    assert retried_row is not None
    engine = as_reported(emu, failed)["engineExecutionId"]
    time.sleep(0.002)
    before = int(time.time() * 1000)
    caplog.clear()

    exhausted = call(client, payload, announcer)

    after = int(time.time() * 1000)
    why = f"retried 1 time(s), maxAttempts is 1; last at {format_time(retried_row['lastAttemptAt'])}"
    assert exhausted == {
        "executionId": failed,
        "outcome": "exhausted",
        "reason": f"{why}; gave up (announced)",
        "execution": as_reported(emu, failed),
        "error": None,
        "attempts": 1,
        "capEnforced": True,
    }
    assert announcer.announced == [
        GiveUp(failed, "wf-night", "4", 1, 1, "exhausted", "task failed again after retry", why)
    ]
    row = ledger_row(emu, failed)
    assert row is not None
    at = within(row["history"][-1]["at"], before, after)
    [attempt] = retried_row["history"]
    assert row == {
        **retried_row,
        "lastOutcome": "gave_up",
        "expiresAt": at // 1000 + TTL_SECONDS,
        "history": [
            {**attempt, "outcome": "failed_again", "engineExecutionId": engine},
            {"at": at, "outcome": "gave_up", "engineExecutionId": None, "reason": why},
        ],
    }
    assert execution_lines(caplog)[0][:2] == ("INFO", f"execution {failed}: exhausted ({why}; gave up (announced))")


# --- the ledger cannot record the give-up: it is announced all the same -------------------------------------


@pytest.mark.parametrize("kind", ["access-error", "exhausted"])
def test_a_give_up_the_ledger_could_not_record_is_announced_and_the_failure_logged(
    emu: CdfEmulator, client: CogniteClient, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    announcer = Announcer()
    if kind == "access-error":
        failed = seed_access_error(emu)
        payload: dict[str, Any] = {"executionId": failed}
    else:
        emu.auto_fail_after_retry = True
        failed = emu.seed_execution("wf-deploy", "2", "FAILED")["id"]
        payload = {"executionId": failed, "policy": {"maxAttempts": 1}}
        assert call(client, payload, announcer)["outcome"] == "retried"
        time.sleep(0.002)
    row_before = ledger_row(emu, failed)
    emu.add_fault(Fault(method="POST", path_regex=ROWS, statuses=[400]))
    caplog.clear()

    result = call(client, payload, announcer)

    assert result["reason"].endswith("; gave up (announced)")  # better told twice than never
    assert [g.execution_id for g in announcer.announced] == [failed]
    assert lines(caplog, "workflow_retry.service")[0] == (
        "ERROR",
        f"could not record the give-up of execution {failed}: writing the RAW attempt ledger failed (400: "
        f"{INJECTED_400})",
    )
    assert ledger_row(emu, failed) == row_before


# --- no ledger: a refused retry is announced without a cap ----------------------------------------------------


def test_without_a_ledger_a_refused_retry_is_failed_and_announced_without_a_cap(
    emu: CdfEmulator, client: CogniteClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_LEDGER", "none")
    failed = emu.seed_execution("wf", "1", "FAILED", reason="boom")["id"]
    emu.add_fault(Fault(method="POST", path_regex=r"/retry$", statuses=[409]))
    announcer = Announcer()

    result = call(client, {"executionId": failed}, announcer)

    message = result["error"]["message"]
    assert message.startswith("Conflict (injected fault) (x-request-id: ")
    why = f"the retry request failed: {message}"
    assert result == {
        "executionId": failed,
        "outcome": "failed",
        "reason": f"{why} (attempt cap not enforced (ledger: none))",
        "execution": as_reported(emu, failed),
        "error": {"code": 409, "message": message, "retryable": False},
        "attempts": 0,
        "capEnforced": False,
    }
    assert announcer.announced == [GiveUp(failed, "wf", "1", 0, None, "failed", "boom", why)]
    assert execution_lines(caplog) == [
        (
            "WARNING",
            f"execution {failed}: failed ({why} (attempt cap not enforced (ledger: none)))",
            {
                "event": "execution",
                "execution_id": failed,
                "workflow": "wf",
                "version": "1",
                "outcome": "failed",
                "attempt": 0,
                "reason": f"{why} (attempt cap not enforced (ledger: none))",
                "retryable": False,
            },
        )
    ]


# --- an attempt that cannot be given back stays counted, and says so ----------------------------------------


def test_a_refused_retry_whose_attempt_cannot_be_given_back_logs_it(
    emu: CdfEmulator, client: CogniteClient, caplog: pytest.LogCaptureFixture
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=r"/retry$", statuses=[409]))
    emu.add_fault(Fault(method="POST", path_regex=r"/rows/delete$", statuses=[400]))

    result = call(client, {"executionId": failed}, Announcer())

    assert (result["outcome"], result["attempts"]) == ("failed", 0)
    assert lines(caplog, "workflow_retry.service")[0] == (
        "WARNING",
        f"could not release attempt 1 of execution {failed}: writing the RAW attempt ledger failed (400: "
        f"{INJECTED_400})",
    )
    row = ledger_row(emu, failed)
    assert row is not None
    assert row["attempts"] == 1  # counted: one retry fewer later, never one too many


def test_an_access_error_after_a_retry_settles_that_retry_in_the_ledger(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    failed = emu.seed_execution("wf-deploy", "2", "FAILED", reason="disk full")["id"]
    announcer = Announcer()
    assert call(client, {"executionId": failed}, announcer)["outcome"] == "retried"
    retried_row = ledger_row(emu, failed)
    assert retried_row is not None
    time.sleep(0.002)
    emu.fail_execution(failed, reason=ACCESS_REASON, engine_execution_id="engine-run-2")

    skipped = call(client, {"executionId": failed}, announcer)

    assert (skipped["outcome"], skipped["attempts"]) == ("skipped", 1)
    [give_up] = announcer.announced
    assert (give_up.attempts, give_up.max_attempts, give_up.last_reason) == (1, 3, ACCESS_REASON)
    row = ledger_row(emu, failed)
    assert row is not None
    [attempt, gave_up] = row["history"]
    assert attempt == {**retried_row["history"][0], "outcome": "failed_again", "engineExecutionId": "engine-run-2"}
    assert (gave_up["outcome"], row["attempts"], row["lastOutcome"]) == ("gave_up", 1, "gave_up")


def test_a_lost_retry_answer_that_cannot_be_checked_is_a_retryable_failure_on_the_execution_read_before(
    emu: CdfEmulator, client: CogniteClient
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=r"/retry$", statuses=[503] * 20))
    emu.add_fault(Fault(method="GET", path_regex=rf"/executions/{failed}$", statuses=[200] + [503] * 20))
    before = as_reported(emu, failed)

    result = call(client, {"executionId": failed}, Announcer())

    message = result["error"]["message"]
    assert result == {
        "executionId": failed,
        "outcome": "failed",
        "reason": f"the retry request failed: {message}",
        "execution": before,
        "error": {"code": 503, "message": message, "retryable": True},
        "attempts": 1,
        "capEnforced": True,
    }
    assert emu.retry_count(failed) == 0


@pytest.mark.slow  # waits out a deadline of seconds
def test_an_execution_not_reached_before_the_deadline_is_a_retryable_failure_in_those_words(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_DEADLINE_SECONDS", "5")
    monkeypatch.setenv("RETRY_REQUEST_TIMEOUT_SECONDS", "4")
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    # Every read of it outlasts the deadline: the first times out at 4 s, the SDK's second is cut at 5 s.
    emu.add_fault(Fault(method="GET", path_regex=rf"/executions/{failed}$", latency=20.0))

    result = call(client, {"executionId": failed}, Announcer())

    message = "not reached before the call's deadline"
    assert result == {
        "executionId": failed,
        "outcome": "failed",
        "reason": message,
        "execution": None,
        "error": {"code": None, "message": message, "retryable": True},
        "attempts": None,
        "capEnforced": True,
    }
