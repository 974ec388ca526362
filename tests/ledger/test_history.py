"""Retry history: a three-attempt life cycle, then ``status`` and ``history`` on the command line.

The retries are calls of the Cognite Function's ``handle`` and the commands calls of the CLI's ``main``
(tests/support/cli.py), all in this process. Both against the emulator (real cognite-sdk over HTTP),
with the RAW ledger and with the DynamoDB ledger on moto's server (real boto3). Between attempts the
test fails the execution as CDF would, each time as a new engine run with its own reason.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from tests.test_cli import cli
from workflow_retry.cdf import run_on_sdk_loop
from workflow_retry.ledger import AttemptEntry
from workflow_retry.ledger.raw import RawLedger

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
FIRST_REASON = "Task 'load' failed: connection reset by peer"
NO_COOLDOWN = {"RETRY_MAX_ATTEMPTS": "3", "RETRY_COOLDOWN_SECONDS": "0"}
LONG_COOLDOWN = {"RETRY_MAX_ATTEMPTS": "3", "RETRY_COOLDOWN_SECONDS": "3600"}


@pytest.fixture(params=["raw", "dynamodb"])
def ledger_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that selects each ledger (DynamoDB: a fresh table on moto's server)."""
    if request.param == "raw":
        return {"RETRY_LEDGER": "raw"}
    table = request.getfixturevalue("ledger_table")
    return {"RETRY_LEDGER": "dynamodb", "RETRY_LEDGER_TABLE": table}


