"""Hostile input: 10,000 generated inputs per entrypoint; no crash, a clear error, nothing invalid sent.

Entrypoints: ``handle`` (a Cognite Function's data) and ``lambda_handler`` (each generated input goes
to one of its sources, drawn at random: a direct invoke, an SNS message, an SQS batch, or an HTTP
request, signed or not, plain or base64). The inputs (``tests/reliability/hostile.py``): random JSON,
near-miss UUIDs (wrong version or variant, upper case, white space, ``../``, ``%2F``, unicode
look-alikes, null bytes), wrong types, enormous arrays and strings, deep nesting, malformed JSON,
base64 and UTF-8 in bodies and messages. The generated runs are ``slow``: 10,000 inputs each under
``TEST_DEPTH=deep`` (``make test-deep``, about three minutes for both), 1,000 in ``make test``
(tests/support/depth.py); the quick run sends the worst of them, picked by hand, through every source
and the command line.

For every input: only the errors the package raises on purpose, each with a short message; every
result's ID is a canonical UUIDv4 unless the result says ``invalid``; and every request that reached
the emulator has a path built from validated IDs only (checked against the strict pattern, query
included). One emulator serves all inputs: nothing else runs, so every recorded request is ours.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cognite.client import CogniteClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import handler
from emulator import CdfEmulator
from tests.aws import senders
from tests.aws.samples import http_event, lambda_context, sns_event, sqs_event
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from tests.reliability.conftest import UUID_V4, WEBHOOK_SECRET, Harness
from tests.reliability.hostile import (
    CANONICAL,
    KNOWN_ID_TEXTS,
    KNOWN_IDS,
    KNOWN_MESSAGES,
    KNOWN_PAYLOADS,
    bodies,
    message_texts,
    payloads,
)
from tests.support.depth import examples
from workflow_retry import cli
from workflow_retry.errors import ConfigurationError, PayloadError, UnsupportedEventError
from workflow_retry.models import Outcome

pytestmark = pytest.mark.reliability

EXAMPLES = examples(10_000)
"""Per entrypoint: 10,000 under ``TEST_DEPTH=deep`` (``make test-deep``), 1,000 in ``make test``."""
HOSTILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
MAX_MESSAGE = 2_000
"""A clear error is short: it names the problem, it does not echo the input."""

_PROJECT = "/api/v1/projects/test-project"
VALIDATED_PATHS = re.compile(
    rf"/oauth2/token|/api/v1/token/inspect|{_PROJECT}/sessions|{_PROJECT}/workflows/executions/list"
    rf"|{_PROJECT}/workflows/executions/{UUID_V4}(/retry)?"
    rf"|{_PROJECT}/raw/dbs/workflow_retry/tables/attempts/rows(/{UUID_V4})?"
)
ALLOWED_QUERY = {"ensureParent"}
OUTCOMES = {o.value for o in Outcome}


def assert_only_validated_requests(emu: CdfEmulator) -> None:
    """Every request since the last check has a path of known shape whose IDs are canonical UUIDv4s."""
    for request in emu.requests:
        assert VALIDATED_PATHS.fullmatch(request.path), f"an unvalidated path reached CDF: {request.raw_path!r}"
        assert set(request.query) <= ALLOWED_QUERY, f"an unexpected query reached CDF: {request.raw_path!r}"
    emu.clear_requests()


def assert_clear(message: str) -> None:
    assert message.strip(), "an error without a message"
    assert len(message) <= MAX_MESSAGE, f"an error of {len(message)} characters"


def assert_results(result: dict[str, Any]) -> None:
    """One result per distinct ID; IDs not reported ``invalid`` are canonical; reasons are short."""
    assert isinstance(result["results"], list)
    for item in result["results"]:
        assert item["outcome"] in OUTCOMES
        assert_clear(item["reason"])
        if item["outcome"] != "invalid":
            assert CANONICAL.fullmatch(item["executionId"]), item["executionId"]
        assert len(item["executionId"]) <= 120, "a shown value must be cut short"
    assert sum(result["counts"].values()) == len(result["results"])


@pytest.fixture
def hostile(harness: Harness) -> Iterator[Harness]:
    """No attempt ledger (the policy's cooldown would make repeats ``deferred``); three FAILED executions.

    A 30 s deadline: these tests check what hostile input gets, not timing. With the suite's 2 s, a pause
    of the test process (hypothesis keeps ~1 million objects over 10,000 examples, and one full garbage
    collection of them took over 2 s on a loaded machine) made an SQS record come back unstarted.
    """
    harness.setenv({"RETRY_LEDGER": "none", "RETRY_DEADLINE_SECONDS": "30", "RETRY_REQUEST_TIMEOUT_SECONDS": "10"})
    for execution_id in KNOWN_IDS:
        harness.emu.seed_execution("wf", "1", "FAILED", execution_id=execution_id)
    harness.emu.clear_requests()
    yield harness
    assert_only_validated_requests(harness.emu)


@pytest.fixture
def hostile_client(hostile: Harness) -> CogniteClient:
    return hostile.cognite_client()


SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}


# -- one call of each entrypoint, and what must hold for it ------------------------------------------------


def call_handle(h: Harness, client: CogniteClient, data: Any) -> None:
    try:
        result = handler.handle(data, client, SECRETS)
    except (PayloadError, ConfigurationError) as exc:
        assert_clear(str(exc))
    else:
        assert_results(result)
    assert_only_validated_requests(h.emu)


def call_direct(h: Harness, event: Any) -> None:
    try:
        result = handler.lambda_handler(event, lambda_context(60))
    except (PayloadError, ConfigurationError, UnsupportedEventError) as exc:
        assert_clear(str(exc))
    else:
        assert_results(result)
    assert_only_validated_requests(h.emu)


def call_sns(h: Harness, message: str) -> None:
    result = handler.lambda_handler(sns_event(message), lambda_context(60))

    [delivery] = result["deliveries"]
    assert delivery["status"] in ("handled", "invalid", "replayed")  # replayed: an inner SNS MessageId seen before
    if delivery["status"] == "invalid":
        assert_clear(delivery["reason"])
    assert_results(result)
    assert_only_validated_requests(h.emu)


def call_sqs(h: Harness, messages: list[str]) -> None:
    result = handler.lambda_handler(sqs_event(*messages), lambda_context(60))

    # A message that can never be read must not come back (it would loop until the dead-letter queue).
    assert result == {"batchItemFailures": []}
    assert_only_validated_requests(h.emu)


def call_http(h: Harness, body: bytes, signing: str, encoding: str) -> None:
    webhook_id = f"msg_{uuid.uuid4().hex}"
    secret = WEBHOOK_SECRET if signing != "wrong-secret" else OTHER_SECRET
    _, headers = senders.signed(body, secret, webhook_id=webhook_id)
    if signing == "unsigned":
        headers = {"Content-Type": "application/json"}
    event = http_request(body, headers, encoding)

    response = handler.lambda_handler(event, lambda_context(60))

    assert response["statusCode"] in (200, 400, 401, 413), response
    answer = json.loads(response["body"])
    if response["statusCode"] == 200:
        assert_results(answer)
    else:
        assert_clear(answer["error"])
    if signing != "signed" or encoding == "broken-base64":
        assert response["statusCode"] in (400, 401, 413)
        assert h.emu.requests == [], "an unauthenticated or unreadable request reached CDF"
    assert_only_validated_requests(h.emu)


def call_cli(h: Harness, ids: list[str]) -> None:
    """``python -m workflow_retry retry --json -- <ids>``, in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["retry", "--json", "--", *ids])
    if code == cli.EXIT_USAGE:
        assert err.getvalue().startswith("error: ")
        assert_clear(err.getvalue())
    else:
        assert code in (cli.EXIT_OK, cli.EXIT_FAILURES)
        assert_results(json.loads(out.getvalue()))
    assert_only_validated_requests(h.emu)


