"""Edges of the signature checks: exact limits, the words of each refusal, and fetch failures named.

Each test pins a behaviour a small change to ``workflow_retry/aws/webhooks.py`` would alter unseen by
the broader tests in ``test_webhooks.py`` (found by mutation testing, docs/reliability.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509

from tests.aws.local_sns import (
    CERT_PATH,
    EC_CERT_PATH,
    EXACT_PATH,
    EXACT_UNANNOUNCED_PATH,
    GZIP_PATH,
    LIMIT_BYTES,
    NUMBERED_CERT_PREFIX,
    OVERSTATED_PATH,
    SLOW_PATH,
    TOPIC_ARN,
    TRICKLE_PATH,
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
SECRET = new_webhook_secret()
register_secret(SECRET)


def headers(*, webhook_id: str = "msg_1", timestamp: int | str = NOW, signature: str | None = None) -> dict[str, str]:
    signed = signature or WebhookSecret.parse(SECRET).sign(webhook_id, int(timestamp), BODY)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signed}


def verifier() -> StandardWebhookVerifier:
    return StandardWebhookVerifier(parse_webhook_secrets(SECRET), clock=lambda: NOW)


# -- Standard Webhooks: secrets -------------------------------------------------------------------------


def test_each_malformed_secret_is_refused_with_its_own_reason() -> None:
    with pytest.raises(ConfigurationError) as no_prefix:
        WebhookSecret.parse("secret-without-prefix")
    with pytest.raises(ConfigurationError) as not_base64:
        WebhookSecret.parse("whsec_" + "A" * 24 + "$$")  # 18 bytes of base64, and characters that are not base64
    with pytest.raises(ConfigurationError) as empty:
        parse_webhook_secrets(" \t ")

    assert str(no_prefix.value) == "a webhook secret must start with 'whsec_' followed by base64"
    assert str(not_base64.value) == "a webhook secret is not valid base64 after 'whsec_'"
    assert str(empty.value) == "the webhook secret setting is empty"


def test_a_verifier_without_secrets_says_so() -> None:
    with pytest.raises(ConfigurationError) as caught:
        StandardWebhookVerifier(())

    assert str(caught.value) == "webhook signatures are required but no webhook secret is configured"


def test_a_secret_prints_as_redacted_and_nothing_else() -> None:
    secret = WebhookSecret.parse(SECRET)

    assert (repr(secret), str(secret)) == ("WebhookSecret(<redacted>)", "WebhookSecret(<redacted>)")


# -- Standard Webhooks: headers at their limits ------------------------------------------------------------


def test_a_webhook_id_of_256_characters_is_accepted_and_257_is_refused() -> None:
    longest, too_long = "m" * 256, "m" * 257

    assert verifier().verify(headers(webhook_id=longest), BODY).webhook_id == longest
    with pytest.raises(SignatureError) as caught:
        verifier().verify(headers(webhook_id=too_long), BODY)
    assert str(caught.value) == "webhook-id must be 1-256 printable ASCII characters without spaces"


def test_a_timestamp_of_twelve_digits_is_read_as_a_time_and_thirteen_are_not() -> None:
    twelve, thirteen = "9" * 12, "9" * 13

    with pytest.raises(SignatureError) as far_future:
        verifier().verify(headers(timestamp=twelve), BODY)
    with pytest.raises(SignatureError) as not_a_time:
        verifier().verify(headers(timestamp=thirteen, signature="v1,AAAA"), BODY)

    assert str(far_future.value) == (
        f"webhook-timestamp is {int(twelve) - NOW} s in the future, more than the 300 s tolerance"
    )
    assert str(not_a_time.value) == "webhook-timestamp must be a Unix time in whole seconds"


def test_a_timestamp_ahead_says_by_how_many_seconds() -> None:
    with pytest.raises(SignatureError) as caught:
        verifier().verify(headers(timestamp=NOW + 301), BODY)

    assert str(caught.value) == "webhook-timestamp is 301 s in the future, more than the 300 s tolerance"


def test_a_signature_header_without_a_v1_signature_says_so() -> None:
    with pytest.raises(SignatureError) as caught:
        verifier().verify(headers(signature="v2,abc v1a,def"), BODY)

    assert str(caught.value) == "webhook-signature holds no 'v1,<base64>' signature"


def test_a_signature_with_characters_beyond_ascii_is_a_mismatch_not_a_crash() -> None:
    genuine = WebhookSecret.parse(SECRET).sign("msg_1", NOW, BODY)

    with pytest.raises(SignatureError) as caught:
        verifier().verify(headers(signature="v1,Ünïcødé=="), BODY)
    accepted = verifier().verify(headers(signature=f"v1,Ünïcødé== {genuine}"), BODY)

    assert str(caught.value) == "no signature in webhook-signature matches the body (1 offered, 1 secret(s) tried)"
    assert accepted.webhook_id == "msg_1"


# -- SNS: the certificate's exact validity, the subscription, fetch failures --------------------------------


@pytest.fixture(scope="module")
def sns() -> Iterator[LocalSns]:
    local = LocalSns()
    yield local
    local.close()


def body_of(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def test_a_signing_certificate_is_valid_from_its_first_second_to_its_last(sns: LocalSns) -> None:
    certificate = x509.load_pem_x509_certificate(sns.signing_pem)
    for edge in (certificate.not_valid_before_utc, certificate.not_valid_after_utc):
        # Whole seconds: the message's time is written in milliseconds, the certificate's in seconds.
        message = sns.message('{"executionId": "x"}', timestamp=edge)

        verified = sns.verifier(clock=edge.timestamp).verify(body_of(message))

        assert verified.Message == '{"executionId": "x"}'
    after = certificate.not_valid_after_utc + dt.timedelta(seconds=1)
    with pytest.raises(SignatureError, match="expired or not yet valid"):
        sns.verifier(clock=after.timestamp).verify(body_of(sns.message("{}", timestamp=after)))


def test_a_certificate_url_that_serves_something_else_is_not_a_pem_certificate(sns: LocalSns) -> None:
    message = sns.message("{}", cert_url=sns.url("/confirm?Token=not-a-certificate"))

    with pytest.raises(SignatureError) as caught:
        sns.verifier().verify(body_of(message))

    assert str(caught.value) == "the SNS signing certificate is not a PEM certificate"


def test_a_subscribe_url_is_checked_against_the_topics_region(sns: LocalSns) -> None:
    asked: list[tuple[str, str]] = []

    def recording(authority: str, region: str) -> bool:
        asked.append((authority, region))
        return trust_loopback(authority, region)

    verifier = SnsMessageVerifier(frozenset({TOPIC_ARN}), sns.getter(), max_age_seconds=3600, trusted_host=recording)
    message = sns.message("subscribe", type="SubscriptionConfirmation")

    verifier.confirm_subscription(verifier.verify(body_of(message)))

    assert [region for _, region in asked] == ["eu-west-1", "eu-west-1"]  # the certificate, then the SubscribeURL


def test_a_subscription_that_cannot_be_confirmed_says_why(sns: LocalSns) -> None:
    message = sns.message("subscribe", type="SubscriptionConfirmation")
    verifier = sns.verifier()
    verified = verifier.verify(body_of(message))
    broken = verified.model_copy(update={"SubscribeURL": sns.url("/no-such-confirmation")})

    with pytest.raises(SignatureCheckUnavailableError) as caught:
        verifier.confirm_subscription(broken)

    assert str(caught.value) == "confirming the subscription failed: answered HTTP 404"


def free_port() -> int:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port: int = unused.getsockname()[1]
    return port


def test_a_failed_fetch_is_named_by_its_innermost_reason_without_the_url(sns: LocalSns) -> None:
    port = free_port()
    untrusting = RequestsHttpsGetter()
    impatient = sns.getter(timeout_seconds=0.5)
    slow = SnsUrl.parse(sns.url(SLOW_PATH))
    assert slow is not None
    slow_port = slow.authority.partition(":")[2]

    failures = []
    for getter, url in [
        (sns.getter(), f"https://127.0.0.1:{port}/SimpleNotificationService-local.pem"),
        (untrusting, sns.url(CERT_PATH)),
        (impatient, sns.url(SLOW_PATH)),
    ]:
        parsed = SnsUrl.parse(url)
        assert parsed is not None
        with pytest.raises(FetchError) as caught:
            getter.get(parsed)
        failures.append(str(caught.value))

    refused, untrusted, timed_out = failures
    assert refused == (
        f"ConnectionError: HTTPSConnection(host='127.0.0.1', port={port}): "
        "Failed to establish a new connection: [Errno 111] Connection refused"
    )
    assert re.fullmatch(
        r"SSLError: \[SSL: CERTIFICATE_VERIFY_FAILED\] certificate verify failed: "
        r"unable to get local issuer certificate \(_ssl\.c:\d+\)",
        untrusted,
    ), untrusted
    assert timed_out == (
        f"ReadTimeout: HTTPSConnectionPool(host='127.0.0.1', port={slow_port}): Read timed out. (read timeout=0.5)"
    )
    for failure in failures:
        assert ".pem" not in failure


def test_signatures_are_base64_of_the_hmac() -> None:
    signature = WebhookSecret.parse(SECRET).sign("msg_1", NOW, BODY)

    assert signature.startswith("v1,")
    assert len(base64.b64decode(signature[3:], validate=True)) == 32  # SHA-256


# -- the certificate getter's limits ---------------------------------------------------------------------


def fetch(getter: RequestsHttpsGetter, url: str) -> bytes:
    parsed = SnsUrl.parse(url)
    assert parsed is not None
    return getter.get(parsed)


def test_a_body_of_exactly_the_limit_is_fetched_announced_or_not(sns: LocalSns) -> None:
    for path in (EXACT_PATH, EXACT_UNANNOUNCED_PATH):
        assert len(fetch(sns.getter(), sns.url(path))) == LIMIT_BYTES


def test_an_announced_oversize_body_is_refused_before_any_of_it_is_read(sns: LocalSns) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch(sns.getter(timeout_seconds=2.0), sns.url(OVERSTATED_PATH))  # the body would take 3 s

    assert str(caught.value) == f"the answer is larger than {LIMIT_BYTES} bytes"
    assert time.monotonic() - started < 1.0


def test_a_body_that_trickles_in_is_cut_at_the_timeout_of_the_whole_fetch(sns: LocalSns) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch(sns.getter(timeout_seconds=0.5), sns.url(TRICKLE_PATH))  # each read waits 0.1 s, the whole 2 s

    assert str(caught.value) == "the answer took longer than its timeout"
    assert time.monotonic() - started < 1.5


def test_a_compressed_answer_is_read_as_sent_never_inflated(sns: LocalSns) -> None:
    sent = fetch(sns.getter(), sns.url(GZIP_PATH))

    assert sent[:2] == b"\x1f\x8b"  # gzip's magic: the bytes as sent, not the MiB they expand to
    assert len(sent) < LIMIT_BYTES


def test_a_certificate_whose_key_is_not_rsa_is_refused(sns: LocalSns) -> None:
    message = sns.message("{}", cert_url=sns.url(EC_CERT_PATH))

    with pytest.raises(SignatureError) as caught:
        sns.verifier().verify(body_of(message))

    assert str(caught.value) == "the SNS signing certificate does not hold an RSA key"


def test_at_most_16_certificates_are_kept_and_the_17th_starts_afresh(sns: LocalSns) -> None:
    verifier = sns.verifier()
    urls = [sns.url(f"{NUMBERED_CERT_PREFIX}{n}.pem") for n in range(17)]
    for url in urls:
        verifier.verify(body_of(sns.message("{}", cert_url=url)))
    fetched_before = len(sns.fetched)

    verifier.verify(body_of(sns.message("{}", cert_url=urls[16])))  # kept: not fetched again
    verifier.verify(body_of(sns.message("{}", cert_url=urls[0])))  # dropped with the other 15

    assert sns.fetched[fetched_before:] == [f"{NUMBERED_CERT_PREFIX}0.pem"]


# -- SNS message times and URLs ----------------------------------------------------------------------------


def test_a_message_exactly_as_old_as_allowed_is_accepted_and_one_second_older_is_not(sns: LocalSns) -> None:
    published = dt.datetime.now(dt.UTC).replace(microsecond=0)
    message = body_of(sns.message("{}", timestamp=published))

    at_limit = sns.verifier(clock=lambda: published.timestamp() + 3600).verify(message)
    with pytest.raises(SignatureError) as caught:
        sns.verifier(clock=lambda: published.timestamp() + 3601).verify(message)

    assert at_limit.Message == "{}"
    assert str(caught.value) == "the SNS message is 3601 s old, more than the 3600 s accepted"


def test_a_message_up_to_five_minutes_ahead_is_accepted_and_later_is_not(sns: LocalSns) -> None:
    published = dt.datetime.now(dt.UTC).replace(microsecond=0)
    message = body_of(sns.message("{}", timestamp=published))

    ahead = sns.verifier(clock=lambda: published.timestamp() - 300).verify(message)
    with pytest.raises(SignatureError) as caught:
        sns.verifier(clock=lambda: published.timestamp() - 301).verify(message)

    assert ahead.Message == "{}"
    assert str(caught.value) == "the SNS Timestamp is in the future"


def test_a_timestamp_that_is_not_a_time_says_so(sns: LocalSns) -> None:
    message = sns.message("{}")
    message["Timestamp"] = "yesterday at noon"
    message["Signature"] = sns.sign(message)

    with pytest.raises(SignatureError) as caught:
        sns.verifier().verify(body_of(message))

    assert str(caught.value) == "the SNS Timestamp is not an ISO 8601 time"


def test_a_certificate_url_off_the_sns_host_is_refused_with_the_form_expected(sns: LocalSns) -> None:
    message = sns.message("{}", cert_url="https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem")

    with pytest.raises(SignatureError) as caught:
        SnsMessageVerifier(frozenset({TOPIC_ARN}), sns.getter(), max_age_seconds=3600).verify(body_of(message))

    assert str(caught.value) == (
        "SigningCertURL is not an https URL on the SNS host of the topic's region "
        "(https://sns.<region>.amazonaws.com/..., no user info, port or fragment)"
    )


def test_a_getter_nearly_out_of_time_waits_a_tenth_of_a_second_not_more(sns: LocalSns) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError):  # a read timeout, or the TLS handshake's on a loaded machine
        fetch(sns.getter(timeout_seconds=30, time_left=lambda: 0.01), sns.url(SLOW_PATH))

    assert time.monotonic() - started < 1.0  # 0.1 s to connect, 0.1 s to read; the server waits 3 s


def test_the_getter_asks_for_the_body_uncompressed(sns: LocalSns) -> None:
    before = len(sns.accept_encodings)

    fetch(sns.getter(), sns.url(CERT_PATH))

    assert sns.accept_encodings[before:] == ["identity"]


# -- SNS: the words of each refusal --------------------------------------------------------------------------


def refusal(sns: LocalSns, message: dict[str, Any], topics: frozenset[str] = frozenset({TOPIC_ARN})) -> str:
    with pytest.raises((SignatureError, SenderNotAllowedError)) as caught:
        sns.verifier(topics).verify(body_of(message))
    return str(caught.value)


def test_each_refused_sns_message_says_why_in_its_own_words(sns: LocalSns) -> None:
    other_version = sns.message("{}")
    other_version["SignatureVersion"] = "3"
    not_base64 = sns.message("{}")
    not_base64["Signature"] = "bm90IGJhc2U2NA==" + "$"  # base64 followed by a character outside it
    tampered = sns.message("{}")
    tampered["Message"] = '{"executionId": "another"}'
    missing = sns.message("{}")
    del missing["Signature"]

    assert refusal(sns, other_version) == "unsupported SNS SignatureVersion (1 and 2 are accepted)"
    assert refusal(sns, not_base64) == "the SNS Signature is not base64"
    assert refusal(sns, tampered) == "the SNS signature does not match the message"
    assert refusal(sns, missing) == "not a signed SNS message (a field is missing or not a string)"
    assert refusal(sns, sns.message("{}"), frozenset({"arn:aws:sns:eu-west-1:123456789012:other"})) == (
        "messages from this SNS topic are not accepted (see SNS_TOPIC_ARNS)"
    )


def test_an_expired_signing_certificate_says_so(sns: LocalSns) -> None:
    certificate = x509.load_pem_x509_certificate(sns.signing_pem)
    after = certificate.not_valid_after_utc + dt.timedelta(seconds=1)

    refused = refusal_at(sns, after)

    assert refused == "the SNS signing certificate is expired or not yet valid"


def refusal_at(sns: LocalSns, when: dt.datetime) -> str:
    with pytest.raises(SignatureError) as caught:
        sns.verifier(clock=when.timestamp).verify(body_of(sns.message("{}", timestamp=when)))
    return str(caught.value)


def test_an_sns_url_of_2048_characters_parses_and_2049_does_not() -> None:
    base = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-"
    longest = base + "a" * (2048 - len(base) - 4) + ".pem"
    too_long = base + "a" * (2049 - len(base) - 4) + ".pem"

    parsed = SnsUrl.parse(longest)
    assert parsed is not None
    assert str(parsed) == longest
    assert SnsUrl.parse(too_long) is None
