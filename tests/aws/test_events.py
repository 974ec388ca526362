"""Unwrapping every event source to payloads, on the real AWS sample events (no CDF involved)."""

from __future__ import annotations

import json

import pytest

from tests.aws.samples import (
    eventbridge_event,
    http_event,
    load,
    sns_event,
    sns_sqs_event,
    sqs_event,
)
from workflow_retry.aws.events import (
    Source,
    detect_source,
    direct_delivery,
    eventbridge_delivery,
    http_request,
    is_fifo,
    payload_of_body,
    sns_deliveries,
    sqs_deliveries,
)
from workflow_retry.errors import PayloadError, UnsupportedEventError

EXECUTION_ID = "059edaa4-a17a-4102-910e-2c3591500cce"
PAYLOAD = {"executionId": EXECUTION_ID}


@pytest.mark.parametrize(
    ("sample", "source"),
    [
        ("snsEvent.json", Source.SNS),
        ("sqsEvent.json", Source.SQS),
        ("sqsDlqTriggerEvent.json", Source.SQS),
        ("snsSqsEvent.json", Source.SQS),
        ("snsSqsFifoEvent.json", Source.SQS),
        ("eventBridgeEvent.json", Source.EVENTBRIDGE),
        ("apiGatewayProxyEvent.json", Source.HTTP),
        ("apiGatewayProxyV2Event.json", Source.HTTP),
        ("apiGatewayProxyV2IamEvent.json", Source.HTTP),
        ("lambdaFunctionUrlEvent.json", Source.HTTP),
        ("lambdaFunctionUrlEventWithHeaders.json", Source.HTTP),
        ("lambdaFunctionUrlIAMEvent.json", Source.HTTP),
    ],
)
def test_every_sample_event_is_recognised(sample: str, source: Source) -> None:
    assert detect_source(load(sample)) is source


@pytest.mark.parametrize("payload", [PAYLOAD, {"executionIds": []}, {"items": []}, {"id": 1, "workflowExternalId": 2}])
def test_a_payload_invoked_directly_is_recognised_even_when_it_is_wrong_inside(payload: dict[str, object]) -> None:
    assert detect_source(payload) is Source.DIRECT


def test_records_from_another_service_are_refused_naming_it() -> None:
    event = {"Records": [{"eventSource": "aws:s3", "s3": {}}]}

    with pytest.raises(UnsupportedEventError, match=r"Records from \['aws:s3'\].*reads SNS \(aws:sns\) and SQS"):
        detect_source(event)


def test_an_event_of_no_known_shape_is_refused_listing_its_keys() -> None:
    event = {"awslogs": {"data": "..."}, "other": 1}

    with pytest.raises(UnsupportedEventError, match=r"top-level keys are \['awslogs', 'other'\]"):
        detect_source(event)


@pytest.mark.parametrize(("event", "shown"), [([PAYLOAD], "list"), ("text", "str"), (None, "NoneType")])
def test_an_event_that_is_not_an_object_is_refused(event: object, shown: str) -> None:
    with pytest.raises(UnsupportedEventError, match=f"must be a JSON object, got {shown}"):
        detect_source(event)


def test_an_empty_records_list_is_refused() -> None:
    with pytest.raises(UnsupportedEventError, match="the list is empty"):
        detect_source({"Records": []})


# -- SNS ---------------------------------------------------------------------------------------------


def test_sns_message_is_the_payload_and_the_key_is_the_message_id() -> None:
    [delivery] = sns_deliveries(sns_event(PAYLOAD, message_id="m-1"))

    assert delivery.key == "sns:m-1"
    assert [r.execution_id for r in delivery.request().ids] == [EXECUTION_ID]


def test_the_sample_sns_message_is_not_json_and_says_so_without_repeating_it() -> None:
    [delivery] = sns_deliveries(load("snsEvent.json"))

    with pytest.raises(PayloadError, match="the SNS Message is not JSON: Expecting value at line 1 column 1") as raised:
        delivery.request()
    assert "Hello" not in str(raised.value)