def run(emu: CdfEmulator, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = cli(emu, *args, **env)
    assert FUNCTION_CLIENT_SECRET not in done.stdout + done.stderr
    return done


def retry(client: CogniteClient, execution_id: str, **policy: Any) -> dict[str, Any]:
    """One call of the function for this execution (``policy``: the call's tighter policy)."""
    data: dict[str, Any] = {"executionId": execution_id}
    if policy:
        data["policy"] = policy
    [result] = handler.handle(data, client, SECRETS)["results"]
    return dict(result)


def test_three_attempts_then_the_give_up_are_shown_by_status_and_history(
    emu: CdfEmulator, client: CogniteClient, ledger_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (ledger_env | NO_COOLDOWN).items():
        monkeypatch.setenv(name, value)
    execution_id = emu.seed_execution("nightly-ingest", "3", "FAILED", reason=FIRST_REASON)["id"]
    other = emu.seed_execution("hourly-sync", "1", "FAILED", reason="Task 'transform' timed out")["id"]
    engines = [str(uuid.uuid4()) for _ in range(3)]
    reasons = [FIRST_REASON, "Task 'load' failed: disk full", "Task 'load' failed: quota exceeded"]

    for attempt in range(3):
        assert retry(client, execution_id)["outcome"] == "retried"
        # The engine run this attempt started fails, with the reason the next attempt answers.
        next_reason = reasons[attempt + 1] if attempt < 2 else "Task 'load' failed: out of memory"
        emu.fail_execution(execution_id, next_reason, engine_execution_id=engines[attempt])
        if attempt == 0:
            cooling = retry(client, execution_id, cooldownSeconds=3600)
            assert cooling["outcome"] == "deferred"
            listed = json.loads(run(emu, ledger_env | LONG_COOLDOWN, "history", "--json").stdout)
            assert [(e["executionId"], e["state"]) for e in listed["executions"]] == [(execution_id, "cooling_down")]
    assert retry(client, execution_id)["outcome"] == "exhausted"
    assert retry(client, other)["outcome"] == "retried"  # in flight: RUNNING now

    status = json.loads(run(emu, ledger_env | NO_COOLDOWN, "status", execution_id, "--json").stdout)
    entries = [AttemptEntry.from_json(e) for e in status["ledger"]["history"]]
    assert [(e.outcome, e.engine_execution_id, e.reason) for e in entries if e] == [
        ("failed_again", engines[0], reasons[0]),
        ("failed_again", engines[1], reasons[1]),
        ("failed_again", engines[2], reasons[2]),
        ("gave_up", None, status["ledger"]["history"][3]["reason"]),
    ]
    assert status["ledger"]["history"][3]["reason"].startswith("retried 3 time(s), maxAttempts is 3")
    assert status["ledger"]["record"]["lastOutcome"] == "gave_up"
    table = run(emu, ledger_env | NO_COOLDOWN, "status", execution_id).stdout
    for number, (engine, reason) in enumerate(zip(engines, reasons, strict=True), start=1):
        assert f"failed again  engine run {engine}; answered: {reason}" in _row(table, f"attempt {number}")
    assert "retried 3 time(s), maxAttempts is 3" in _row(table, "gave up")

    listed = json.loads(run(emu, ledger_env | NO_COOLDOWN, "history", "--json").stdout)
    states = {e["executionId"]: (e["attempts"], e["state"], e["summary"]) for e in listed["executions"]}
    assert states == {
        execution_id: (3, "gave_up", "gave up after 3 attempt(s)"),
        other: (1, "in_flight", "running after attempt 1"),
    }
    assert listed["executions"][0]["executionId"] == other  # newest first
    assert listed["ledger"] == ledger_env["RETRY_LEDGER"]
    only_nightly = json.loads(run(emu, ledger_env, "history", "--workflow", "nightly-ingest", "--json").stdout)
    assert [e["executionId"] for e in only_nightly["executions"]] == [execution_id]
    text = run(emu, ledger_env, "history", "--since", "30m").stdout
    assert "2 execution(s) retried or given up since" in text
    assert "1 gave up, 1 in flight" in text


def test_history_shows_a_recovered_execution(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"RETRY_LEDGER": "raw"}
    monkeypatch.setenv("RETRY_LEDGER", "raw")
    execution_id = emu.seed_execution("wf", "1", "FAILED", reason=FIRST_REASON)["id"]
    assert retry(client, execution_id)["outcome"] == "retried"
    emu.complete_execution(execution_id)

    [listed] = json.loads(run(emu, env, "history", "--json").stdout)["executions"]
    status = run(emu, env, "status", execution_id).stdout

    assert (listed["state"], listed["summary"]) == ("recovered", "recovered after 1 attempt(s)")
    [entry] = listed["history"]
    assert (entry["outcome"], entry["reason"]) == ("recovered", FIRST_REASON)
    assert "recovered" in _row(status, "attempt 1")


def test_history_says_when_the_ledger_is_none(emu: CdfEmulator) -> None:
    done = cli(emu, "history", RETRY_LEDGER="none")

    assert done.returncode == 2
    assert "RETRY_LEDGER=none" in done.stderr
    assert "no history" in done.stderr


def test_history_refuses_a_bad_window_before_any_request(emu: CdfEmulator) -> None:
    done = cli(emu, "history", "--since", "yesterday")

    assert done.returncode == 2
    assert "not a duration" in done.stderr
    assert emu.requests == []


def test_history_is_bounded_to_the_cap_plus_three_and_reasons_are_cut(emu: CdfEmulator, client: CogniteClient) -> None:
    from workflow_retry.history import EXTRA_ENTRIES, with_attempt

    ledger = RawLedger(client, "db", "t", 86_400)
    now = int(time.time() * 1000)
    record = None
    for attempt in range(10):
        execution = {"status": "FAILED", "endTime": now + attempt * 10 - 1, "reasonForIncompletion": "x" * 5_000}
        history = with_attempt(record, execution, now + attempt * 10, max_attempts=2)
        record = run_on_sdk_loop(ledger.take_attempt(record, "exec-1", "wf", now + attempt * 10, history))

    stored = emu.raw_rows("db", "t")["exec-1"]["history"]
    assert len(stored) == 2 + EXTRA_ENTRIES
    assert [e["at"] for e in stored] == [now + a * 10 for a in range(10 - len(stored), 10)]
    assert all(len(e["reason"]) <= 300 for e in stored)
    assert len(json.dumps(stored)) < 3_000


def _row(table: str, label: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(label))


def test_a_batch_read_ahead_keeps_each_retried_rows_history(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RAW write replaces the row whole, and the read-ahead lists only the keys (never the history in
    bulk): a row it found is read alone before the decision, so the write keeps it."""
    from workflow_retry.ledger.raw import READ_AHEAD_MIN_IDS

    for name, value in NO_COOLDOWN.items():
        monkeypatch.setenv(name, value)
    ids = [emu.seed_execution("wf", "1", "FAILED", reason=FIRST_REASON)["id"] for _ in range(READ_AHEAD_MIN_IDS)]
    first = handler.handle({"executionIds": ids}, client, SECRETS)
    assert {r["outcome"] for r in first["results"]} == {"retried"}
    for execution_id in ids:
        emu.fail_execution(execution_id, "again")
    emu.clear_requests()

    second = handler.handle({"executionIds": ids}, client, SECRETS)

    assert {r["outcome"] for r in second["results"]} == {"retried"}
    (listing,) = emu.requests_matching("GET", r"/raw/dbs/[^/]+/tables/[^/]+/rows$")
    assert listing.query["columns"] == [","]
    assert len(emu.requests_matching("GET", r"/raw/dbs/[^/]+/tables/[^/]+/rows/[^/]+$")) == len(ids)
    for execution_id in ids:
        stored = emu.raw_rows("workflow_retry", "attempts")[execution_id]["history"]
        assert [(e["outcome"], e["reason"]) for e in stored] == [("failed_again", FIRST_REASON), ("retried", "again")]


def test_an_attempt_is_settled_only_by_a_failure_that_ended_after_it() -> None:
    from workflow_retry.history import settled, shown_outcome

    attempt = AttemptEntry(at=1_000, outcome="retried", reason=FIRST_REASON)
    stale = {"status": "FAILED", "endTime": 900, "engineExecutionId": "run-0"}  # read before the retry started
    again = {"status": "FAILED", "endTime": 1_500, "engineExecutionId": "run-1"}
    running = {"status": "RUNNING", "engineExecutionId": "run-1"}
    done = {"status": "COMPLETED", "endTime": 1_500, "engineExecutionId": "run-1"}

    assert settled((attempt,), stale) == (attempt,)
    assert settled((attempt,), running) == (attempt,)
    assert settled((attempt,), done) == (attempt,)  # recovered is shown, never stored
    [failed_again] = settled((attempt,), again)
    assert (failed_again.outcome, failed_again.engine_execution_id) == ("failed_again", "run-1")
    assert shown_outcome(attempt, done).outcome == "recovered"
    assert shown_outcome(attempt, running).outcome == "running"
    assert shown_outcome(failed_again, done) == failed_again  # a settled entry stays as it was


def test_an_access_error_given_up_on_at_first_sight_is_in_the_history(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"RETRY_LEDGER": "raw"}
    monkeypatch.setenv("RETRY_LEDGER", "raw")
    forbidden = "Task 'call' failed: Forbidden: missing capability functionsAcl:RUN (403)"
    execution_id = emu.seed_execution("wf", "1", "FAILED", reason=forbidden)["id"]
    assert retry(client, execution_id)["outcome"] == "skipped"

    [listed] = json.loads(run(emu, env, "history", "--json").stdout)["executions"]

    assert (listed["attempts"], listed["state"]) == (0, "gave_up")
    assert listed["summary"].startswith("gave up without a retry: reasonForIncompletion of task ")
    assert "missing capability functionsAcl:RUN" in listed["summary"]
    assert [e["outcome"] for e in listed["history"]] == ["gave_up"]
