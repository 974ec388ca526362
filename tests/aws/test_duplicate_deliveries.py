"""One SNS message delivered 5 times at once, to 5 containers (SNS delivers at least once).

With the idempotency table, exactly one delivery reaches CDF. Without it, nothing in the function
stops the duplicates: what limits the damage is the core reading the execution first (a RUNNING one
is skipped) and CDF refusing to retry an execution that is RUNNING again. docs/aws.md tells users
what that costs.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from emulator import CdfEmulator, Fault
from tests.aws.conftest import AppFactory
from tests.aws.samples import http_event, lambda_context, sns_event, sns_sqs_event
from workflow_retry.aws.entrypoint import LambdaApp
from workflow_retry.errors import DeliveryInProgressError, DeliveryKeyReusedError, TransientFailuresError

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


# -- a key reused for another payload ---------------------------------------------------------------


@pytest.fixture(params=["table", "memory"])
def guard_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """With the idempotency table (moto's DynamoDB), and without it (the container's memory)."""
    return {"IDEMPOTENCY_TABLE": request.getfixturevalue("idempotency_table")} if request.param == "table" else {}


def test_an_sqs_body_shaped_as_sns_that_reuses_a_message_id_is_not_answered_with_the_first_result(
    new_app: AppFactory, emu: CdfEmulator, guard_env: dict[str, str]
) -> None:
    first, second = emu.seed_execution("wf", "1", "FAILED"), emu.seed_execution("wf", "1", "FAILED")
    app = new_app(guard_env)
    app.handle(sns_sqs_event({"executionId": first["id"]}, sns_message_id="reused"), lambda_context())
    event = sns_sqs_event({"executionId": second["id"]}, sns_message_id="reused")

    answer = app.handle(event, lambda_context())

    # Refused, and back to the queue (in the end its dead-letter queue), not deleted as done.
    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert emu.retry_count(first["id"]) == 1
    assert emu.retry_count(second["id"]) == 0
    # The same message sent again is still a duplicate of the first.
    again = app.handle(sns_sqs_event({"executionId": first["id"]}, sns_message_id="reused"), lambda_context())
    assert again == {"batchItemFailures": []}
    assert emu.retry_count(first["id"]) == 1


def test_an_sns_message_id_reused_for_another_payload_raises_a_clear_error(
    new_app: AppFactory, emu: CdfEmulator, guard_env: dict[str, str]
) -> None:
    first, second = emu.seed_execution("wf", "1", "FAILED"), emu.seed_execution("wf", "1", "FAILED")
    app = new_app(guard_env)
    app.handle(sns_event({"executionId": first["id"]}, message_id="sns-reused"), lambda_context())

    with pytest.raises(DeliveryKeyReusedError, match="sns:sns-reused"):
        app.handle(sns_event({"executionId": second["id"]}, message_id="sns-reused"), lambda_context())
    assert emu.retry_count(second["id"]) == 0


def test_a_webhook_id_reused_for_another_body_with_signatures_off_is_409_not_the_first_result(
    new_app: AppFactory, emu: CdfEmulator, guard_env: dict[str, str]
) -> None:
    first, second = emu.seed_execution("wf", "1", "FAILED"), emu.seed_execution("wf", "1", "FAILED")
    app = new_app({**guard_env, "WEBHOOK_SIGNATURES": "off", "FUNCTION_URL_AUTH_TYPE": "AWS_IAM"})

    def post(execution_id: str) -> dict[str, Any]:
        body = json.dumps({"executionId": execution_id}).encode()
        return app.handle(http_event("function-url-iam", body, {"webhook-id": "msg_reused"}), lambda_context())

    assert post(first["id"])["statusCode"] == 200
    refused = post(second["id"])

    assert refused["statusCode"] == 409
    assert "webhook:msg_reused" in json.loads(refused["body"])["error"]
    assert "results" not in json.loads(refused["body"])
    assert emu.retry_count(second["id"]) == 0
    assert json.loads(post(first["id"])["body"])["replayed"] is True