def test_a_malformed_sns_event_is_refused_with_the_field_named() -> None:
    event = sns_event(PAYLOAD)
    del event["Records"][0]["Sns"]["MessageId"]

    with pytest.raises(UnsupportedEventError, match=r"invalid SNS event: Records\.0\.Sns\.MessageId: Field required"):
        sns_deliveries(event)


# -- SQS ---------------------------------------------------------------------------------------------


def test_the_sample_sqs_batch_gives_one_delivery_per_record_with_its_problem() -> None:
    first, second = sqs_deliveries(load("sqsEvent.json"))

    assert (first.record_id, first.key) == (
        "059f36b4-87a3-44ab-83d2-661975830a7d",
        "sqs:059f36b4-87a3-44ab-83d2-661975830a7d",
    )
    with pytest.raises(PayloadError, match="the SQS message body is not JSON"):
        first.request()
    with pytest.raises(PayloadError, match="no execution ID found"):
        second.request()


def test_sns_through_sqs_unwraps_both_envelopes_and_keys_on_the_sns_message_id() -> None:
    [delivery] = sqs_deliveries(sns_sqs_event(PAYLOAD, sns_message_id="sns-42"))

    assert delivery.key == "sns:sns-42"
    assert delivery.record_id != "sns-42"
    assert [r.execution_id for r in delivery.request().ids] == [EXECUTION_ID]


def test_sns_through_a_fifo_queue_is_unwrapped_and_known_as_fifo() -> None:
    event = sns_sqs_event(PAYLOAD, fifo=True)
    [delivery] = sqs_deliveries(event)

    assert is_fifo(event)
    assert not is_fifo(sqs_event(PAYLOAD))
    assert [r.execution_id for r in delivery.request().ids] == [EXECUTION_ID]


def test_the_sample_sns_in_sqs_message_holds_no_execution_id() -> None:
    [delivery] = sqs_deliveries(load("snsSqsEvent.json"))

    assert delivery.key == "sns:d88d4479-6ec0-54fe-b63f-1cf9df4bb16e"
    with pytest.raises(PayloadError, match="no execution ID found"):
        delivery.request()


def test_an_eventbridge_event_in_an_sqs_body_gives_its_detail_and_its_id() -> None:
    [delivery] = sqs_deliveries(sqs_event(eventbridge_event(PAYLOAD, event_id="ev-7")))

    assert delivery.key == "events:ev-7"
    assert [r.execution_id for r in delivery.request().ids] == [EXECUTION_ID]


def test_the_dlq_sample_is_read_like_any_queue() -> None:
    [delivery] = sqs_deliveries(load("sqsDlqTriggerEvent.json"))

    assert delivery.record_id == "db37cc61-1bb0-4e77-b6f3-7cf87f44a72a"
    with pytest.raises(PayloadError, match="not JSON"):
        delivery.request()


# -- EventBridge -------------------------------------------------------------------------------------


def test_eventbridge_detail_is_the_payload_and_the_key_is_the_event_id() -> None:
    delivery = eventbridge_delivery(eventbridge_event(PAYLOAD, event_id="ev-1"))

    assert delivery.key == "events:ev-1"
    assert [r.execution_id for r in delivery.request().ids] == [EXECUTION_ID]


# -- HTTP --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rest", "http-api", "function-url", "function-url-iam"])
@pytest.mark.parametrize("encoded", [False, True])
def test_http_events_give_method_lower_case_headers_and_the_raw_body(kind, encoded: bool) -> None:
    body = json.dumps(PAYLOAD).encode()
    event = http_event(kind, body, {"Webhook-Id": "msg_1"}, base64_body=encoded)

    request = http_request(event)

    assert request.method == "POST"
    assert request.headers["webhook-id"] == "msg_1"
    assert request.body == body
    assert payload_of_body(request.body) == PAYLOAD


