"""Lambda events unwrapped to the payloads ``parse_payload`` accepts: one :class:`Delivery` per record.

Sources (samples in tests/events/):

- direct invoke: the event is the payload;
- SNS -> Lambda: ``Records[].Sns.Message`` holds the payload as JSON;
- SQS -> Lambda: ``Records[].body`` holds the payload, or an SNS envelope whose ``Message`` does
  (SNS -> SQS without raw delivery), standard or FIFO;
- EventBridge: ``detail`` holds the payload;
- HTTP (API Gateway REST payload 1.0, HTTP API 2.0, Lambda Function URL): :class:`HttpRequest`.

A message body may also hold a whole EventBridge event (an EventBridge rule targeting SNS or SQS):
its ``detail`` is the payload. SNS, SQS and EventBridge records are read with Powertools' parser
models; the HTTP shapes with small models of what is used here, so that an odd field elsewhere in
the request cannot turn a clear 4xx into a 500. The parser models are imported by the functions that
read those sources, not with this module: they cost a cold start ~60 ms, and a direct invoke or an
HTTP request never uses them.

Each delivery carries a duplicate-detection key from the innermost envelope that has an ID:
``sns:<MessageId>``, ``events:<id>`` or ``sqs:<messageId>`` (so one SNS message fanned out to
Lambda and to a queue, or sent twice into a queue, is one delivery).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from workflow_retry.errors import PayloadError, UnsupportedEventError
from workflow_retry.models import RetryRequest
from workflow_retry.payloads import CognitePayload, describe_validation_error, parse_payload

_PAYLOAD_KEYS = frozenset(field.alias or name for name, field in CognitePayload.model_fields.items())
_SHOWN_KEYS = 10


class Source(StrEnum):
    DIRECT = "direct"
    SNS = "sns"
    SQS = "sqs"
    EVENTBRIDGE = "eventbridge"
    HTTP = "http"


@dataclass(frozen=True)
class Delivery:
    """One payload as delivered: its duplicate key, its record ID (SQS), and the payload or its problem."""

    source: Source
    key: str | None
    payload: object = None
    problem: str | None = None
    record_id: str | None = None

    @property
    def fingerprint(self) -> str:
        """A hash of the payload (canonical JSON): the duplicate guard binds the key to it, so a key that
        comes again with another payload is told apart from a duplicate."""
        canonical = json.dumps([self.payload, self.problem], sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def request(self) -> RetryRequest:
        """The payload as a request; :class:`PayloadError` when it cannot be read."""
        if self.problem is not None:
            raise PayloadError(self.problem)
        return parse_payload(self.payload)


def detect_source(event: object) -> Source:
    """Which kind of event this is; :class:`UnsupportedEventError` naming what it saw otherwise."""
    if not isinstance(event, dict):
        raise UnsupportedEventError(f"the event must be a JSON object, got {type(event).__name__}")
    records = event.get("Records")
    if isinstance(records, list):
        sources = {
            str(record.get("EventSource") or record.get("eventSource") or "unknown")
            for record in records
            if isinstance(record, dict)
        }
        if sources == {"aws:sns"}:
            return Source.SNS
        if sources == {"aws:sqs"}:
            return Source.SQS
        raise UnsupportedEventError(
            f"Records from {sorted(sources) or 'nowhere (the list is empty)'}: this function reads SNS "
            "(aws:sns) and SQS (aws:sqs) records"
        )
    if "detail-type" in event and "detail" in event:
        return Source.EVENTBRIDGE
    if "requestContext" in event and ("httpMethod" in event or "routeKey" in event):
        return Source.HTTP
    if _PAYLOAD_KEYS & event.keys():
        return Source.DIRECT
    keys = sorted(str(key) for key in event)[:_SHOWN_KEYS]
    raise UnsupportedEventError(
        f"the event is not from SNS, SQS, EventBridge or HTTP, and not a retry payload (it has none of "
        f"{sorted(_PAYLOAD_KEYS)}); its top-level keys are {keys}"
    )


def direct_delivery(event: dict[str, Any]) -> Delivery:
    return Delivery(Source.DIRECT, key=None, payload=event)


def sns_deliveries(event: dict[str, Any]) -> list[Delivery]:
    """One delivery per SNS record (SNS invokes Lambda with one record)."""
    from aws_lambda_powertools.utilities.parser.models import SnsModel  # see the module docstring

    model = _parse(SnsModel, event, "SNS event")
    deliveries = []
    for record in model.Records:
        payload, inner_key, problem = payload_of_message(str(record.Sns.Message), "the SNS Message")
        key = inner_key or f"sns:{record.Sns.MessageId}"
        deliveries.append(Delivery(Source.SNS, key=key, payload=payload, problem=problem))
    return deliveries


def sqs_deliveries(event: dict[str, Any]) -> list[Delivery]:
    """One delivery per SQS record, in batch order (the order FIFO queues require)."""
    from aws_lambda_powertools.utilities.parser.models import SqsModel  # see the module docstring

    model = _parse(SqsModel, event, "SQS event")
    deliveries = []
    for record in model.Records:
        payload, inner_key, problem = payload_of_message(str(record.body), "the SQS message body")
        deliveries.append(
            Delivery(
                Source.SQS,
                key=inner_key or f"sqs:{record.messageId}",
                payload=payload,
                problem=problem,
                record_id=record.messageId,
            )
        )
    return deliveries


def is_fifo(event: dict[str, Any]) -> bool:
    """Whether the SQS records come from a FIFO queue (order within a message group must be kept)."""
    records = event.get("Records") or []
    return any(str(record.get("eventSourceARN", "")).endswith(".fifo") for record in records)


def eventbridge_delivery(event: dict[str, Any]) -> Delivery:
    from aws_lambda_powertools.utilities.parser.models import EventBridgeModel  # see the module docstring

    model = _parse(EventBridgeModel, event, "EventBridge event")
    return Delivery(Source.EVENTBRIDGE, key=f"events:{model.id}", payload=model.detail)


def _parse(model: type[Any], event: dict[str, Any], what: str) -> Any:
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        raise UnsupportedEventError(describe_validation_error(exc, what)) from None


def payload_of_message(text: str, what: str) -> tuple[object, str | None, str | None]:
    """(payload, key of an inner envelope, problem) of a message text."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, None, f"{what} is not JSON: {_json_problem(exc)}"
    if isinstance(value, dict) and value.get("Type") == "Notification" and "TopicArn" in value:
        from aws_lambda_powertools.utilities.parser.models import SnsNotificationModel  # see the module docstring

        try:
            notification = SnsNotificationModel.model_validate(value)
        except ValidationError as exc:
            return None, None, describe_validation_error(exc, "SNS envelope")
        payload, inner_key, problem = payload_of_message(str(notification.Message), "the SNS Message")
        return payload, inner_key or f"sns:{notification.MessageId}", problem
    if isinstance(value, dict) and "detail-type" in value and "detail" in value and "id" in value:
        from aws_lambda_powertools.utilities.parser.models import EventBridgeModel  # see the module docstring

        try:
            bridged = EventBridgeModel.model_validate(value)
        except ValidationError as exc:
            return None, None, describe_validation_error(exc, "EventBridge event")
        return bridged.detail, f"events:{bridged.id}", None
    return value, None, None


