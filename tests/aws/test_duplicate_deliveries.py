"""One SNS message delivered 5 times at once, to 5 containers (SNS delivers at least once).

With the idempotency table, exactly one delivery reaches CDF. Without it, nothing in the function
stops the duplicates: what limits the damage is the core reading the execution first (a RUNNING one
is skipped) and CDF refusing to retry an execution that is RUNNING again. docs/aws.md tells users
what that costs.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from emulator import CdfEmulator, Fault
from tests.aws.conftest import AppFactory
from tests.aws.samples import lambda_context, sns_event
from workflow_retry.aws.entrypoint import LambdaApp
from workflow_retry.errors import DeliveryInProgressError, TransientFailuresError

DELIVERIES = 5


def deliver_at_once(apps: list[LambdaApp], event: dict[str, Any]) -> list[tuple[str, Any]]:
    """Each app (a container) handles the same event, all starting together; what each one ended with."""
    start = threading.Barrier(len(apps))

    def deliver(app: LambdaApp) -> tuple[str, Any]:
        start.wait(timeout=30)
        try:
            return "returned", app.handle(event, lambda_context())
        except (DeliveryInProgressError, TransientFailuresError) as exc:
            return type(exc).__name__, exc

    with ThreadPoolExecutor(max_workers=len(apps)) as pool:
        return list(pool.map(deliver, apps))


@pytest.fixture
def slow_retries(emu: CdfEmulator) -> CdfEmulator:
    # The retry request takes a while, so every delivery arrives while the first is still at work.
    emu.add_fault(Fault(method="POST", path_regex=r"/retry$", latency=0.3))
    return emu


def test_with_the_table_five_concurrent_deliveries_make_exactly_one_retry_call(
    new_app: AppFactory, slow_retries: CdfEmulator, idempotency_table: str
) -> None:
    emu = slow_retries
    failed = emu.seed_execution("wf", "1", "FAILED")
    event = sns_event({"executionId": failed["id"]}, message_id="sns-duplicated")
    env = {"IDEMPOTENCY_TABLE": idempotency_table}

    ended = deliver_at_once([new_app(env) for _ in range(DELIVERIES)], event)

    assert len(emu.requests_matching("POST", r"/retry$")) == 1
    assert emu.retry_count(failed["id"]) == 1
    handled = [r for kind, r in ended if kind == "returned" and r["deliveries"][0]["status"] == "handled"]
    assert len(handled) == 1
    assert handled[0]["results"][0]["outcome"] == "retried"
    for kind, value in ended:
        # The others were refused while the first was at work (Lambda delivers them again later)
        # or, arriving just after it, got its stored result.
        assert kind == "DeliveryInProgressError" or value["deliveries"][0]["status"] in ("handled", "replayed")
    # Lambda's own retry of a refused delivery gets the stored result, without calling CDF.
    later = new_app(env).handle(event, lambda_context())
    assert later["deliveries"][0]["status"] == "replayed"
    assert later["results"][0]["outcome"] == "retried"
    assert len(emu.requests_matching("POST", r"/retry$")) == 1


@pytest.mark.parametrize("ledger", ["raw", "none"])
def test_without_the_table_cdf_restarts_the_execution_once_but_duplicates_cost_requests(
    new_app: AppFactory, slow_retries: CdfEmulator, monkeypatch: pytest.MonkeyPatch, ledger: str
) -> None:
    emu = slow_retries
    monkeypatch.setenv("RETRY_LEDGER", ledger)
    failed = emu.seed_execution("wf", "1", "FAILED")
    event = sns_event({"executionId": failed["id"]}, message_id="sns-duplicated")

    ended = deliver_at_once([new_app() for _ in range(DELIVERIES)], event)

    # Every delivery was handled: nothing in the function stopped the duplicates...
    results = [
        (value if kind == "returned" else value.to_dict())["results"][0]
        for kind, value in ended
        if kind in ("returned", "TransientFailuresError")
    ]
    assert len(results) == DELIVERIES
    # ...yet the execution was restarted exactly once: CDF accepted one retry request and refused the
    # others (400: the execution is RUNNING), and the core, reading the execution again after a
    # refusal, reports it restarted by another caller (skipped), not as a failure to retry again.
    assert emu.retry_count(failed["id"]) == 1
    answers = sorted(r.status for r in emu.requests_matching("POST", r"/retry$"))
    assert answers.count(200) == 1
    assert set(answers) <= {200, 400}
    outcomes = [r["outcome"] for r in results]
    assert outcomes.count("retried") == 1
    # A duplicate arriving after the restart sees it RUNNING (skipped) or, with the attempt ledger,
    # the retry counted moments ago (deferred): never a failure.
    assert set(outcomes) <= {"retried", "skipped", "deferred"}
    # The price: each duplicate that read FAILED in time made a session and a retry request.
    sessions = emu.requests_matching("POST", r"/sessions$")
    assert len(sessions) == len(answers)
