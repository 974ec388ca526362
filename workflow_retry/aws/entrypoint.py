"""The AWS Lambda entrypoint: ``lambda_handler(event, context)``.

One :class:`LambdaApp` per container holds what is built once and reused by warm invocations: the
settings, the secret reader and its cache, the CogniteClient, the duplicate guard and the signature
verifiers. Each invocation detects the event's source, unwraps it into deliveries
(:mod:`~workflow_retry.aws.events`), runs each through the core (``function.execute``) under the
duplicate guard, and shapes the answer (:mod:`~workflow_retry.aws.responses`). Nothing reaches CDF,
and no secret is fetched for CDF, before a delivery is authenticated and its payload read.

Every line the container logs is JSON from Powertools Logger (:mod:`~workflow_retry.aws.telemetry`),
with the invocation's request ID and event source; each invocation ends with its outcome metrics (EMF).

A cold start loads only what the container's settings and the event need (Powertools' Logger always):
the signature checks (:mod:`workflow_retry.aws.webhooks`, cryptography) on the first HTTP request, boto3
only for an AWS client (``IDEMPOTENCY_TABLE``, a ``*_REF`` secret, ``GIVE_UP_TOPIC_ARN``, the DynamoDB ledger).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

from workflow_retry.answer_size import LAMBDA_ANSWER_LIMIT_BYTES, fit_answer
from workflow_retry.aws.config import (
    HTTP_MAX_BODY_BYTES,
    LAMBDA_SAFETY_MARGIN_SECONDS,
    AwsSettings,
    aws_settings_from_environment,
)
from workflow_retry.aws.delivery_guard import DeliveryGuard
from workflow_retry.aws.events import (
    Delivery,
    HttpRequest,
    Source,
    detect_source,
    eventbridge_delivery,
    http_request,
    is_fifo,
    payload_of_body,
    payload_of_message,
    sns_deliveries,
    sqs_deliveries,
)
from workflow_retry.aws.idempotency import dynamodb_guard, memory_guard
from workflow_retry.aws.responses import (
    DeliveryOutcome,
    async_result,
    batch_response,
    http_answer,
    http_error,
    http_response,
    merged_report,
)
from workflow_retry.aws.secrets import AwsSecretReader, SecretReader, resolve_secret
from workflow_retry.aws.telemetry import LambdaTelemetry
from workflow_retry.cdf import ClientCredentials
from workflow_retry.connection import CdfConnectionSettings, build_client, connection_settings_from_environment
from workflow_retry.errors import (
    ConfigurationError,
    DeliveryInProgressError,
    DeliveryKeyReusedError,
    IdempotencyStoreError,
    PayloadError,
    SenderNotAllowedError,
    SignatureCheckUnavailableError,
    SignatureError,
    TransientFailuresError,
)
from workflow_retry.function import execute
from workflow_retry.identity import SessionCredentials, reference_source
from workflow_retry.models import RetryReport, RetryRequest
from workflow_retry.payloads import parse_payload
from workflow_retry.settings import Settings, cached_settings

if TYPE_CHECKING:
    from cognite.client import CogniteClient

    from workflow_retry.aws.webhooks import SnsMessageVerifier, StandardWebhookVerifier

logger = logging.getLogger(__name__)

MIN_DEADLINE_SECONDS = 1.0
SQS_RECORDS_AT_ONCE = 10
"""Records of a standard queue's batch handled at the same time (SQS's default batch size)."""
SNS_MESSAGE_TYPE_HEADER = "x-amz-sns-message-type"


class _ComeBack(Exception):
    """Raised inside the duplicate guard so that a result that must come again is not remembered."""

    def __init__(self, report: RetryReport) -> None:
        super().__init__("the delivery must come again")
        self.report = report


class LambdaApp:
    """One container's state and the handling of one invocation (see the module docstring)."""

    def __init__(
        self,
        settings: AwsSettings,
        connection: CdfConnectionSettings,
        *,
        secret_reader: SecretReader | None = None,
        guard: DeliveryGuard | None = None,
        sns_verifier: SnsMessageVerifier | None = None,
        telemetry: LambdaTelemetry | None = None,
    ) -> None:
        self._settings = settings
        self._telemetry = telemetry
        self._connection = connection
        self._deadline_at = math.inf  # the current invocation's deadline (time.monotonic())
        self._secrets = secret_reader or AwsSecretReader(
            settings.secrets_max_age_seconds, time_left=self._call_time_left
        )
        expiry = settings.idempotency_expiry_seconds
        self._guard = guard or (
            dynamodb_guard(settings.idempotency_table, expiry) if settings.idempotency_table else memory_guard(expiry)
        )
        self._sns = sns_verifier  # made on the first SNS HTTPS message (see _sns_verifier)
        self._lock = threading.Lock()
        self._client: CogniteClient | None = None
        self._client_secret: str | None = None
        self._webhook_verifier: StandardWebhookVerifier | None = None
        self._webhook_secret_text: str | None = None
        self._warn_about_weakened_defaults()

    @classmethod
    def from_environment(cls) -> LambdaApp:
        """The container's app, from the environment (see docs/aws.md for every variable), logging JSON lines."""
        telemetry = LambdaTelemetry()  # first, so that even the settings' warnings are JSON lines
        return cls(aws_settings_from_environment(), connection_settings_from_environment(), telemetry=telemetry)

    def _warn_about_weakened_defaults(self) -> None:
        if not self._settings.signatures_required:
            logger.warning(
                "WEBHOOK_SIGNATURES=off: HTTP requests are not signature-checked; only requests authenticated "
                "with AWS_IAM (FUNCTION_URL_AUTH_TYPE=AWS_IAM) are accepted"
            )
        if not self._settings.idempotency_table:
            logger.warning(
                "IDEMPOTENCY_TABLE is not set: duplicate deliveries and webhook replays are only recognised "
                "within one container; CDF's own status check is the only guard across containers"
            )

    # -- one invocation -------------------------------------------------------------------------

    def handle(self, event: object, context: Any) -> dict[str, Any]:
        """One invocation: the answer Lambda returns to the event's source (see docs/aws.md)."""
        if self._telemetry is None:
            return self._handle(event, context)
        return self._telemetry.invocation(context, self._handle, event)

    def _handle(self, event: object, context: Any) -> dict[str, Any]:
        source = detect_source(event)
        event = cast(dict[str, Any], event)  # detect_source refuses anything but an object
        if self._telemetry is not None:
            self._telemetry.set_event_source(source.value)
        self._deadline_at = _deadline_at(context)
        self._guard.register(context)
        match source:
            case Source.HTTP:
                return self._http(event, context)
            case Source.SQS:
                return self._sqs(event, context)
            case Source.DIRECT:
                return self._direct(event, context)
            case Source.SNS:
                return self._asynchronous(sns_deliveries(event), context)
            case Source.EVENTBRIDGE:
                return self._asynchronous([eventbridge_delivery(event)], context)

    def _direct(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        report = self._execute(parse_payload(event), context)
        if report.needs_redelivery:
            raise TransientFailuresError(report)
        return fit_answer(report.to_dict(), LAMBDA_ANSWER_LIMIT_BYTES, "AWS Lambda")

    def _asynchronous(self, deliveries: list[Delivery], context: Any) -> dict[str, Any]:
        """SNS and EventBridge: every delivery handled, then raise if one must come again."""
        outcomes = [self._handle_delivery(delivery, context) for delivery in deliveries]
        transient = [o.report for o in outcomes if o.report is not None and o.report.needs_redelivery]
        if transient:
            raise TransientFailuresError(merged_report(transient))
        for outcome in outcomes:
            if outcome.status == "in_progress":
                raise DeliveryInProgressError(outcome.reason or "a delivery is being handled elsewhere")
            if outcome.status == "store_failed":
                raise IdempotencyStoreError(outcome.reason or "the idempotency table failed")
            if outcome.status == "key_reused":
                raise DeliveryKeyReusedError(outcome.reason or "a delivery key came again with another payload")
        return fit_answer(async_result(outcomes), LAMBDA_ANSWER_LIMIT_BYTES, "AWS Lambda")

    def _sqs(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """One outcome per record; the batch item failures are the records that must come again.

        The records of a standard queue are handled at the same time (up to :data:`SQS_RECORDS_AT_ONCE`;
        the executions of all of them within the process's one RETRY_CONCURRENCY). On a FIFO queue they
        are handled in order, and nothing after a record that must come again is handled (it comes back
        too), so that the queue's order holds. The batch shares one deadline: a record not started before
        it comes back whole (one deadline per record could outlast the Lambda's time and lose the batch).
        """
        started = time.monotonic()
        deliveries = sqs_deliveries(event)
        failures: list[str] = []
        if is_fifo(event):
            for delivery in deliveries:
                if failures or self._sqs_record(delivery, context, started):
                    failures.append(delivery.record_id or "")
        else:
            # Records with the same delivery key (a message sent twice) go one after the other, so that
            # the second is answered with the first's result instead of coming back as "in progress".
            same_key: dict[object, list[Delivery]] = {}
            for position, delivery in enumerate(deliveries):
                same_key.setdefault(delivery.key if delivery.key is not None else position, []).append(delivery)

            def handle_in_turn(group: list[Delivery]) -> list[Delivery]:
                return [delivery for delivery in group if self._sqs_record(delivery, context, started)]

            workers = max(1, min(len(same_key), SQS_RECORDS_AT_ONCE))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sqs-record") as pool:
                back = {id(d) for group in pool.map(handle_in_turn, same_key.values()) for d in group}
            failures = [delivery.record_id or "" for delivery in deliveries if id(delivery) in back]
        if failures:
            logger.info("%d SQS message(s) will be delivered again: %s", len(failures), failures)
        return batch_response(failures)

    def _sqs_record(self, delivery: Delivery, context: Any, started: float) -> bool:
        """Handle one SQS record of a batch that began at ``started``; whether it must come again."""
        record_id = delivery.record_id or ""
        time_left = self._time_left(context, started)
        if time_left < MIN_DEADLINE_SECONDS:
            logger.warning("SQS message %s not started: the invocation's deadline has come", record_id)
            return True
        try:
            return self._handle_delivery(delivery, context, time_left).comes_back
        except Exception:
            logger.exception("SQS message %s: unexpected error; it will be delivered again", record_id)
            return True

    def _time_left(self, context: Any, started: float) -> float:
        """Seconds left of an invocation that began at ``started``: RETRY_DEADLINE_SECONDS from then, within
        the Lambda's remaining time less the margin (``inf`` when the settings are invalid: each delivery
        reports that itself)."""
        try:
            left = cached_settings().deadline_seconds - (time.monotonic() - started)
        except ConfigurationError:
            return math.inf
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if remaining_ms is not None:
            left = min(left, remaining_ms() / 1000 - LAMBDA_SAFETY_MARGIN_SECONDS)
        return left

    def _call_time_left(self) -> float:
        """Seconds left of the current invocation's deadline (what an AWS call made for it may take)."""
        return self._deadline_at - time.monotonic()

    def _handle_delivery(self, delivery: Delivery, context: Any, time_left: float | None = None) -> DeliveryOutcome:
        """Read the delivery's payload and run it through the core once; never raises for a per-delivery problem."""
        try:
            request = delivery.request()
        except (PayloadError, ConfigurationError) as exc:
            # Not retried: the same payload would fail the same way. Reported and logged instead.
            logger.error("%s delivery %s: unreadable payload, not retried: %s", delivery.source, delivery.key, exc)
            return DeliveryOutcome(delivery.key, "invalid", reason=str(exc))

        def work() -> dict[str, Any]:
            report = self._execute(request, context, time_left)
            if report.needs_redelivery:
                raise _ComeBack(report)
            return delivery_answer(report)

        try:
            if delivery.key is None:
                return DeliveryOutcome(None, "handled", result=work())
            handled = self._guard.run_once(delivery.key, work, fingerprint=delivery.fingerprint)
        except _ComeBack as back:
            return DeliveryOutcome(delivery.key, "transient", result=delivery_answer(back.report), report=back.report)
        except DeliveryKeyReusedError as exc:
            logger.error("%s delivery refused: %s", delivery.source, exc)
            return DeliveryOutcome(delivery.key, "key_reused", reason=str(exc))
        except DeliveryInProgressError as exc:
            logger.info("%s delivery %s is a duplicate being handled elsewhere", delivery.source, delivery.key)
            return DeliveryOutcome(delivery.key, "in_progress", reason=str(exc))
        except IdempotencyStoreError as exc:
            logger.error("%s", exc)
            return DeliveryOutcome(delivery.key, "store_failed", reason=str(exc))
        if handled.replayed:
            logger.info(
                "%s delivery %s is a duplicate: answered with the earlier result", delivery.source, delivery.key
            )
            return DeliveryOutcome(delivery.key, "replayed", result=handled.result)
        return DeliveryOutcome(delivery.key, "handled", result=handled.result)

    # -- HTTP -------------------------------------------------------------------------------------

    def _http(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            request = http_request(event)
        except PayloadError as exc:
            return http_error(400, str(exc))
        if request.method != "POST":
            return http_response(405, {"error": f"method {request.method} not allowed: use POST"}, {"allow": "POST"})
        if len(request.body) > HTTP_MAX_BODY_BYTES:
            return http_error(
                413, f"the body is {len(request.body)} bytes, more than the {HTTP_MAX_BODY_BYTES} accepted"
            )
        try:
            if SNS_MESSAGE_TYPE_HEADER in request.headers:
                return self._sns_https(request, context)
            return http_answer(self._handle_delivery(self._authenticated_webhook(request), context))
        except SignatureError as exc:
            logger.warning("HTTP request %s refused: %s", request.request_id, exc)
            return http_error(401, str(exc))
        except SenderNotAllowedError as exc:
            logger.warning("HTTP request %s refused: %s", request.request_id, exc)
            return http_error(403, str(exc))
        except SignatureCheckUnavailableError as exc:
            logger.error("HTTP request %s not checked: %s", request.request_id, exc)
            return http_error(503, str(exc), retry_after=True)
        except ConfigurationError as exc:
            # Details stay in the log: the caller may not be authenticated yet.
            logger.error("HTTP request %s: the function is misconfigured: %s", request.request_id, exc)
            return http_error(500, "the function is misconfigured; its log says how")

    def _authenticated_webhook(self, request: HttpRequest) -> Delivery:
        if self._settings.signatures_required:
            verified = self._webhooks().verify(request.headers, request.body)
            key: str | None = f"webhook:{verified.webhook_id}"
        else:
            if request.iam_caller is None:
                raise SignatureError("signature checking is off and the request was not authenticated with AWS_IAM")
            webhook_id = request.headers.get("webhook-id")
            key = f"webhook:{webhook_id}" if webhook_id else None
        try:
            return Delivery(Source.HTTP, key=key, payload=payload_of_body(request.body))
        except PayloadError as exc:
            return Delivery(Source.HTTP, key=key, problem=str(exc))

    def _sns_https(self, request: HttpRequest, context: Any) -> dict[str, Any]:
        verifier = self._sns_verifier()
        message = verifier.verify(request.body)
        if message.Type == "SubscriptionConfirmation":
            verifier.confirm_subscription(message)
            logger.info("confirmed the subscription to SNS topic %s", message.TopicArn)
            return http_response(200, {"confirmed": message.TopicArn})
        if message.Type == "UnsubscribeConfirmation":
            logger.warning("SNS topic %s unsubscribed this endpoint", message.TopicArn)
            return http_response(200, {"unsubscribed": message.TopicArn})
        payload, inner_key, problem = payload_of_message(message.Message, "the SNS Message")
        delivery = Delivery(Source.HTTP, key=inner_key or f"sns:{message.MessageId}", payload=payload, problem=problem)
        return http_answer(self._handle_delivery(delivery, context))

    def _sns_verifier(self) -> SnsMessageVerifier:
        # Built on first use: its HTTPS getter loads requests, and webhooks loads cryptography.
        from workflow_retry.aws.webhooks import RequestsHttpsGetter, SnsMessageVerifier

        with self._lock:
            if self._sns is None:
                expiry = self._settings.idempotency_expiry_seconds
                getter = RequestsHttpsGetter(time_left=self._call_time_left)
                self._sns = SnsMessageVerifier(self._settings.topic_arns, getter, max_age_seconds=expiry)
            return self._sns

    def _webhooks(self) -> StandardWebhookVerifier:
        from workflow_retry.aws.webhooks import StandardWebhookVerifier, parse_webhook_secrets  # HTTP requests only

        text = resolve_secret(self._settings.webhook_secret, self._settings.webhook_secret_ref, self._secrets)
        if text is None:
            raise ConfigurationError(
                "webhook signatures are required but neither WEBHOOK_SECRET nor WEBHOOK_SECRET_REF is set"
            )
        with self._lock:
            if self._webhook_verifier is None or text != self._webhook_secret_text:
                self._webhook_verifier = StandardWebhookVerifier(parse_webhook_secrets(text))
                self._webhook_secret_text = text
            return self._webhook_verifier

    # -- CDF ----------------------------------------------------------------------------------------

    def _execute(self, request: RetryRequest, context: Any, time_left: float | None = None) -> RetryReport:
        client, credentials = self._cdf()
        settings = invocation_settings(cached_settings(), context)
        if time_left is not None:
            settings = settings.model_copy(update={"deadline_seconds": min(settings.deadline_seconds, time_left)})
        # Workflows mapped to credential sets get theirs (secrets read through the container's cache).
        source = reference_source(settings.credential_sets, self._secrets.read)
        sessions = SessionCredentials.resolve(credentials, settings.credentials_map, source)
        report = execute(request, client, sessions, settings)
        if self._telemetry is not None:
            self._telemetry.count(report)
        return report

    def _cdf(self) -> tuple[CogniteClient, ClientCredentials]:
        """The container's CogniteClient, rebuilt only when the client secret changed (rotation)."""
        secret = resolve_secret(self._settings.client_secret, self._settings.client_secret_ref, self._secrets)
        if not secret:
            raise ConfigurationError("set IDP_CLIENT_SECRET or IDP_CLIENT_SECRET_REF (the CDF client secret)")
        with self._lock:
            if self._client is None or secret != self._client_secret:
                timeout = cached_settings().request_timeout_seconds
                self._client = build_client(self._connection, secret, timeout_seconds=timeout)
                self._client_secret = secret
            client = self._client
        # Sessions for the retried executions use the same client credentials as the client itself.
        return client, ClientCredentials(self._connection.client_id, secret)


def delivery_answer(report: RetryReport) -> dict[str, Any]:
    """A delivery's result, fitted so that even an HTTP answer, whose JSON body is escaped once more inside
    the response's JSON (at most twice as long), stays within Lambda's 6 MB."""
    return fit_answer(report.to_dict(), LAMBDA_ANSWER_LIMIT_BYTES // 2 - HTTP_ENVELOPE_BYTES, "AWS Lambda (HTTP)")


HTTP_ENVELOPE_BYTES = 4_096
"""Room for an HTTP response's status, headers and the body's quotes around the escaped JSON."""


def invocation_settings(settings: Settings, context: Any) -> Settings:
    """The core's settings for one invocation: the deadline cut to its remaining time less a margin.

    When that leaves less than :data:`MIN_DEADLINE_SECONDS`, the deadline is that minimum or half of
    what remains, whichever is shorter: the call never outlasts the invocation, and the other half
    is left for answering (with nothing left, every ID fails retryably at once).
    """
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_ms is None:
        return settings
    remaining = max(0.0, remaining_ms() / 1000)
    budget = remaining - LAMBDA_SAFETY_MARGIN_SECONDS
    if budget < MIN_DEADLINE_SECONDS:
        budget = min(MIN_DEADLINE_SECONDS, remaining / 2)
    return settings.model_copy(update={"deadline_seconds": min(settings.deadline_seconds, budget)})


def _deadline_at(context: Any) -> float:
    """When the invocation that starts now must be done (``inf`` when the settings are invalid: the
    delivery reports that itself)."""
    try:
        settings = cached_settings()
    except ConfigurationError:
        return math.inf
    return time.monotonic() + invocation_settings(settings, context).deadline_seconds


_app: LambdaApp | None = None
_app_lock = threading.Lock()


def lambda_handler(event: object, context: Any) -> dict[str, Any]:
    """AWS Lambda entrypoint: SNS, SQS, EventBridge, direct invokes and HTTP (see docs/aws.md)."""
    return container_app().handle(event, context)


def container_app() -> LambdaApp:
    """The app of this container, built on the first invocation (a cold start) and kept."""
    global _app
    with _app_lock:
        if _app is None:
            _app = LambdaApp.from_environment()
        return _app
