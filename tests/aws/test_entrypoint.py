"""The Lambda entrypoint for SNS, SQS (incl. SNS -> SQS and FIFO), EventBridge and direct invokes.

Real sample envelopes with workflow payloads inside, a real CogniteClient over HTTP to the CDF
emulator, DynamoDB and Secrets Manager in moto's server. Each test asserts what Lambda gets back and
what reached CDF.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from emulator import CdfEmulator, Fault
from tests.aws.conftest import AppFactory, unique
from tests.aws.samples import eventbridge_event, lambda_context, sns_event, sns_sqs_event, sqs_event
from tests.conftest import FUNCTION_CLIENT_SECRET
from workflow_retry.aws.config import LAMBDA_SAFETY_MARGIN_SECONDS
from workflow_retry.aws.entrypoint import invocation_settings
from workflow_retry.errors import ConfigurationError, PayloadError, TransientFailuresError, UnsupportedEventError
from workflow_retry.settings import Settings

RETRY_PATH = r"/workflows/executions/[^/]+/retry$"


def retries(emu: CdfEmulator, execution_id: str | None = None) -> list[Any]:
    return emu.requests_matching(
        "POST", rf"/workflows/executions/{execution_id}/retry$" if execution_id else RETRY_PATH
    )


def unavailable(execution_id: str, status: int = 503) -> Fault:
    """CDF answers ``status`` to every retry of this execution (the SDK's own retries included)."""
    return Fault(method="POST", path_regex=rf"/executions/{execution_id}/retry$", statuses=[status], probability=1.0)


def status_of(emu: CdfEmulator, execution_id: str) -> str:
    execution = emu.get_execution(execution_id)
    assert execution is not None
    return str(execution["status"])


def outcomes(result: dict[str, Any]) -> dict[str, str]:
    return {r["executionId"]: r["outcome"] for r in result["results"]}


# -- SNS -------------------------------------------------------------------------------------------


def test_an_sns_notification_retries_the_execution_and_returns_the_core_result(
    new_app: AppFactory, emu: CdfEmulator
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")
    event = sns_event({"executionId": failed["id"]}, message_id="sns-1")

    result = new_app().handle(event, lambda_context())

    assert outcomes(result) == {failed["id"]: "retried"}
    assert result["counts"]["retried"] == 1
    assert result["deliveries"] == [{"key": "sns:sns-1", "status": "handled"}]
    assert status_of(emu, failed["id"]) == "RUNNING"
    assert len(retries(emu, failed["id"])) == 1
    assert FUNCTION_CLIENT_SECRET not in json.dumps(result)


def test_sns_with_a_transient_failure_raises_after_handling_everything_and_is_not_remembered(
    new_app: AppFactory, emu: CdfEmulator
) -> None:
    failing, fine = emu.seed_execution("wf", "1", "FAILED"), emu.seed_execution("wf", "1", "FAILED")
    fault = emu.add_fault(unavailable(failing["id"]))
    event = sns_event({"executionIds": [failing["id"], fine["id"]]})
    app = new_app()

    with pytest.raises(TransientFailuresError) as raised:
        app.handle(event, lambda_context())

    assert outcomes(raised.value.to_dict()) == {failing["id"]: "failed", fine["id"]: "retried"}
    assert status_of(emu, fine["id"]) == "RUNNING"
    # Lambda's asynchronous retry delivers the same message again: it is handled, not answered from memory.
    emu.clear_faults()
    assert fault.applied > 0
    again = app.handle(event, lambda_context())
    assert outcomes(again) == {failing["id"]: "retried", fine["id"]: "skipped"}
    assert again["deliveries"][0]["status"] == "handled"


def test_an_sns_message_that_is_not_a_payload_is_reported_and_costs_nothing(
    new_app: AppFactory, emu: CdfEmulator
) -> None:
    result = new_app().handle(sns_event("Hello from SNS!", message_id="m-9"), lambda_context())

    assert result["results"] == []
    [delivery] = result["deliveries"]
    assert delivery["status"] == "invalid"
    assert "the SNS Message is not JSON" in delivery["reason"]
    assert emu.requests == []  # not even a token was fetched


def test_the_same_sns_message_twice_is_retried_once_and_answered_from_the_table_the_second_time(
    new_app: AppFactory, emu: CdfEmulator, idempotency_table: str
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")
    event = sns_event({"executionId": failed["id"]})
    env = {"IDEMPOTENCY_TABLE": idempotency_table}

    first = new_app(env).handle(event, lambda_context())
    second = new_app(env).handle(event, lambda_context())  # another container

    assert outcomes(first) == outcomes(second) == {failed["id"]: "retried"}
    assert second["deliveries"][0]["status"] == "replayed"
    assert len(retries(emu)) == 1


# -- SQS -------------------------------------------------------------------------------------------


def test_an_sqs_batch_lists_exactly_the_transiently_failed_records(new_app: AppFactory, emu: CdfEmulator) -> None:
    ok, transient = emu.seed_execution("wf", "1", "FAILED"), emu.seed_execution("wf", "1", "FAILED")
    emu.add_fault(unavailable(transient["id"]))
    event = sqs_event(
        {"executionId": ok["id"]},
        "this is not JSON",
        {"message": "no id here"},
        {"executionId": "../../etc/passwd"},  # an invalid ID: an `invalid` result, nothing sent
        {"executionId": transient["id"]},
    )
    ids = [record["messageId"] for record in event["Records"]]

    response = new_app().handle(event, lambda_context())

    assert response == {"batchItemFailures": [{"itemIdentifier": ids[4]}]}
    assert status_of(emu, ok["id"]) == "RUNNING"
    assert status_of(emu, transient["id"]) == "FAILED"
    assert all("etc" not in r.path for r in emu.requests)


def test_an_sqs_batch_that_all_went_well_has_no_failures(new_app: AppFactory, emu: CdfEmulator) -> None:
    a, b = emu.seed_execution("wf", "1", "FAILED"), emu.seed_execution("wf", "1", "COMPLETED")

    response = new_app().handle(sqs_event({"executionId": a["id"]}, {"executionId": b["id"]}), lambda_context())

    assert response == {"batchItemFailures": []}
    assert len(retries(emu)) == 1


def test_the_records_of_a_standard_queue_batch_are_handled_at_the_same_time(
    new_app: AppFactory, emu: CdfEmulator
) -> None:
    failed = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(6)]
    emu.add_fault(Fault(method="GET", path_regex=r"/workflows/executions/[^/]+$", latency=0.3))

    response = new_app().handle(sqs_event(*({"executionId": i} for i in failed)), lambda_context())

    assert response == {"batchItemFailures": []}
    assert [status_of(emu, i) for i in failed] == ["RUNNING"] * 6
    # One record alone has one request open at a time (no ledger here): more means records overlapped.
    assert emu.max_in_flight >= 3


def test_records_handled_at_the_same_time_share_one_concurrency_bound(
    new_app: AppFactory, emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_CONCURRENCY", "2")
    failed = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(6)]
    emu.add_fault(Fault(method="GET", path_regex=r"/workflows/executions/[^/]+$", latency=0.2))

    response = new_app().handle(sqs_event(*({"executionId": i} for i in failed)), lambda_context())

    assert response == {"batchItemFailures": []}
    assert all(emu.retry_count(i) == 1 for i in failed)
    assert emu.max_in_flight == 2  # RETRY_CONCURRENCY for the whole batch, not for each record


def test_a_retry_still_cooling_down_comes_back_through_the_queue(
    new_app: AppFactory, emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_LEDGER", "raw")  # attempts counted in CDF RAW, with the default cooldown
    failed = emu.seed_execution("wf", "1", "FAILED")
    app = new_app()
    assert app.handle(sqs_event({"executionId": failed["id"]}), lambda_context()) == {"batchItemFailures": []}
    emu.fail_execution(failed["id"])  # it failed again at once: the next retry waits for the cooldown

    again = sqs_event({"executionId": failed["id"]})
    response = app.handle(again, lambda_context())

    assert response == {"batchItemFailures": [{"itemIdentifier": again["Records"][0]["messageId"]}]}
    assert len(retries(emu)) == 1


def test_sns_through_sqs_is_unwrapped_and_retried(new_app: AppFactory, emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")

    response = new_app().handle(sns_sqs_event({"executionId": failed["id"]}), lambda_context())

    assert response == {"batchItemFailures": []}
    assert status_of(emu, failed["id"]) == "RUNNING"


def test_a_fifo_batch_stops_at_the_first_record_that_must_come_back_to_keep_the_order(
    new_app: AppFactory, emu: CdfEmulator
) -> None:
    first, second, third = (emu.seed_execution("wf", "1", "FAILED") for _ in range(3))
    emu.add_fault(unavailable(second["id"]))
    event = sns_sqs_event(*({"executionId": e["id"]} for e in (first, second, third)), fifo=True)
    ids = [record["messageId"] for record in event["Records"]]

    response = new_app().handle(event, lambda_context())

    assert response == {"batchItemFailures": [{"itemIdentifier": ids[1]}, {"itemIdentifier": ids[2]}]}
    assert status_of(emu, first["id"]) == "RUNNING"
    assert emu.requests_matching(path_regex=third["id"]) == []  # not touched: it comes back after the second


def test_one_sns_message_sent_twice_into_a_queue_is_retried_once(
    new_app: AppFactory, emu: CdfEmulator, idempotency_table: str
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")
    event = sns_sqs_event({"executionId": failed["id"]}, {"executionId": failed["id"]}, sns_message_id="sns-dup")

    response = new_app({"IDEMPOTENCY_TABLE": idempotency_table}).handle(event, lambda_context())

    assert response == {"batchItemFailures": []}
    assert len(retries(emu)) == 1


# -- EventBridge and direct invokes ------------------------------------------------------------------


def test_an_eventbridge_event_retries_the_execution_in_its_detail(new_app: AppFactory, emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "TIMED_OUT")

    result = new_app().handle(eventbridge_event({"executionId": failed["id"]}, event_id="ev-1"), lambda_context())

    assert outcomes(result) == {failed["id"]: "retried"}
    assert result["deliveries"] == [{"key": "events:ev-1", "status": "handled"}]


def test_eventbridge_with_a_transient_failure_raises(new_app: AppFactory, emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")
    emu.add_fault(unavailable(failed["id"], 500))

    with pytest.raises(TransientFailuresError, match="1 execution"):
        new_app().handle(eventbridge_event({"executionId": failed["id"]}), lambda_context())


def test_a_direct_invoke_returns_the_core_result(new_app: AppFactory, emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")

    result = new_app().handle({"executionIds": [failed["id"], "not-an-id"]}, lambda_context())

    assert outcomes(result) == {failed["id"]: "retried", "not-an-id": "invalid"}
    assert set(result) >= {"results", "counts"}


def test_a_direct_invoke_with_a_transient_failure_raises(new_app: AppFactory, emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")
    emu.add_fault(unavailable(failed["id"]))

    with pytest.raises(TransientFailuresError) as raised:
        new_app().handle({"executionId": failed["id"]}, lambda_context())
    assert raised.value.report.results[0].error is not None


def test_a_direct_invoke_without_an_id_raises_a_payload_error(new_app: AppFactory, emu: CdfEmulator) -> None:
    with pytest.raises(PayloadError, match="the list is empty"):
        new_app().handle({"executionIds": []}, lambda_context())
    assert emu.requests == []


def test_an_event_of_an_unknown_source_raises_naming_what_it_saw(new_app: AppFactory, emu: CdfEmulator) -> None:
    with pytest.raises(UnsupportedEventError, match=r"Records from \['aws:s3'\]"):
        new_app().handle({"Records": [{"eventSource": "aws:s3"}]}, lambda_context())
    assert emu.requests == []


# -- one container, many invocations ---------------------------------------------------------------


def test_a_warm_container_reuses_its_client_and_its_token(new_app: AppFactory, emu: CdfEmulator) -> None:
    app = new_app()
    for _ in range(3):
        failed = emu.seed_execution("wf", "1", "FAILED")
        app.handle(sns_event({"executionId": failed["id"]}), lambda_context())

    assert len(emu.requests_matching("POST", r"/oauth2/token$")) == 1
    assert len(retries(emu)) == 3


def test_the_client_secret_can_come_from_secrets_manager(
    new_app: AppFactory, emu: CdfEmulator, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("cdf/client-secret")
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=FUNCTION_CLIENT_SECRET)
    monkeypatch.delenv("IDP_CLIENT_SECRET")
    failed = emu.seed_execution("wf", "1", "FAILED")

    result = new_app({"IDP_CLIENT_SECRET_REF": name}).handle({"executionId": failed["id"]}, lambda_context())

    assert outcomes(result) == {failed["id"]: "retried"}
    # The retry session was made with the same client credentials as the client's own token.
    [session] = emu.requests_matching("POST", r"/sessions$")
    assert "clientId" in session.body["items"][0]


def test_no_client_secret_at_all_is_a_configuration_error_before_any_request(
    new_app: AppFactory, emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IDP_CLIENT_SECRET")
    failed = emu.seed_execution("wf", "1", "FAILED")

    with pytest.raises(ConfigurationError, match="IDP_CLIENT_SECRET or IDP_CLIENT_SECRET_REF"):
        new_app().handle({"executionId": failed["id"]}, lambda_context())
    assert emu.requests == []


def test_two_ways_of_giving_one_secret_is_a_configuration_error(new_app: AppFactory) -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        new_app({"IDP_CLIENT_SECRET_REF": "cdf/secret"})


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [(600, 240.0), (65, 65 - LAMBDA_SAFETY_MARGIN_SECONDS), (3, 1.0)],
)
def test_the_deadline_is_cut_to_the_invocations_remaining_time(remaining: float, expected: float) -> None:
    settings = Settings(deadline_seconds=240)

    cut = invocation_settings(settings, lambda_context(remaining))

    assert cut.deadline_seconds == pytest.approx(expected, abs=0.5)
    assert cut.concurrency == settings.concurrency
