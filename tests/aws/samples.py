"""The AWS sample events of tests/events/, with the tests' own workflow payloads put inside."""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any, Literal

from awslambdaric.lambda_context import LambdaContext

EVENTS = Path(__file__).resolve().parents[1] / "events"
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:workflow-retry"

HttpKind = Literal["rest", "http-api", "function-url", "function-url-iam"]
_HTTP_SAMPLES: dict[str, str] = {
    "rest": "apiGatewayProxyEvent.json",
    "http-api": "apiGatewayProxyV2Event.json",
    "function-url": "lambdaFunctionUrlEvent.json",
    "function-url-iam": "lambdaFunctionUrlIAMEvent.json",
}


@cache
def _sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def load(name: str) -> dict[str, Any]:
    """A fresh copy of a sample event."""
    return copy.deepcopy(_sample(name))


def as_text(payload: object) -> str:
    return payload if isinstance(payload, str) else json.dumps(payload)


def lambda_context(seconds: float = 60) -> LambdaContext:
    """The runtime client's own context class, with ``seconds`` left."""
    deadline = int((time.time() + seconds) * 1000)
    return LambdaContext(str(uuid.uuid4()), None, None, deadline, FUNCTION_ARN)


def sns_event(payload: object, *, message_id: str | None = None) -> dict[str, Any]:
    event = load("snsEvent.json")
    sns = event["Records"][0]["Sns"]
    sns["Message"] = as_text(payload)
    sns["MessageId"] = message_id or str(uuid.uuid4())
    return event


def sqs_event(*bodies: object) -> dict[str, Any]:
    """One record per body (a payload, or a raw string), each with its own messageId."""
    template = load("sqsEvent.json")["Records"][1]
    records = []
    for body in bodies:
        record = copy.deepcopy(template)
        record["messageId"] = str(uuid.uuid4())
        record["body"] = as_text(body)
        records.append(record)
    return {"Records": records}


def sns_sqs_event(*payloads: object, fifo: bool = False, sns_message_id: str | None = None) -> dict[str, Any]:
    """SNS -> SQS (no raw delivery): each body is the SNS envelope; FIFO samples carry group IDs."""
    template = load("snsSqsFifoEvent.json" if fifo else "snsSqsEvent.json")["Records"][0]
    records = []
    for payload in payloads:
        record = copy.deepcopy(template)
        envelope = json.loads(record["body"])
        envelope["Message"] = as_text(payload)
        envelope["MessageId"] = sns_message_id or str(uuid.uuid4())
        record["body"] = json.dumps(envelope)
        record["messageId"] = str(uuid.uuid4())
        records.append(record)
    return {"Records": records}


def eventbridge_event(detail: object, *, event_id: str | None = None) -> dict[str, Any]:
    event = load("eventBridgeEvent.json")
    event["detail"] = detail
    event["detail-type"] = "Workflow execution failed"
    event["source"] = "com.example.workflows"
    event["id"] = event_id or str(uuid.uuid4())
    return event


def http_event(
    kind: HttpKind,
    body: bytes | None,
    headers: dict[str, str] | None = None,
    *,
    method: str = "POST",
    base64_body: bool = False,
) -> dict[str, Any]:
    """A request as API Gateway (REST 1.0, HTTP API 2.0) or a Function URL hands it to Lambda."""
    event = load(_HTTP_SAMPLES[kind])
    text = None if body is None else (base64.b64encode(body).decode() if base64_body else body.decode())
    event["body"] = text
    event["isBase64Encoded"] = base64_body
    if kind == "rest":
        event["httpMethod"] = method
        event["requestContext"]["httpMethod"] = method
        event["headers"] = dict(headers or {})
        event["multiValueHeaders"] = {name: [value] for name, value in (headers or {}).items()}
    else:
        event["requestContext"]["http"]["method"] = method
        event["headers"] = {name.lower(): value for name, value in (headers or {}).items()}
    return event
