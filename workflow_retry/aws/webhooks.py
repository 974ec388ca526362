"""Authenticating HTTP deliveries: Standard Webhooks signatures and SNS message signatures.

Both checks are pure functions of the request, a few secrets or certificates, and the clock, so they
run before anything else and a request that fails them costs nothing. No AWS SDK here: the SNS
signing certificate is fetched over plain HTTPS through a small injectable :class:`HttpsGetter`.

Standard Webhooks (https://www.standardwebhooks.com): the sender signs ``"{id}.{timestamp}.{body}"``
with HMAC-SHA256 under a shared ``whsec_<base64 key>`` secret and sends ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature: v1,<base64 MAC> [v1,<MAC> ...]``. Several signatures
and several secrets make key rotation seamless: any pair that matches is enough.

SNS HTTPS subscriptions: SNS signs a canonical string of the message's fields with RSA (SHA1 for
``SignatureVersion`` 1, SHA256 for 2); the certificate's URL is in the message, so it is only
fetched from an SNS host (``sns.<topic's region>.amazonaws.com``) over HTTPS, and cached.
A URL from a message is parsed once, by :meth:`SnsUrl.parse`: that one parse decides whether the URL
is allowed and is what the GET is built from, so the check and the request cannot disagree; anything
but a plain ``https://sns.<region>.amazonaws.com[.cn]/...`` (no user info, port, backslash or
fragment; ASCII only) is a :class:`SignatureError`, never another exception. ``cryptography`` is
imported on the first SNS signature check and ``requests`` on the first GET, not with this module:
Standard Webhooks need only ``hmac``, and cryptography costs a cold start ~35 ms.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from workflow_retry.errors import (
    ConfigurationError,
    SenderNotAllowedError,
    SignatureCheckUnavailableError,
    SignatureError,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from workflow_retry.boto_clients import TimeLeft

WEBHOOK_TOLERANCE_SECONDS = 300
"""How far ``webhook-timestamp`` may be from our clock, either way (the Standard Webhooks default)."""

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
_MAX_WEBHOOK_ID_LENGTH = 256
_WEBHOOK_ID = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: it becomes a storage key
_MIN_KEY_BYTES = 16


class WebhookSecret:
    """One Standard Webhooks signing key. Never printed: ``repr`` shows nothing of it."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ConfigurationError(f"a webhook secret must hold at least {_MIN_KEY_BYTES} bytes of key")
        self._key = key

    @classmethod
    def parse(cls, value: str) -> WebhookSecret:
        """A ``whsec_<base64>`` value; the error never repeats the value."""
        if not value.startswith(SECRET_PREFIX):
            raise ConfigurationError(f"a webhook secret must start with '{SECRET_PREFIX}' followed by base64")
        try:
            key = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            raise ConfigurationError(f"a webhook secret is not valid base64 after '{SECRET_PREFIX}'") from None
        return cls(key)

    def sign(self, webhook_id: str, timestamp: int, body: bytes) -> str:
        """The ``v1,<base64>`` signature of one delivery under this key."""
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        mac = hmac.new(self._key, signed, hashlib.sha256).digest()
        return "v1," + base64.b64encode(mac).decode("ascii")

    def __repr__(self) -> str:
        return "WebhookSecret(<redacted>)"

    __str__ = __repr__


def parse_webhook_secrets(text: str) -> tuple[WebhookSecret, ...]:
    """Space-separated ``whsec_...`` values (several during a rotation); at least one."""
    values = text.split()
    if not values:
        raise ConfigurationError("the webhook secret setting is empty")
    return tuple(WebhookSecret.parse(value) for value in values)


@dataclass(frozen=True)
class VerifiedWebhook:
    """A delivery whose signature matched: its ID (for replay and duplicate detection) and timestamp."""

    webhook_id: str
    timestamp: int