# -- HTTP ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP request as API Gateway or a Function URL hands it over, normalised.

    ``iam_caller`` is the IAM principal's ARN when the request was signed with SigV4 and checked by
    AWS (Function URL or API with ``AWS_IAM`` auth), else None.
    """

    method: str
    headers: dict[str, str]
    body: bytes
    iam_caller: str | None
    request_id: str | None


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _IamIdentity(_Lenient):
    userArn: str | None = None


class _AuthorizerV2(_Lenient):
    iam: _IamIdentity | None = None


class _HttpV2(_Lenient):
    method: str


class _ContextV2(_Lenient):
    http: _HttpV2
    authorizer: _AuthorizerV2 | None = None
    requestId: str | None = None


class _ContextV1(_Lenient):
    identity: _IamIdentity | None = None
    requestId: str | None = None


class _HttpEventBase(_Lenient):
    headers: dict[str, str | None] | None = None
    body: str | None = None
    isBase64Encoded: bool = False


class HttpEventV1(_HttpEventBase):
    """API Gateway REST API, payload format 1.0."""

    httpMethod: str
    requestContext: _ContextV1


class HttpEventV2(_HttpEventBase):
    """API Gateway HTTP API, payload format 2.0, and Lambda Function URLs (the same shape)."""

    requestContext: _ContextV2


def http_request(event: dict[str, Any]) -> HttpRequest:
    """The normalised request; :class:`PayloadError` when the event or its base64 body is malformed."""
    try:
        if "httpMethod" in event:
            v1 = HttpEventV1.model_validate(event)
            method, caller, request_id = v1.httpMethod, _arn(v1.requestContext.identity), v1.requestContext.requestId
            base: _HttpEventBase = v1
        else:
            v2 = HttpEventV2.model_validate(event)
            context = v2.requestContext
            method, request_id = context.http.method, context.requestId
            caller = _arn(context.authorizer.iam if context.authorizer else None)
            base = v2
    except ValidationError as exc:
        raise PayloadError(describe_validation_error(exc, "HTTP event")) from None
    headers = {name.lower(): value for name, value in (base.headers or {}).items() if value is not None}
    body = (base.body or "").encode("utf-8")
    if base.isBase64Encoded:
        try:
            body = base64.b64decode(body, validate=True)
        except binascii.Error:
            raise PayloadError("the body is marked base64-encoded but is not valid base64") from None
    return HttpRequest(method.upper(), headers, body, caller, request_id)


def _arn(identity: _IamIdentity | None) -> str | None:
    return identity.userArn if identity is not None and identity.userArn else None


def payload_of_body(body: bytes) -> object:
    """The JSON payload of an HTTP body; :class:`PayloadError` saying why it cannot be read."""
    try:
        text = body.decode("utf-8")  # JSON on the wire is UTF-8 (RFC 8259); no guessing
    except UnicodeDecodeError:
        raise PayloadError("the body is not UTF-8 text") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"the body is not JSON: {_json_problem(exc)}") from None


def _json_problem(exc: ValueError | RecursionError) -> str:
    # Where and what, never the text itself (a message could hold anything).
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):  # json.loads recurses once per level of nesting
        return "nested too deeply"
    return type(exc).__name__