OTHER_SECRET = senders.new_webhook_secret()


def http_request(body: bytes, headers: dict[str, str], encoding: str) -> dict[str, Any]:
    """A Function URL event; a body that is not UTF-8 can only arrive base64-encoded."""
    try:
        body.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    if encoding == "broken-base64":
        event = http_event("function-url", b"", headers)
        event["body"], event["isBase64Encoded"] = "@@ not base64 " + base64.b64encode(body).decode()[:40], True
        return event
    return http_event("function-url", body, headers, base64_body=encoding == "base64" or not utf8)


# -- 10,000 generated inputs per entrypoint (slow: the full run) ---------------------------------------------

SIGNINGS = st.sampled_from(["signed", "signed", "signed", "unsigned", "wrong-secret"])
ENCODINGS = st.sampled_from(["plain", "base64", "broken-base64"])

lambda_inputs = st.one_of(
    st.tuples(st.just("direct"), payloads),
    st.tuples(st.just("sns"), message_texts),
    st.tuples(st.just("sqs"), st.lists(message_texts, min_size=1, max_size=2)),
    st.tuples(st.just("http"), st.tuples(bodies, SIGNINGS, ENCODINGS)),
)
"""What reaches ``lambda_handler``: a direct invoke's event, an SNS message, SQS bodies, or an HTTP request."""


@pytest.mark.slow
@HOSTILE
@given(data=payloads)
def test_handle(hostile: Harness, hostile_client: CogniteClient, data: Any) -> None:
    call_handle(hostile, hostile_client, data)


@pytest.mark.slow
@HOSTILE
@given(source_and_input=lambda_inputs)
def test_lambda_handler(hostile: Harness, source_and_input: tuple[str, Any]) -> None:
    source, value = source_and_input
    match source:
        case "direct":
            call_direct(hostile, value)
        case "sns":
            call_sns(hostile, value)
        case "sqs":
            call_sqs(hostile, value)
        case _:
            call_http(hostile, *value)


# -- the worst of them, by hand, in the quick run -------------------------------------------------------------


@pytest.mark.parametrize("data", KNOWN_PAYLOADS.values(), ids=KNOWN_PAYLOADS.keys())
def test_known_hostile_payloads(hostile: Harness, hostile_client: CogniteClient, data: Any) -> None:
    call_handle(hostile, hostile_client, data)
    call_direct(hostile, data)


@pytest.mark.parametrize("text", KNOWN_MESSAGES.values(), ids=KNOWN_MESSAGES.keys())
def test_known_hostile_messages(hostile: Harness, text: str) -> None:
    call_sns(hostile, text)
    call_sqs(hostile, [text])
    for signing, encoding in [("signed", "plain"), ("signed", "base64"), ("unsigned", "plain")]:
        call_http(hostile, text.encode("utf-8", "surrogatepass"), signing, encoding)


def test_known_hostile_ids_on_the_command_line(hostile: Harness) -> None:
    # One run per ID (a run builds its client first: 10,000 generated runs would take minutes).
    for text in KNOWN_ID_TEXTS:
        call_cli(hostile, [text])
    call_cli(hostile, KNOWN_ID_TEXTS)


def test_a_body_that_is_not_utf8_or_not_base64_is_a_400(hostile: Harness) -> None:
    call_http(hostile, b"\xff\xfe{]", "signed", "base64")
    call_http(hostile, b'{"executionId": 1}', "signed", "broken-base64")