class StandardWebhookVerifier:
    """Checks ``webhook-*`` headers against the raw body, with several secrets accepted (rotation)."""

    def __init__(
        self,
        secrets: Sequence[WebhookSecret],
        *,
        tolerance_seconds: int = WEBHOOK_TOLERANCE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets:
            raise ConfigurationError("webhook signatures are required but no webhook secret is configured")
        self._secrets = tuple(secrets)
        self._tolerance = tolerance_seconds
        self._clock = clock

    def verify(self, headers: Mapping[str, str], body: bytes) -> VerifiedWebhook:
        """The verified delivery, or :class:`SignatureError` saying what is wrong (never a secret)."""
        lowered = {name.lower(): value for name, value in headers.items()}
        webhook_id = _required_header(lowered, "webhook-id")
        raw_timestamp = _required_header(lowered, "webhook-timestamp")
        raw_signatures = _required_header(lowered, "webhook-signature")
        if len(webhook_id) > _MAX_WEBHOOK_ID_LENGTH or not _WEBHOOK_ID.fullmatch(webhook_id):
            raise SignatureError(
                f"webhook-id must be 1-{_MAX_WEBHOOK_ID_LENGTH} printable ASCII characters without spaces"
            )
        timestamp = self._fresh_timestamp(raw_timestamp)
        offered = [part[3:] for part in raw_signatures.split() if part.startswith("v1,")]
        if not offered:
            raise SignatureError("webhook-signature holds no 'v1,<base64>' signature")
        for secret in self._secrets:
            expected = secret.sign(webhook_id, timestamp, body)[3:].encode("ascii")
            # Every offered signature is compared, in constant time, against every secret.
            if any(hmac.compare_digest(expected, candidate.encode("ascii", "replace")) for candidate in offered):
                return VerifiedWebhook(webhook_id=webhook_id, timestamp=timestamp)
        raise SignatureError(
            f"no signature in webhook-signature matches the body ({len(offered)} offered, "
            f"{len(self._secrets)} secret(s) tried)"
        )

    def _fresh_timestamp(self, raw: str) -> int:
        if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
            raise SignatureError("webhook-timestamp must be a Unix time in whole seconds")
        timestamp = int(raw)
        skew = int(self._clock()) - timestamp
        if skew > self._tolerance:
            raise SignatureError(f"webhook-timestamp is {skew} s old, more than the {self._tolerance} s tolerance")
        if -skew > self._tolerance:
            raise SignatureError(
                f"webhook-timestamp is {-skew} s in the future, more than the {self._tolerance} s tolerance"
            )
        return timestamp


def _required_header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise SignatureError(f"missing {name} header")
    return value


# -- SNS HTTPS subscriptions -------------------------------------------------------------------------

SnsMessageType = Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]

_SNS_HOST = re.compile(r"sns\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")
_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:(?P<region>[a-z0-9-]+):\d{12}:[A-Za-z0-9_-]{1,256}(?:\.fifo)?")
_FUTURE_TOLERANCE_SECONDS = 300
_MAX_CERTIFICATE_BYTES = 64 * 1024
_CACHED_CERTIFICATES = 16


def is_sns_host(host: str, region: str) -> bool:
    """Whether ``host`` is the SNS endpoint of ``region`` (``sns.<region>.amazonaws.com``, or ``.com.cn``)."""
    match = _SNS_HOST.fullmatch(host)
    return match is not None and match["region"] == region


class SnsHttpMessage(BaseModel):
    """A message SNS posts to an HTTPS subscription (the JSON body), as far as it is signed and used."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    Type: SnsMessageType
    MessageId: str
    TopicArn: str
    Message: str
    Timestamp: str
    SignatureVersion: str
    Signature: str
    SigningCertURL: str
    Subject: str | None = None
    SubscribeURL: str | None = None
    Token: str | None = None

    def string_to_sign(self) -> bytes:
        """The canonical ``Key\\nValue\\n`` string SNS signs, in the order SNS documents per type."""
        if self.Type == "Notification":
            keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        else:
            keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        fields = self.model_dump()
        parts = [f"{key}\n{fields[key]}\n" for key in keys if fields.get(key) is not None]
        return "".join(parts).encode("utf-8")

    @property
    def region(self) -> str:
        match = _TOPIC_ARN.fullmatch(self.TopicArn)
        if match is None:
            raise SignatureError("TopicArn is not an SNS topic ARN")
        return match["region"]


# A plain https URL: a lower-case host name with an optional port (the port only ever passes the test
# hook's host check, never is_sns_host), then a path and query of RFC 3986 characters. No user info,
# backslash, fragment, white space or anything beyond ASCII can match.
_HTTPS_URL = re.compile(
    r"https://(?P<authority>[a-z0-9.-]{1,253}(?::[0-9]{1,5})?)(?P<target>/[A-Za-z0-9._~!$&'()*+,;=:@/?%-]*)"
)


@dataclass(frozen=True)
class SnsUrl:
    """An https URL from an SNS message, parsed once: its authority (host, or ``host:port``) and target
    (path and query). ``str()`` is the URL rebuilt from these parts: what is fetched is what was checked."""

    authority: str
    target: str

    @classmethod
    def parse(cls, text: str) -> SnsUrl | None:
        """The URL's parts, or None when ``text`` is not a plain https URL (see ``_HTTPS_URL``)."""
        match = _HTTPS_URL.fullmatch(text) if len(text) <= 2048 else None
        return cls(match["authority"], match["target"]) if match else None

    def __str__(self) -> str:
        return f"https://{self.authority}{self.target}"