def test_only_requests_signed_with_iam_carry_the_caller() -> None:
    assert (
        http_request(load("lambdaFunctionUrlIAMEvent.json")).iam_caller == "arn:aws:iam::111122223333:user/example-user"
    )
    assert http_request(load("apiGatewayProxyV2IamEvent.json")).iam_caller == "arn:aws:iam::1234567890:user/Admin"
    assert http_request(load("lambdaFunctionUrlEvent.json")).iam_caller is None
    assert http_request(load("apiGatewayProxyEvent.json")).iam_caller is None


def test_a_request_without_body_or_headers_is_empty_not_an_error() -> None:
    event = load("apiGatewayProxyEvent.json")
    event["headers"] = None
    event["body"] = None

    request = http_request(event)

    assert (request.method, request.headers, request.body) == ("GET", {}, b"")


def test_a_body_marked_base64_that_is_not_is_refused() -> None:
    event = http_event("function-url", b"{}")
    event["isBase64Encoded"] = True
    event["body"] = "not base64!"

    with pytest.raises(PayloadError, match="not valid base64"):
        http_request(event)


@pytest.mark.parametrize(("body", "reason"), [(b"{", "not JSON: Expecting property name"), (b"\xff\xfe", "not UTF-8")])
def test_an_unreadable_body_says_why(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        payload_of_body(body)


@pytest.mark.parametrize(
    ("samples", "shown"),
    [
        (["snsEvent.json", "sqsEvent.json"], "['aws:sns', 'aws:sqs']"),
        (["sqsEvent.json", "snsEvent.json"], "['aws:sns', 'aws:sqs']"),
        (["snsEvent.json"], "['aws:sns', 'unknown']"),
        (["sqsEvent.json"], "['aws:sqs', 'unknown']"),
    ],
)
def test_records_from_mixed_sources_are_refused_not_read_as_one_of_them(samples: list[str], shown: str) -> None:
    # Lambda never mixes sources in one event: such an event is forged, and reading it as SNS or SQS
    # would hand the other records to a parser that was not made for them.
    records = [record for sample in samples for record in load(sample)["Records"]]
    if len(samples) == 1:
        records.append({"body": "{}"})  # a record that names no source

    with pytest.raises(UnsupportedEventError) as refused:
        detect_source({"Records": records})

    assert f"Records from {shown}" in str(refused.value)


# -- the exact words and fields a caller gets back ----------------------------------------------------


def test_an_empty_records_list_is_refused_in_full_words() -> None:
    with pytest.raises(UnsupportedEventError) as refused:
        detect_source({"Records": []})

    assert str(refused.value) == (
        "Records from nowhere (the list is empty): this function reads SNS (aws:sns) and SQS (aws:sqs) records"
    )


@pytest.mark.parametrize(
    "event",
    [
        {**PAYLOAD, "detail": {"executionId": "other"}},  # no detail-type: not from EventBridge
        {**PAYLOAD, "detail-type": "Workflow failed"},  # no detail
        {**PAYLOAD, "requestContext": {"requestId": "r"}},  # neither httpMethod nor routeKey: not HTTP
        {**PAYLOAD, "httpMethod": "POST"},  # no requestContext
    ],
)
def test_a_payload_with_one_field_of_another_source_is_still_a_direct_payload(event: dict[str, object]) -> None:
    assert detect_source(event) is Source.DIRECT


def test_deliveries_say_where_they_came_from() -> None:
    assert [d.source for d in sns_deliveries(sns_event(PAYLOAD))] == [Source.SNS]
    assert [d.source for d in sqs_deliveries(sqs_event(PAYLOAD, PAYLOAD))] == [Source.SQS, Source.SQS]
    assert eventbridge_delivery(eventbridge_event(PAYLOAD)).source is Source.EVENTBRIDGE


def test_malformed_sqs_and_eventbridge_events_are_refused_naming_the_source() -> None:
    sqs = sqs_event(PAYLOAD)
    del sqs["Records"][0]["messageId"]
    bridge = eventbridge_event(PAYLOAD)
    del bridge["id"]

    with pytest.raises(UnsupportedEventError) as bad_sqs:
        sqs_deliveries(sqs)
    with pytest.raises(UnsupportedEventError) as bad_bridge:
        eventbridge_delivery(bridge)

    assert str(bad_sqs.value) == "invalid SQS event: Records.0.messageId: Field required"
    assert str(bad_bridge.value) == "invalid EventBridge event: id: Field required"


def test_a_body_with_a_topic_arn_but_no_sns_type_is_a_payload_not_an_envelope() -> None:
    body = {**PAYLOAD, "TopicArn": "arn:aws:sns:eu-west-1:123456789012:t"}

    [delivery] = sqs_deliveries(sqs_event(body))

    assert (delivery.payload, delivery.problem) == (body, None)


def test_a_broken_sns_envelope_in_a_queue_says_so() -> None:
    envelope = {"Type": "Notification", "TopicArn": "arn:aws:sns:eu-west-1:123456789012:t", "Message": "{}"}

    [delivery] = sqs_deliveries(sqs_event(envelope))

    assert delivery.problem is not None
    assert delivery.problem.startswith("invalid SNS envelope: ")
    assert "MessageId: Field required" in delivery.problem


def test_a_rest_request_signed_with_iam_carries_the_caller_and_every_request_its_id() -> None:
    event = http_event("rest", b"{}")
    event["requestContext"]["identity"]["userArn"] = "arn:aws:iam::123456789012:user/caller"

    request = http_request(event)

    assert request.iam_caller == "arn:aws:iam::123456789012:user/caller"
    assert request.request_id == "id="
    assert http_request(http_event("function-url", b"{}")).request_id == "id"


def test_a_malformed_http_event_is_refused_naming_it() -> None:
    event = http_event("http-api", b"{}")
    del event["requestContext"]["http"]

    with pytest.raises(PayloadError) as refused:
        http_request(event)

    assert str(refused.value) == "invalid HTTP event: requestContext.http: Field required"


def test_a_base64_body_with_a_stray_character_is_refused_not_repaired() -> None:
    event = http_event("function-url", b"{}")
    event["isBase64Encoded"] = True
    event["body"] = "e3*0="  # "e30=" is {}; a lenient decoder would drop the '*'

    with pytest.raises(PayloadError) as refused:
        http_request(event)

    assert str(refused.value) == "the body is marked base64-encoded but is not valid base64"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "the body is not UTF-8 text"),
        (b"[" * 100_000, "the body is not JSON: nested too deeply"),
        (b"1" * 5_000, "the body is not JSON: ValueError"),  # too many digits: a ValueError of its own
    ],
)
def test_an_unreadable_body_says_why_in_full_words(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as refused:
        payload_of_body(body)

    assert str(refused.value) == message


def test_a_direct_invoke_is_its_own_payload_without_a_duplicate_key() -> None:
    delivery = direct_delivery(dict(PAYLOAD))

    assert (delivery.source, delivery.key, delivery.payload, delivery.problem) == (Source.DIRECT, None, PAYLOAD, None)


def test_an_sns_envelope_in_a_queue_whose_message_is_not_json_says_so() -> None:
    [delivery] = sqs_deliveries(sns_sqs_event("not json"))

    assert delivery.problem == "the SNS Message is not JSON: Expecting value at line 1 column 1"


@pytest.mark.parametrize(
    "body",
    [
        {**PAYLOAD, "detail": {"executionId": "other"}, "id": "1"},  # no detail-type
        {**PAYLOAD, "detail-type": "Workflow failed", "id": "1"},  # no detail
    ],
)
def test_a_queued_body_with_some_eventbridge_fields_is_a_payload(body: dict[str, object]) -> None:
    [delivery] = sqs_deliveries(sqs_event(body))

    assert (delivery.payload, delivery.problem) == (body, None)


def test_a_broken_eventbridge_event_in_a_queue_says_so() -> None:
    [delivery] = sqs_deliveries(sqs_event({"detail-type": "Workflow failed", "detail": PAYLOAD, "id": "ev-1"}))

    assert delivery.problem is not None
    assert delivery.problem.startswith("invalid EventBridge event: ")
