"""HTTP through the Lambda entrypoint: API Gateway REST (1.0), HTTP API (2.0) and Function URLs.

Every status of the table in docs/aws.md, Standard Webhooks signatures end to end, and SNS HTTPS
subscriptions verified with a locally generated certificate served over loopback HTTPS. A request
that fails authentication must not reach CDF: each such test asserts the emulator saw nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from emulator import CdfEmulator, Fault
from tests.aws import senders
from tests.aws.conftest import AppFactory, unique
from tests.aws.local_sns import CERT_PATH, OTHER_TOPIC_ARN, TOPIC_ARN, LocalSns
from tests.aws.samples import HttpKind, http_event, lambda_context
from tests.conftest import FUNCTION_CLIENT_SECRET
from workflow_retry.aws.config import HTTP_MAX_BODY_BYTES
from workflow_retry.aws.entrypoint import LambdaApp
from workflow_retry.errors import ConfigurationError

SECRET = senders.new_webhook_secret()
OLD_SECRET = senders.new_webhook_secret()


def signed(payload: object, secret: str = SECRET, **kwargs: Any) -> tuple[bytes, dict[str, str]]:
    return senders.signed(payload, secret, **kwargs)


def post(
    app: LambdaApp, body: bytes | None, headers: dict[str, str], kind: HttpKind = "function-url", **kw: Any
) -> dict[str, Any]:
    response = app.handle(http_event(kind, body, headers, **kw), lambda_context())
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    assert response["headers"]["content-type"] == "application/json"
    assert FUNCTION_CLIENT_SECRET not in response["body"]
    assert SECRET not in response["body"]
    return response


def body_of(response: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(response["body"])
    return loaded


@pytest.fixture
def webhook_app(new_app: AppFactory) -> LambdaApp:
    return new_app({"WEBHOOK_SECRET": SECRET})


def cdf_requests(emu: CdfEmulator) -> list[Any]:
    return emu.requests


# -- 200 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rest", "http-api", "function-url"])
def test_a_signed_request_retries_the_execution_and_answers_200_with_the_core_result(
    webhook_app: LambdaApp, emu: CdfEmulator, kind: HttpKind
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")

    response = post(webhook_app, *signed({"executionId": failed["id"]}), kind)

    assert response["statusCode"] == 200
    result = body_of(response)
    assert [(r["executionId"], r["outcome"]) for r in result["results"]] == [(failed["id"], "retried")]
    assert result["counts"]["retried"] == 1
    assert len(emu.requests_matching("POST", r"/retry$")) == 1


def test_a_base64_encoded_body_is_verified_and_read_as_sent(webhook_app: LambdaApp, emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")

    response = post(webhook_app, *signed({"executionId": failed["id"]}), base64_body=True)

    assert response["statusCode"] == 200
    assert body_of(response)["counts"]["retried"] == 1


def test_ids_that_are_invalid_or_unknown_are_handled_results_so_the_answer_is_200(
    webhook_app: LambdaApp, emu: CdfEmulator
) -> None:
    unknown = "11111111-1111-4111-8111-111111111111"

    response = post(webhook_app, *signed({"executionIds": ["nope", unknown]}))

    assert response["statusCode"] == 200
    counts = body_of(response)["counts"]
    assert (counts["invalid"], counts["not_found"]) == (1, 1)


def test_rotation_a_request_signed_with_the_old_secret_is_accepted_while_both_are_configured(
    new_app: AppFactory, emu: CdfEmulator
) -> None:
    app = new_app({"WEBHOOK_SECRET": f"{OLD_SECRET} {SECRET}"})
    failed = emu.seed_execution("wf", "1", "FAILED")

    assert post(app, *signed({"executionId": failed["id"]}, OLD_SECRET))["statusCode"] == 200
    assert (
        post(new_app({"WEBHOOK_SECRET": SECRET}), *signed({"executionId": failed["id"]}, OLD_SECRET))["statusCode"]
        == 401
    )


def test_the_webhook_secret_can_come_from_secrets_manager(
    new_app: AppFactory, emu: CdfEmulator, moto_endpoint: str
) -> None:
    name = unique("webhook-secret")
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=f"{OLD_SECRET} {SECRET}")
    failed = emu.seed_execution("wf", "1", "FAILED")

    response = post(new_app({"WEBHOOK_SECRET_REF": name}), *signed({"executionId": failed["id"]}))

    assert response["statusCode"] == 200


# -- 400 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "the body is not JSON: Expecting property name"),
        (b'{"executionIds": []}', "the list is empty"),
        (b'{"hello": "world"}', "no execution ID found"),
        (b'["059edaa4-a17a-4102-910e-2c3591500cce"]', "must be a JSON object"),
        (b'{"executionIds": "059edaa4-a17a-4102-910e-2c3591500cce"}', "executionIds"),
    ],
)
def test_a_signed_payload_that_cannot_be_read_is_400_with_the_reason(
    webhook_app: LambdaApp, emu: CdfEmulator, body: bytes, reason: str
) -> None:
    response = post(webhook_app, *signed(body))

    assert response["statusCode"] == 400
    assert reason in body_of(response)["error"]
    assert cdf_requests(emu) == []


def test_a_body_marked_base64_that_is_not_is_400(webhook_app: LambdaApp, emu: CdfEmulator) -> None:
    event = http_event("function-url", b"{}", {})
    event["isBase64Encoded"] = True
    event["body"] = "%%%"

    response = webhook_app.handle(event, lambda_context())

    assert response["statusCode"] == 400
    assert "not valid base64" in body_of(response)["error"]


# -- 401 ---------------------------------------------------------------------------------------------


def _tampered(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body.replace(b'"executionId"', b'"executionIds"'), headers


def _unsigned(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body, {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: _unsigned(*signed(p)), "missing webhook-id header"),
        (lambda p: _tampered(*signed(p)), "no signature in webhook-signature matches"),
        (lambda p: signed(p, OLD_SECRET), "no signature in webhook-signature matches"),
        (lambda p: signed(p, timestamp=int(time.time()) - 600), "s old, more than the 300 s tolerance"),
        (lambda p: signed(p, timestamp=int(time.time()) + 600), "s in the future, more than the 300 s tolerance"),
    ],
    ids=["unsigned", "tampered", "wrong-secret", "old", "future"],
)
def test_a_request_that_fails_the_signature_check_is_401_and_never_reaches_cdf(
    webhook_app: LambdaApp, emu: CdfEmulator, make: Any, reason: str
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")

    response = post(webhook_app, *make({"executionId": failed["id"]}))

    assert response["statusCode"] == 401
    assert reason in body_of(response)["error"]
    assert cdf_requests(emu) == []


def test_a_replayed_webhook_id_is_answered_from_memory_and_never_reaches_cdf_again(
    webhook_app: LambdaApp, emu: CdfEmulator
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")
    body, headers = signed({"executionId": failed["id"]})
    assert post(webhook_app, body, headers)["statusCode"] == 200
    emu.clear_requests()

    replay = post(webhook_app, body, headers)

    assert replay["statusCode"] == 200
    assert body_of(replay)["replayed"] is True
    assert body_of(replay)["results"][0]["outcome"] == "retried"  # the first delivery's result
    assert cdf_requests(emu) == []


def test_a_webhook_id_replayed_to_another_container_is_caught_by_the_table(
    new_app: AppFactory, emu: CdfEmulator, idempotency_table: str
) -> None:
    env = {"WEBHOOK_SECRET": SECRET, "IDEMPOTENCY_TABLE": idempotency_table}
    failed = emu.seed_execution("wf", "1", "FAILED")
    body, headers = signed({"executionId": failed["id"]})
    assert post(new_app(env), body, headers)["statusCode"] == 200

    replay = post(new_app(env), body, headers)

    assert body_of(replay)["replayed"] is True
    assert len(emu.requests_matching("POST", r"/retry$")) == 1


def test_a_resent_delivery_after_a_transient_failure_is_handled_again_not_refused(
    webhook_app: LambdaApp, emu: CdfEmulator
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")
    emu.add_fault(Fault(method="POST", path_regex=r"/retry$", statuses=[503], probability=1.0))
    webhook_id = "msg_resent"
    assert post(webhook_app, *signed({"executionId": failed["id"]}, webhook_id=webhook_id))["statusCode"] == 503

    emu.clear_faults()
    # The sender tries again later: same webhook-id, a new timestamp and signature.
    again = post(webhook_app, *signed({"executionId": failed["id"]}, webhook_id=webhook_id))

    assert again["statusCode"] == 200
    assert body_of(again)["results"][0]["outcome"] == "retried"
    assert "replayed" not in body_of(again)


# -- 403, 405, 413, 500, 502, 503 ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("kind", ["rest", "function-url"])
def test_a_method_other_than_post_is_405(webhook_app: LambdaApp, emu: CdfEmulator, method: str, kind: HttpKind) -> None:
    response = post(webhook_app, None, {}, kind, method=method)

    assert response["statusCode"] == 405
    assert response["headers"]["allow"] == "POST"
    assert cdf_requests(emu) == []


def test_a_body_over_the_limit_is_413_whatever_its_signature(webhook_app: LambdaApp, emu: CdfEmulator) -> None:
    ids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(HTTP_MAX_BODY_BYTES // 40 + 1)]
    body, headers = signed({"executionIds": ids})
    assert len(body) > HTTP_MAX_BODY_BYTES

    response = post(webhook_app, body, headers, base64_body=True)

    assert response["statusCode"] == 413
    assert f"more than the {HTTP_MAX_BODY_BYTES} accepted" in body_of(response)["error"]
    assert cdf_requests(emu) == []


def test_a_body_at_the_limit_is_read(webhook_app: LambdaApp, emu: CdfEmulator) -> None:
    body = b'{"executionIds": ["nope"]}'
    body = body[:-1] + b" " * (HTTP_MAX_BODY_BYTES - len(body)) + b"}"
    assert len(body) == HTTP_MAX_BODY_BYTES

    assert post(webhook_app, *signed(body))["statusCode"] == 200


@pytest.mark.parametrize(("cdf_status", "answer"), [(503, 503), (429, 503), (500, 502)])
def test_a_transient_cdf_failure_is_502_or_503_with_the_result(
    webhook_app: LambdaApp, emu: CdfEmulator, cdf_status: int, answer: int
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")
    emu.add_fault(Fault(method="POST", path_regex=r"/retry$", statuses=[cdf_status], probability=1.0))

    response = post(webhook_app, *signed({"executionId": failed["id"]}))

    assert response["statusCode"] == answer
    [result] = body_of(response)["results"]
    assert result["outcome"] == "failed"
    assert result["error"]["retryable"] is True
    assert (response["headers"].get("retry-after") is not None) is (answer == 503)


def test_an_unreachable_cdf_is_502(webhook_app: LambdaApp, emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")
    emu.add_fault(Fault(method="GET", path_regex=failed["id"], statuses=[0], probability=1.0))  # connection dropped

    response = post(webhook_app, *signed({"executionId": failed["id"]}))

    assert response["statusCode"] == 502
    assert "no response from CDF" in body_of(response)["results"][0]["reason"]


def test_no_webhook_secret_configured_is_a_500_that_does_not_explain_itself_to_the_caller(
    new_app: AppFactory, emu: CdfEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    response = post(new_app(), *signed({"executionId": "x"}))

    assert response["statusCode"] == 500
    assert "WEBHOOK_SECRET" not in response["body"]
    assert "WEBHOOK_SECRET nor WEBHOOK_SECRET_REF" in caplog.text
    assert cdf_requests(emu) == []


def test_a_signed_request_when_the_cdf_client_secret_is_missing_is_a_500_after_authentication(
    new_app: AppFactory, emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("IDP_CLIENT_SECRET")
    failed = emu.seed_execution("wf", "1", "FAILED")

    response = post(new_app({"WEBHOOK_SECRET": SECRET}), *signed({"executionId": failed["id"]}))

    assert response["statusCode"] == 500
    assert "IDP_CLIENT_SECRET or IDP_CLIENT_SECRET_REF" in caplog.text
    assert cdf_requests(emu) == []


# -- signatures off (AWS_IAM) ------------------------------------------------------------------------


def test_signatures_cannot_be_turned_off_without_iam_auth(new_app: AppFactory) -> None:
    with pytest.raises(ConfigurationError, match="only with FUNCTION_URL_AUTH_TYPE=AWS_IAM"):
        new_app({"WEBHOOK_SIGNATURES": "off"})


def test_with_signatures_off_only_iam_signed_requests_are_accepted_and_a_warning_is_logged(
    new_app: AppFactory, emu: CdfEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "workflow_retry")
    app = new_app({"WEBHOOK_SIGNATURES": "off", "FUNCTION_URL_AUTH_TYPE": "AWS_IAM"})
    assert "WEBHOOK_SIGNATURES=off" in caplog.text
    failed = emu.seed_execution("wf", "1", "FAILED")
    body = json.dumps({"executionId": failed["id"]}).encode()

    anonymous = post(app, body, {}, "function-url")
    assert anonymous["statusCode"] == 401
    assert "not authenticated with AWS_IAM" in body_of(anonymous)["error"]
    assert cdf_requests(emu) == []

    assert post(app, body, {}, "function-url-iam")["statusCode"] == 200


# -- SNS HTTPS subscriptions -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_sns() -> Iterator[LocalSns]:
    sns = LocalSns()
    yield sns
    sns.close()


@pytest.fixture
def sns_app(new_app: AppFactory, local_sns: LocalSns) -> LambdaApp:
    # Signatures stay required for webhooks; SNS messages are checked by SNS's own scheme instead.
    return new_app({"SNS_TOPIC_ARNS": TOPIC_ARN, "WEBHOOK_SECRET": SECRET}, sns_verifier=local_sns.verifier())


def sns_post(app: LambdaApp, message: dict[str, Any]) -> dict[str, Any]:
    headers = {"x-amz-sns-message-type": message["Type"], "content-type": "text/plain; charset=UTF-8"}
    return post(app, json.dumps(message).encode(), headers)


def test_an_sns_subscription_confirmation_for_a_configured_topic_is_confirmed(
    sns_app: LambdaApp, local_sns: LocalSns, emu: CdfEmulator
) -> None:
    message = local_sns.message("You have chosen to subscribe...", type="SubscriptionConfirmation")

    response = sns_post(sns_app, message)

    assert response["statusCode"] == 200
    assert body_of(response) == {"confirmed": TOPIC_ARN}
    assert message["Token"] in local_sns.confirmed_tokens
    assert cdf_requests(emu) == []


def test_an_sns_subscription_confirmation_for_another_topic_is_403_and_not_confirmed(
    sns_app: LambdaApp, local_sns: LocalSns
) -> None:
    message = local_sns.message("...", type="SubscriptionConfirmation", topic_arn=OTHER_TOPIC_ARN)

    response = sns_post(sns_app, message)

    assert response["statusCode"] == 403
    assert message["Token"] not in local_sns.confirmed_tokens


def test_a_signed_sns_notification_retries_and_a_duplicate_is_answered_from_memory(
    sns_app: LambdaApp, local_sns: LocalSns, emu: CdfEmulator
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")
    message = local_sns.message(json.dumps({"executionId": failed["id"]}), version="2")

    first, again = sns_post(sns_app, message), sns_post(sns_app, message)

    assert first["statusCode"] == again["statusCode"] == 200
    assert body_of(first)["counts"]["retried"] == 1
    assert body_of(again)["replayed"] is True
    assert len(emu.requests_matching("POST", r"/retry$")) == 1


def test_a_tampered_sns_notification_is_401_and_never_reaches_cdf(
    sns_app: LambdaApp, local_sns: LocalSns, emu: CdfEmulator
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")
    message = local_sns.message(json.dumps({"executionId": "11111111-1111-4111-8111-111111111111"}))
    message["Message"] = json.dumps({"executionId": failed["id"]})

    response = sns_post(sns_app, message)

    assert response["statusCode"] == 401
    assert cdf_requests(emu) == []


def test_an_sns_notification_from_an_unconfigured_topic_is_403(sns_app: LambdaApp, local_sns: LocalSns) -> None:
    response = sns_post(sns_app, local_sns.message("{}", topic_arn=OTHER_TOPIC_ARN))

    assert response["statusCode"] == 403


def test_sns_messages_are_refused_when_no_topic_is_configured(new_app: AppFactory, local_sns: LocalSns) -> None:
    app = new_app(sns_verifier=local_sns.verifier(frozenset()))

    assert sns_post(app, local_sns.message("{}"))["statusCode"] == 403


def test_an_sns_notification_whose_message_is_not_a_payload_is_400(sns_app: LambdaApp, local_sns: LocalSns) -> None:
    response = sns_post(sns_app, local_sns.message("Hello from SNS!"))

    assert response["statusCode"] == 400
    assert "the SNS Message is not JSON" in body_of(response)["error"]


def test_an_unsubscribe_confirmation_is_acknowledged(sns_app: LambdaApp, local_sns: LocalSns) -> None:
    response = sns_post(sns_app, local_sns.message("...", type="UnsubscribeConfirmation"))

    assert (response["statusCode"], body_of(response)) == (200, {"unsubscribed": TOPIC_ARN})


# -- hostile SNS URLs --------------------------------------------------------------------------------

HOSTILE_URLS = [
    "https://[",
    "https://user:pw@sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem\uff03",  # a full-width '#'
    "https://evil.example\\@sns.eu-west-1.amazonaws.com/x.pem",
    "https://sns.eu-west-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
    "https://sns.eu-west-1.amazonaws.com\\@evil.example/x.pem",
    "https://sns.eu-west-1.amazonaws.com/x.pem#@evil.example",
    "https://sns.eu-west-1.amazonaws.com\u3002evil.example/x.pem",  # an ideographic full stop
    "https://SNS.EU-WEST-1.AMAZONAWS.COM/x.pem",
    "https://sns.eu-west-1.amazonaws.com",
    " https://sns.eu-west-1.amazonaws.com/x.pem",
    "https://sns.eu-west-1.amazonaws.com/x.pem\n",
]


@pytest.fixture
def production_sns_container(lambda_env: CdfEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh container of ``handler.lambda_handler`` that accepts SNS messages of TOPIC_ARN, with the
    production host check and certificate getter (nothing fetched may leave loopback: none is expected)."""
    from workflow_retry.aws import entrypoint

    monkeypatch.setenv("SNS_TOPIC_ARNS", TOPIC_ARN)
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setattr(entrypoint, "_app", None)


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_a_hostile_signing_certificate_url_is_401_through_lambda_handler_never_an_exception_or_a_fetch(
    production_sns_container: None, local_sns: LocalSns, emu: CdfEmulator, url: str
) -> None:
    import handler

    message = local_sns.message("{}", cert_url=url)
    headers = {"x-amz-sns-message-type": "Notification", "content-type": "text/plain; charset=UTF-8"}

    response = handler.lambda_handler(
        http_event("function-url", json.dumps(message).encode(), headers), lambda_context()
    )

    assert response["statusCode"] == 401, response["body"]
    assert "SigningCertURL is not an https URL on the SNS host" in body_of(response)["error"]
    assert cdf_requests(emu) == []


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_a_hostile_subscribe_url_of_a_validly_signed_confirmation_is_401_and_never_fetched(
    sns_app: LambdaApp, local_sns: LocalSns, url: str
) -> None:
    message = local_sns.message("You have chosen to subscribe...", type="SubscriptionConfirmation")
    message["SubscribeURL"] = url
    message["Signature"] = local_sns.sign(message)  # signed as it is: only the URL is wrong
    before = len(local_sns.fetched)

    response = sns_post(sns_app, message)

    assert response["statusCode"] == 401, response["body"]
    assert "SubscribeURL is not an https URL on the SNS host" in body_of(response)["error"]
    assert [path for path in local_sns.fetched[before:] if path != CERT_PATH] == []
