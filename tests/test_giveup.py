"""Give-up announcements: a structured log line always, and an SNS message (boto3 against moto's server)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from cognite.client import CogniteClient

from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from tests.support.moto import moto_server
from workflow_retry import function
from workflow_retry.cdf import ClientCredentials
from workflow_retry.payloads import parse_payload
from workflow_retry.settings import Settings

CREDENTIALS = ClientCredentials(FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET)


@pytest.fixture(scope="module")
def sns_queue() -> Iterator[tuple[str, str]]:
    """A give-up topic with an SQS queue subscribed (raw delivery), on moto's server."""
    with moto_server():
        sns: Any = boto3.client("sns")
        sqs: Any = boto3.client("sqs")
        topic = sns.create_topic(Name="give-ups")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="give-ups")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        yield topic, queue_url


@pytest.fixture
def give_ups(sns_queue: tuple[str, str]) -> tuple[str, str]:
    """The give-up topic and its queue, emptied of what earlier tests announced."""
    messages(sns_queue[1])
    return sns_queue


def messages(queue_url: str) -> list[dict[str, Any]]:
    sqs: Any = boto3.client("sqs")
    out: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return out
        for message in batch:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.mark.usefixtures("fast_env")
def test_an_exhausted_execution_is_announced_once_on_sns_and_in_the_log(
    emu: CdfEmulator, client: CogniteClient, give_ups: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    topic, queue_url = give_ups
    emu.auto_fail_after_retry = True
    failed = emu.seed_execution("wf-night", "4", "FAILED")["id"]
    settings = Settings(give_up_topic_arn=topic)
    request = parse_payload({"executionId": failed, "policy": {"maxAttempts": 1}})

    outcomes = []
    for _ in range(3):
        time.sleep(0.002)
        outcomes.append(function.execute(request, client, CREDENTIALS, settings).results[0].outcome.value)

    assert outcomes == ["retried", "exhausted", "exhausted"]
    [message] = messages(queue_url)
    assert message["event"] == "workflow_retry.gave_up"
    assert message["executionId"] == failed
    assert (message["workflowExternalId"], message["version"]) == ("wf-night", "4")
    assert (message["attempts"], message["maxAttempts"], message["outcome"]) == (1, 1, "exhausted")
    assert message["lastReasonForIncompletion"] == "task failed again after retry"
    [line] = [r for r in caplog.records if r.name == "workflow_retry.giveup"]
    assert getattr(line, "execution_id") == failed  # noqa: B009 (a structured field)
    assert (line.levelname, getattr(line, "event")) == ("WARNING", "gave_up")  # noqa: B009


@pytest.mark.usefixtures("fast_env")
def test_an_execution_answered_without_its_version_is_retried_and_announced_with_no_version(
    emu: CdfEmulator, client: CogniteClient, give_ups: tuple[str, str]
) -> None:
    """The SDK reads an execution's ``version`` as optional: the give-up says "no version", never "None"."""
    topic, queue_url = give_ups
    emu.auto_fail_after_retry = True
    failed = emu.seed_execution("wf-unversioned", "2", "FAILED")["id"]
    emu.leave_out_version(failed)
    request = parse_payload({"executionId": failed, "policy": {"maxAttempts": 1}})

    outcomes = []
    for _ in range(2):
        time.sleep(0.002)
        report = function.execute(request, client, CREDENTIALS, Settings(give_up_topic_arn=topic))
        outcomes.append(report.results[0].outcome.value)

    assert outcomes == ["retried", "exhausted"]
    [message] = messages(queue_url)
    assert (message["executionId"], message["workflowExternalId"]) == (failed, "wf-unversioned")
    assert message["version"] is None


@pytest.mark.usefixtures("fast_env")
def test_a_non_transient_retry_failure_is_announced(
    emu: CdfEmulator, client: CogniteClient, give_ups: tuple[str, str]
) -> None:
    topic, queue_url = give_ups
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=r"/retry$", statuses=[409]))

    report = function.execute(
        parse_payload({"executionId": failed}), client, CREDENTIALS, Settings(give_up_topic_arn=topic)
    )

    assert report.results[0].outcome.value == "failed"
    assert report.results[0].attempts == 0  # CDF refused it: the attempt was given back
    [message] = messages(queue_url)
    assert message["outcome"] == "failed"
    assert "409" in message["why"] or "retry request failed" in message["why"]


@pytest.mark.usefixtures("fast_env")
def test_a_failing_topic_never_changes_the_result(
    emu: CdfEmulator, client: CogniteClient, sns_queue: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=r"/retry$", statuses=[400]))
    settings = Settings(give_up_topic_arn="arn:aws:sns:eu-west-1:123456789012:no-such-topic")

    report = function.execute(parse_payload({"executionId": failed}), client, CREDENTIALS, settings)

    assert report.results[0].outcome.value == "failed"
    assert any("could not send the give-up" in r.getMessage() for r in caplog.records)


ACCESS_REASON = (
    "Function call failed: the function's request to CDF was refused with 403 Forbidden: "
    "missing capability functionsAcl:WRITE"
)


@pytest.mark.usefixtures("fast_env")
def test_an_access_error_is_skipped_and_announced_once_naming_the_missing_capability(
    emu: CdfEmulator, client: CogniteClient, give_ups: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    topic, queue_url = give_ups
    failed = emu.seed_execution(
        "wf-deploy",
        "2",
        "FAILED",
        tasks=[
            {"externalId": "build", "status": "COMPLETED"},
            {"externalId": "publish", "status": "FAILED", "reasonForIncompletion": ACCESS_REASON},
        ],
    )["id"]
    settings = Settings(give_up_topic_arn=topic)
    request = parse_payload({"executionId": failed})

    first = function.execute(request, client, CREDENTIALS, settings).results[0]
    again = function.execute(request, client, CREDENTIALS, settings).results[0]  # a redelivered event

    assert (first.outcome.value, again.outcome.value) == ("skipped", "skipped")
    assert "access error" in first.reason
    assert "functionsAcl:WRITE" in first.reason
    assert "(announced)" in first.reason
    assert "gave up earlier" in again.reason
    assert emu.requests_matching("POST", r"/sessions$|/retry$") == []
    [message] = messages(queue_url)
    assert (message["executionId"], message["outcome"]) == (failed, "skipped")
    assert "functionsAcl:WRITE" in message["why"]
    [line] = [r for r in caplog.records if r.name == "workflow_retry.giveup"]
    assert line.levelname == "WARNING"
    assert "functionsAcl:WRITE" in line.getMessage()
