"""Signature checks of HTTP deliveries: Standard Webhooks and SNS HTTPS messages.

The SNS tests run the production HTTPS getter against a loopback HTTPS server with a locally
generated CA and signing certificate (tests/aws/local_sns.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.aws.local_sns import (
    BIG_PATH,
    BIG_UNANNOUNCED_PATH,
    CERT_PATH,
    OTHER_TOPIC_ARN,
    REDIRECT_PATH,
    REGION,
    SLOW_PATH,
    TOPIC_ARN,
    LocalSns,
    trust_loopback,
)
from tests.aws.senders import new_webhook_secret
from tests.conftest import register_secret
from workflow_retry.aws.webhooks import (
    FetchError,
    RequestsHttpsGetter,
    SnsMessageVerifier,
    SnsUrl,
    StandardWebhookVerifier,
    WebhookSecret,
    is_sns_host,
    parse_webhook_secrets,
)
from workflow_retry.errors import (
    ConfigurationError,
    SenderNotAllowedError,
    SignatureCheckUnavailableError,
    SignatureError,
)

NOW = 1_760_000_000
BODY = b'{"executionId": "059edaa4-a17a-4102-910e-2c3591500cce"}'


OLD_SECRET = new_webhook_secret()
NEW_SECRET = new_webhook_secret()


def signed_headers(
    secret: str, body: bytes = BODY, *, webhook_id: str = "msg_1", timestamp: int = NOW
) -> dict[str, str]:
    signature = WebhookSecret.parse(secret).sign(webhook_id, timestamp, body)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def verifier(*values: str) -> StandardWebhookVerifier:
    return StandardWebhookVerifier(parse_webhook_secrets(" ".join(values)), clock=lambda: NOW)


# -- Standard Webhooks -------------------------------------------------------------------------------


def test_the_standard_webhooks_reference_example_signs_to_the_published_value() -> None:
    # The example of the Standard Webhooks specification: interoperability with every sender library.
    secret = WebhookSecret.parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")

    signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')

    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_valid_signature_is_accepted_and_gives_the_webhook_id() -> None:
    verified = verifier(NEW_SECRET).verify(signed_headers(NEW_SECRET, webhook_id="msg_abc"), BODY)

    assert verified.webhook_id == "msg_abc"
    assert verified.timestamp == NOW


def test_header_names_are_case_insensitive_as_api_gateway_rest_keeps_the_senders_case() -> None:
    headers = {name.title(): value for name, value in signed_headers(NEW_SECRET).items()}

    assert verifier(NEW_SECRET).verify(headers, BODY).webhook_id == "msg_1"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_refused_naming_it(missing: str) -> None:
    headers = signed_headers(NEW_SECRET)
    del headers[missing]

    with pytest.raises(SignatureError, match=f"missing {missing} header"):
        verifier(NEW_SECRET).verify(headers, BODY)


def test_an_unsigned_request_is_refused() -> None:
    with pytest.raises(SignatureError, match="missing webhook-id"):
        verifier(NEW_SECRET).verify({"content-type": "application/json"}, BODY)


def test_a_tampered_body_is_refused() -> None:
    headers = signed_headers(NEW_SECRET)
    tampered = BODY.replace(b"059edaa4", b"159edaa4")

    with pytest.raises(SignatureError, match="no signature in webhook-signature matches"):
        verifier(NEW_SECRET).verify(headers, tampered)


def test_a_changed_webhook_id_or_timestamp_breaks_the_signature() -> None:
    headers = signed_headers(NEW_SECRET)

    with pytest.raises(SignatureError, match="matches"):
        verifier(NEW_SECRET).verify({**headers, "webhook-id": "msg_2"}, BODY)
    with pytest.raises(SignatureError, match="matches"):
        verifier(NEW_SECRET).verify({**headers, "webhook-timestamp": str(NOW - 1)}, BODY)


def test_a_signature_made_with_another_secret_is_refused() -> None:
    with pytest.raises(SignatureError, match=r"1 offered, 1 secret\(s\) tried"):
        verifier(NEW_SECRET).verify(signed_headers(OLD_SECRET), BODY)


@pytest.mark.parametrize(("offset", "word"), [(-301, "old"), (301, "future")])
def test_timestamps_beyond_five_minutes_either_way_are_refused(offset: int, word: str) -> None:
    headers = signed_headers(NEW_SECRET, timestamp=NOW + offset)

    with pytest.raises(SignatureError, match=r"301 s (old|in the future).*300 s tolerance") as raised:
        verifier(NEW_SECRET).verify(headers, BODY)
    assert word in str(raised.value)


@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamps_at_the_edge_of_the_tolerance_are_accepted(offset: int) -> None:
    headers = signed_headers(NEW_SECRET, timestamp=NOW + offset)

    assert verifier(NEW_SECRET).verify(headers, BODY).timestamp == NOW + offset


@pytest.mark.parametrize("value", ["1760000000.5", "-1", "soon", "1760000000000000"])
def test_a_timestamp_that_is_not_whole_unix_seconds_is_refused(value: str) -> None:
    headers = {**signed_headers(NEW_SECRET), "webhook-timestamp": value}

    with pytest.raises(SignatureError, match="Unix time in whole seconds"):
        verifier(NEW_SECRET).verify(headers, BODY)


def test_during_rotation_the_sender_may_send_both_signatures_and_one_match_is_enough() -> None:
    old = signed_headers(OLD_SECRET)["webhook-signature"]
    new = signed_headers(NEW_SECRET)["webhook-signature"]
    headers = {**signed_headers(NEW_SECRET), "webhook-signature": f"{old} {new}"}

    assert verifier(NEW_SECRET).verify(headers, BODY).webhook_id == "msg_1"
    assert verifier(OLD_SECRET).verify(headers, BODY).webhook_id == "msg_1"


def test_during_rotation_the_receiver_may_hold_both_secrets() -> None:
    receiver = verifier(OLD_SECRET, NEW_SECRET)

    assert receiver.verify(signed_headers(OLD_SECRET), BODY).webhook_id == "msg_1"
    assert receiver.verify(signed_headers(NEW_SECRET), BODY).webhook_id == "msg_1"


def test_signatures_of_other_schemes_are_ignored_not_misread() -> None:
    v1 = signed_headers(NEW_SECRET)["webhook-signature"]
    headers = {**signed_headers(NEW_SECRET), "webhook-signature": f"v1a,{v1[3:]}"}

    with pytest.raises(SignatureError, match="no 'v1,<base64>' signature"):
        verifier(NEW_SECRET).verify(headers, BODY)


def test_a_webhook_id_with_spaces_or_control_characters_is_refused() -> None:
    headers = signed_headers(NEW_SECRET, webhook_id="msg 1")

    with pytest.raises(SignatureError, match="printable ASCII"):
        verifier(NEW_SECRET).verify(headers, BODY)


def test_a_malformed_secret_is_a_configuration_error_that_does_not_repeat_it() -> None:
    for bad in ["mysecret-value-123", "whsec_not*base64*at*all"]:
        with pytest.raises(ConfigurationError) as raised:
            parse_webhook_secrets(f"{NEW_SECRET} {bad}")
        assert bad not in str(raised.value)
        assert NEW_SECRET not in str(raised.value)


def test_a_secret_never_shows_in_its_repr() -> None:
    secret = WebhookSecret.parse(NEW_SECRET)

    assert NEW_SECRET[6:] not in repr(secret)
    assert "redacted" in repr(secret)


def test_no_secret_at_all_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        parse_webhook_secrets("   ")


# -- SNS HTTPS messages ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sns() -> Iterator[LocalSns]:
    local = LocalSns()
    yield local
    local.close()


def body_of(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_notification_signed_by_sns_is_accepted(sns: LocalSns, version: str) -> None:
    message = sns.message('{"executionId": "x"}', version=version)

    verified = sns.verifier().verify(body_of(message))

    assert verified.Message == '{"executionId": "x"}'
    assert verified.MessageId == message["MessageId"]


def test_a_notification_without_subject_is_accepted(sns: LocalSns) -> None:
    message = sns.message("{}", subject=None)

    assert sns.verifier().verify(body_of(message)).Subject is None


def test_the_certificate_is_fetched_once_and_cached(sns: LocalSns) -> None:
    verifier = sns.verifier()
    before = sns.fetched.count(CERT_PATH)

    for _ in range(3):
        verifier.verify(body_of(sns.message("{}")))

    assert sns.fetched.count(CERT_PATH) - before == 1


@pytest.mark.parametrize(
    ("field", "changed"),
    [
        ("Message", '{"executionId": "b"}'),
        ("MessageId", "00000000-0000-4000-8000-000000000000"),
        ("Timestamp", (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")),
        ("Subject", "another subject"),
    ],
    ids=["Message", "MessageId", "Timestamp", "Subject"],  # one id in every xdist worker (the time is not)
)
def test_a_notification_changed_after_signing_is_refused(sns: LocalSns, field: str, changed: str) -> None:
    message = sns.message('{"executionId": "a"}')
    assert message[field] != changed
    message[field] = changed

    with pytest.raises(SignatureError, match="does not match"):
        sns.verifier().verify(body_of(message))


def test_a_v1_signature_presented_as_v2_is_refused(sns: LocalSns) -> None:
    message = sns.message("{}", version="1")
    message["SignatureVersion"] = "2"

    with pytest.raises(SignatureError, match="does not match"):
        sns.verifier().verify(body_of(message))


def test_a_message_from_a_topic_not_configured_is_refused_even_when_validly_signed(sns: LocalSns) -> None:
    message = sns.message("{}", topic_arn=OTHER_TOPIC_ARN)

    with pytest.raises(SenderNotAllowedError, match="SNS_TOPIC_ARNS"):
        sns.verifier().verify(body_of(message))


def test_a_certificate_url_off_the_sns_host_is_never_fetched_with_the_production_host_check(sns: LocalSns) -> None:
    production = SnsMessageVerifier(frozenset({TOPIC_ARN}), sns.getter(), max_age_seconds=3600)
    before = len(sns.fetched)

    with pytest.raises(SignatureError, match="SigningCertURL is not an https URL on the SNS host"):
        production.verify(body_of(sns.message("{}")))
    assert len(sns.fetched) == before


@pytest.mark.parametrize(
    ("host", "region", "expected"),
    [
        (f"sns.{REGION}.amazonaws.com", REGION, True),
        ("sns.cn-north-1.amazonaws.com.cn", "cn-north-1", True),
        ("sns.us-east-1.amazonaws.com", REGION, False),  # another region than the topic's
        (f"sns.{REGION}.amazonaws.com.evil.example", REGION, False),
        (f"evil.example/sns.{REGION}.amazonaws.com", REGION, False),
        (f"xsns.{REGION}.amazonaws.com", REGION, False),
        ("127.0.0.1", REGION, False),
    ],
)
def test_the_sns_host_check(host: str, region: str, expected: bool) -> None:
    assert is_sns_host(host, region) is expected


def test_an_http_certificate_url_is_refused(sns: LocalSns) -> None:
    message = sns.message("{}", cert_url=sns.url(CERT_PATH).replace("https://", "http://"))

    with pytest.raises(SignatureError, match="not an https URL"):
        sns.verifier().verify(body_of(message))


def test_a_certificate_that_cannot_be_fetched_makes_the_check_unavailable_not_failed(sns: LocalSns) -> None:
    message = sns.message("{}", cert_url=sns.url("/no-such-certificate.pem"))

    with pytest.raises(SignatureCheckUnavailableError, match="could not be fetched"):
        sns.verifier().verify(body_of(message))


def test_a_certificate_from_a_server_whose_tls_certificate_is_not_trusted_is_refused(sns: LocalSns) -> None:
    # The default trust store does not know the local CA: TLS verification fails, nothing is trusted.
    verifier = SnsMessageVerifier(
        frozenset({TOPIC_ARN}), RequestsHttpsGetter(), max_age_seconds=3600, trusted_host=trust_loopback
    )

    with pytest.raises(SignatureCheckUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
        verifier.verify(body_of(sns.message("{}")))


def test_a_message_signed_by_another_key_is_refused(sns: LocalSns) -> None:
    other = LocalSns()
    try:
        message = other.message("{}", cert_url=sns.url(CERT_PATH))  # signed by other's key, our certificate
    finally:
        other.close()

    with pytest.raises(SignatureError, match="does not match"):
        sns.verifier().verify(body_of(message))


def test_an_old_message_is_refused(sns: LocalSns) -> None:
    message = sns.message("{}", timestamp=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))

    with pytest.raises(SignatureError, match="s old, more than the 3600 s accepted"):
        sns.verifier().verify(body_of(message))


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"Type": "Notification"}'])
def test_a_body_that_is_not_an_sns_message_is_refused(sns: LocalSns, body: bytes) -> None:
    with pytest.raises(SignatureError, match="not a signed SNS message"):
        sns.verifier().verify(body)


def test_an_unsigned_message_is_refused(sns: LocalSns) -> None:
    message = sns.message("{}")
    del message["Signature"]

    with pytest.raises(SignatureError, match="not a signed SNS message"):
        sns.verifier().verify(body_of(message))


def test_a_subscription_confirmation_is_verified_then_confirmed_on_the_sns_host(sns: LocalSns) -> None:
    message = sns.message("You have chosen to subscribe...", type="SubscriptionConfirmation")
    verifier = sns.verifier()

    verifier.confirm_subscription(verifier.verify(body_of(message)))

    assert message["Token"] in sns.confirmed_tokens


def test_a_subscription_confirmation_whose_subscribe_url_is_not_an_sns_host_is_not_fetched(sns: LocalSns) -> None:
    message = sns.message("{}", type="SubscriptionConfirmation")
    verified = sns.verifier().verify(body_of(message))
    production = SnsMessageVerifier(frozenset({TOPIC_ARN}), sns.getter(), max_age_seconds=3600)

    with pytest.raises(SignatureError, match="SubscribeURL is not an https URL on the SNS host"):
        production.confirm_subscription(verified)
    assert message["Token"] not in sns.confirmed_tokens


# -- limits: key length, certificate validity --------------------------------------------------------


def _secret_of(key_bytes: int) -> str:
    value = "whsec_" + base64.b64encode(secrets.token_bytes(key_bytes)).decode()
    register_secret(value)
    return value


def test_a_webhook_key_shorter_than_16_bytes_is_refused_and_16_is_enough() -> None:
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        parse_webhook_secrets(_secret_of(15))
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        parse_webhook_secrets(f"{NEW_SECRET} {_secret_of(8)}")  # one short key in a rotation is refused too

    secret = _secret_of(16)
    assert verifier(secret).verify(signed_headers(secret), BODY).webhook_id == "msg_1"


@pytest.mark.parametrize(
    ("days", "state"),
    [(3, "expired"), (-2, "not yet valid")],  # the certificate is valid from 1 day ago to 2 days ahead
)
def test_a_signing_certificate_outside_its_validity_window_is_refused(sns: LocalSns, days: int, state: str) -> None:
    then = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    message = sns.message('{"executionId": "x"}', timestamp=then)  # a message fresh at that time

    with pytest.raises(SignatureError, match="expired or not yet valid"):
        sns.verifier(clock=then.timestamp).verify(body_of(message))


def test_a_signing_certificate_is_accepted_on_the_last_day_of_its_validity(sns: LocalSns) -> None:
    then = dt.datetime.now(dt.UTC) + dt.timedelta(days=1, hours=23)
    message = sns.message('{"executionId": "x"}', timestamp=then)

    assert sns.verifier(clock=then.timestamp).verify(body_of(message)).Message == '{"executionId": "x"}'


# -- SNS URLs and the certificate getter ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
        f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn%3Aaws%3Asns&Token=2336",
        f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC_ARN}&Token=2336",
    ],
)
def test_a_plain_sns_url_parses_to_parts_that_rebuild_it(url: str) -> None:
    parsed = SnsUrl.parse(url)

    assert parsed is not None
    assert str(parsed) == url
    assert is_sns_host(parsed.authority, REGION if ".cn/" not in url else "cn-north-1")


@pytest.mark.parametrize(
    "url",
    [
        "https://[",
        "https://[::1]/x.pem",
        f"http://sns.{REGION}.amazonaws.com/x.pem",
        f"HTTPS://sns.{REGION}.amazonaws.com/x.pem",
        f"https://user:pw@sns.{REGION}.amazonaws.com/x.pem",
        f"https://evil.example\\@sns.{REGION}.amazonaws.com/x.pem",
        f"https://sns.{REGION}.amazonaws.com\\@evil.example/x.pem",
        f"https://sns.{REGION}.amazonaws.com/x.pem\uff03",
        f"https://sns.{REGION}.amazonaws.com/x.pem#fragment",
        f"https://sns.{REGION}.amazonaws.com/x\\y.pem",
        f"https://sns.{REGION}.amazonaws.com/x y.pem",
        f"https://sns.{REGION}.amazonaws.com",
        f"https://sns.{REGION}.amazonaws.com?x=1",
        f"//sns.{REGION}.amazonaws.com/x.pem",
        "",
    ],
)
def test_anything_but_a_plain_https_url_does_not_parse(url: str) -> None:
    assert SnsUrl.parse(url) is None


def test_a_port_parses_but_never_passes_the_production_host_check() -> None:
    parsed = SnsUrl.parse(f"https://sns.{REGION}.amazonaws.com:443/x.pem")

    assert parsed is not None
    assert not is_sns_host(parsed.authority, REGION)


def local(sns: LocalSns, path: str) -> SnsUrl:
    parsed = SnsUrl.parse(sns.url(path))
    assert parsed is not None
    return parsed


def test_the_getter_fetches_the_body_over_verified_https(sns: LocalSns) -> None:
    assert sns.getter().get(local(sns, CERT_PATH)) == sns.signing_pem


def test_the_getter_does_not_follow_a_redirect(sns: LocalSns) -> None:
    before = sns.fetched.count(CERT_PATH)

    with pytest.raises(FetchError, match="answered HTTP 302"):
        sns.getter().get(local(sns, REDIRECT_PATH))
    assert sns.fetched.count(CERT_PATH) == before


@pytest.mark.parametrize("path", [BIG_PATH, BIG_UNANNOUNCED_PATH])
def test_the_getter_refuses_a_body_over_its_size(sns: LocalSns, path: str) -> None:
    with pytest.raises(FetchError, match="larger than 65536 bytes"):
        sns.getter().get(local(sns, path))


def test_the_getter_gives_up_at_its_timeout(sns: LocalSns) -> None:
    getter = RequestsHttpsGetter(verify=sns.getter()._verify, timeout_seconds=0.5)
    started = time.monotonic()

    with pytest.raises(FetchError, match="Timeout"):
        getter.get(local(sns, SLOW_PATH))
    assert time.monotonic() - started < 2.0


def test_the_getter_takes_no_longer_than_the_time_left(sns: LocalSns) -> None:
    getter = RequestsHttpsGetter(verify=sns.getter()._verify, timeout_seconds=30, time_left=lambda: 0.5)
    started = time.monotonic()

    with pytest.raises(FetchError, match="Timeout"):
        getter.get(local(sns, SLOW_PATH))
    assert time.monotonic() - started < 2.0