class HttpsGetter(Protocol):
    """GETs an https URL and returns the body; raises :class:`FetchError` on any failure."""

    def get(self, url: SnsUrl) -> bytes: ...


class FetchError(Exception):
    """An HTTPS GET failed (no answer, a non-200 status, a body too large)."""


class RequestsHttpsGetter:
    """:class:`HttpsGetter` over ``requests``: HTTPS only, certificate-verified, no redirects, bounded size and time.

    Each GET takes at most ``timeout_seconds`` (connecting, waiting and reading together), or what
    ``time_left()`` says is left when that is less. The body is streamed and cut at ``max_bytes``;
    it is asked for uncompressed and read as sent, so a small compressed answer cannot grow in memory.
    ``verify`` is passed to ``requests``: True (the default trust store) or a CA bundle's path.
    """

    def __init__(
        self,
        *,
        verify: bool | str = True,
        timeout_seconds: float = 5.0,
        max_bytes: int = _MAX_CERTIFICATE_BYTES,
        time_left: TimeLeft | None = None,
    ) -> None:
        import requests  # here: only the SNS HTTPS path fetches anything

        self._session = requests.Session()
        self._verify = verify
        self._timeout = timeout_seconds
        self._max_bytes = max_bytes
        self._time_left = time_left

    def get(self, url: SnsUrl) -> bytes:
        import requests

        seconds = self._timeout if self._time_left is None else max(0.1, min(self._timeout, self._time_left()))
        ends_at = time.monotonic() + seconds
        try:
            with self._session.get(
                str(url),
                headers={"Accept-Encoding": "identity"},
                allow_redirects=False,  # a redirect could lead away from the host that was checked
                stream=True,
                timeout=(seconds, seconds),
                verify=self._verify,
            ) as response:
                if response.status_code != 200:
                    raise FetchError(f"answered HTTP {response.status_code}")
                return self._read(response, ends_at)
        except requests.RequestException as exc:
            raise FetchError(_describe(exc)) from None

    def _read(self, response: Any, ends_at: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise FetchError(f"the answer is larger than {self._max_bytes} bytes")
        body = bytearray()
        # read1: what one read of the socket gives (at most 16 KiB). read(16 KiB) would wait for all 16 KiB,
        # so a server that trickles a few bytes at a time, each within the socket's timeout, would hold
        # the GET far past ``ends_at`` (checked only between reads).
        while chunk := response.raw.read1(16 * 1024, decode_content=False):
            body += chunk
            if len(body) > self._max_bytes:
                raise FetchError(f"the answer is larger than {self._max_bytes} bytes")
            if time.monotonic() > ends_at:
                raise FetchError("the answer took longer than its timeout")
        return bytes(body)


def _describe(exc: Exception) -> str:
    # The innermost reason (e.g. CERTIFICATE_VERIFY_FAILED), without the URL requests puts in its messages.
    reason: BaseException = exc
    for _ in range(8):
        inner = getattr(reason, "reason", None)
        if not isinstance(inner, BaseException) and reason.args and isinstance(reason.args[0], BaseException):
            inner = reason.args[0]
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    text = str(reason)[:200] if reason is not exc else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class SnsMessageVerifier:
    """Verifies SNS HTTPS messages from allowed topics and confirms their subscriptions.

    ``trusted_host(authority, region)`` decides which hosts certificates and subscription URLs may
    come from (the authority is the URL's host, with ``:port`` when it names one); it is
    :func:`is_sns_host` unless a test passes its own (there is no setting for it).
    """

    def __init__(
        self,
        allowed_topics: frozenset[str],
        getter: HttpsGetter,
        *,
        max_age_seconds: int,
        clock: Callable[[], float] = time.time,
        trusted_host: Callable[[str, str], bool] = is_sns_host,
    ) -> None:
        self._allowed_topics = allowed_topics
        self._getter = getter
        self._max_age = max_age_seconds
        self._clock = clock
        self._trusted_host = trusted_host
        self._keys: dict[SnsUrl, rsa.RSAPublicKey] = {}
        self._keys_lock = threading.Lock()

    def verify(self, body: bytes) -> SnsHttpMessage:
        """The message, when it is from an allowed topic, fresh and validly signed by SNS."""
        from cryptography.exceptions import InvalidSignature  # see the module docstring
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            message = SnsHttpMessage.model_validate(json.loads(body))
        except (ValueError, ValidationError):
            raise SignatureError("not a signed SNS message (a field is missing or not a string)") from None
        if message.TopicArn not in self._allowed_topics:
            raise SenderNotAllowedError("messages from this SNS topic are not accepted (see SNS_TOPIC_ARNS)")
        self._check_age(message.Timestamp)
        algorithm: hashes.HashAlgorithm
        match message.SignatureVersion:
            case "1":
                algorithm = hashes.SHA1()  # noqa: S303 (SNS SignatureVersion 1 is SHA1withRSA)
            case "2":
                algorithm = hashes.SHA256()
            case _:
                raise SignatureError("unsupported SNS SignatureVersion (1 and 2 are accepted)")
        try:
            signature = base64.b64decode(message.Signature, validate=True)
        except binascii.Error:
            raise SignatureError("the SNS Signature is not base64") from None
        key = self._signing_key(message.SigningCertURL, message.region)
        try:
            key.verify(signature, message.string_to_sign(), padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise SignatureError("the SNS signature does not match the message") from None
        return message

    def confirm_subscription(self, message: SnsHttpMessage) -> None:
        """Confirm a verified ``SubscriptionConfirmation`` by fetching its SubscribeURL on the SNS host."""
        url = self._sns_url(message.SubscribeURL or "", message.region, "SubscribeURL")
        try:
            self._getter.get(url)
        except FetchError as exc:
            raise SignatureCheckUnavailableError(f"confirming the subscription failed: {exc}") from None

    def _check_age(self, raw: str) -> None:
        try:
            published = datetime.fromisoformat(raw).timestamp()
        except ValueError:
            raise SignatureError("the SNS Timestamp is not an ISO 8601 time") from None
        age = self._clock() - published
        if age > self._max_age:
            raise SignatureError(f"the SNS message is {int(age)} s old, more than the {self._max_age} s accepted")
        if -age > _FUTURE_TOLERANCE_SECONDS:
            raise SignatureError("the SNS Timestamp is in the future")

    def _sns_url(self, text: str, region: str, what: str) -> SnsUrl:
        url = SnsUrl.parse(text)
        if url is None or not self._trusted_host(url.authority, region):
            raise SignatureError(
                f"{what} is not an https URL on the SNS host of the topic's region "
                "(https://sns.<region>.amazonaws.com/..., no user info, port or fragment)"
            )
        return url

    def _signing_key(self, text: str, region: str) -> rsa.RSAPublicKey:
        url = self._sns_url(text, region, "SigningCertURL")
        with self._keys_lock:
            cached = self._keys.get(url)
        if cached is not None:
            return cached
        try:
            pem = self._getter.get(url)
        except FetchError as exc:
            raise SignatureCheckUnavailableError(f"the SNS signing certificate could not be fetched: {exc}") from None
        key = _rsa_key_of(pem, self._clock())
        with self._keys_lock:
            if len(self._keys) >= _CACHED_CERTIFICATES:
                self._keys.clear()
            self._keys[url] = key
        return key


def _rsa_key_of(pem: bytes, now: float) -> rsa.RSAPublicKey:
    from cryptography import x509  # see the module docstring
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SignatureError("the SNS signing certificate is not a PEM certificate") from None
    if not certificate.not_valid_before_utc.timestamp() <= now <= certificate.not_valid_after_utc.timestamp():
        raise SignatureError("the SNS signing certificate is expired or not yet valid")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("the SNS signing certificate does not hold an RSA key")
    return key
