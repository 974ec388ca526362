"""The DynamoDB ledger when DynamoDB refuses, throttles, fails or hangs, and giving an attempt back.

DynamoDB's errors come from a small HTTP server in a thread that answers every request with one error
in DynamoDB's JSON shape, so real boto3 parses it as it would AWS's answer; moto's server holds the
table for the rest.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from tests.support.silent import SilentServer
from workflow_retry.errors import ConfigurationError, LedgerError
from workflow_retry.ledger import AttemptRecord
from workflow_retry.ledger.dynamodb import DynamoDbLedger

TTL = 7 * 86_400


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


class DynamoDbErrorServer:
    """Answers every DynamoDB request with ``status`` and the error ``code`` (``message`` when given)."""

    def __init__(self, status: int, code: str, message: str | None) -> None:
        body: dict[str, str] = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}"}
        if message is not None:
            body["message"] = message
        payload = json.dumps(body).encode()
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                outer.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def ledger_at(endpoint: str) -> DynamoDbLedger:
    client: Any = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=boto3.session.Config(retries={"total_max_attempts": 1}),
    )
    return DynamoDbLedger(client, "ledger", TTL)


@pytest.fixture
def answering() -> Iterator[Any]:
    servers: list[DynamoDbErrorServer] = []

    def start(status: int, code: str, message: str | None = None) -> DynamoDbErrorServer:
        servers.append(DynamoDbErrorServer(status, code, message))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, "ProvisionedThroughputExceededException", True),
        (400, "ThrottlingException", True),
        (400, "RequestLimitExceeded", True),
        (500, "InternalServerError", True),
        (400, "AccessDeniedException", False),
        (400, "ResourceNotFoundException", False),
        (400, "ValidationException", False),
        (400, "UnrecognizedClientException", False),
    ],
)
def test_dynamodbs_errors_say_what_failed_and_only_throttling_and_faults_are_retryable(
    answering: Any, status: int, code: str, retryable: bool
) -> None:
    ledger = ledger_at(answering(status, code, "the table said no").url)

    with pytest.raises(LedgerError) as reading:
        run(ledger.get("exec-1", 0))
    with pytest.raises(LedgerError) as writing:
        run(ledger.take_attempt(None, "exec-1", "wf", 0))
    with pytest.raises(LedgerError) as listing:
        run(ledger.list_recent(0, 0, 10))

    assert str(reading.value) == f"reading the DynamoDB attempt ledger failed ({code}: the table said no)"
    assert str(writing.value) == f"writing the DynamoDB attempt ledger failed ({code}: the table said no)"
    assert str(listing.value) == str(reading.value)
    for error in (reading.value, writing.value, listing.value):
        assert (error.code, error.retryable) == (status, retryable)


def test_an_error_without_a_message_is_named_by_its_code_alone(answering: Any) -> None:
    ledger = ledger_at(answering(400, "AccessDeniedException").url)

    with pytest.raises(LedgerError) as caught:
        run(ledger.get("exec-1", 0))

    assert str(caught.value) == "reading the DynamoDB attempt ledger failed (AccessDeniedException)"


def test_an_endpoint_that_refuses_connections_is_a_retryable_failure_named_by_its_kind() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{unused.getsockname()[1]}"  # nothing listens there once it is closed
    ledger = ledger_at(closed)

    with pytest.raises(LedgerError) as reading:
        run(ledger.get("exec-1", 0))
    with pytest.raises(LedgerError) as writing:
        run(ledger.release_attempt(AttemptRecord("exec-1", "wf", 1, 1, "retried", 10), None))

    assert str(reading.value) == "reading the DynamoDB attempt ledger failed (EndpointConnectionError)"
    assert str(writing.value) == "writing the DynamoDB attempt ledger failed (EndpointConnectionError)"
    for error in (reading.value, writing.value):
        assert (error.code, error.retryable) == (None, True)


# -- the ledger made from the environment: the deadline bounds its calls -----------------------------


def test_a_ledger_made_from_the_environment_works_with_and_without_a_deadline(ledger_table: str) -> None:
    now = int(time.time() * 1000)
    for deadline in (None, 30.0):
        ledger = DynamoDbLedger.from_table_name(ledger_table, TTL, deadline)
        execution = f"exec-deadline-{deadline}"

        taken = run(ledger.take_attempt(None, execution, "wf", now))

        assert run(ledger.get(execution, now + 1)) == taken


def test_a_hanging_dynamodb_is_given_the_calls_deadline_no_less_and_no_more(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SilentServer() as silent:
        monkeypatch.setenv("AWS_ENDPOINT_URL", silent.url)
        created = time.monotonic()  # the deadline counts from here: 1.5 s for every call of this ledger
        ledger = DynamoDbLedger.from_table_name("ledger", TTL, deadline_seconds=1.5)
        started = time.monotonic()
        with pytest.raises(LedgerError) as caught:
            run(ledger.get("exec-1", 0))
        ended = time.monotonic()

    # One attempt fits in what is left: a third to connect, the rest to read (botocore's own defaults
    # would wait 60 s, three times). Not the 0.1 s floor of a call with no time left, either.
    assert ended - created < 1.5, ended - created
    assert ended - started >= 0.5, ended - started
    assert (caught.value.retryable, str(caught.value)) == (
        True,
        "reading the DynamoDB attempt ledger failed (ReadTimeoutError)",
    )


def test_no_region_is_a_configuration_error_that_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")

    with pytest.raises(ConfigurationError, match=r"^RETRY_LEDGER=dynamodb: no DynamoDB client can be made: "):
        DynamoDbLedger.from_table_name("ledger", TTL, 10.0)


# -- giving an attempt back ----------------------------------------------------------------------------


def item_of(table: str, execution_id: str) -> dict[str, Any] | None:
    answer = boto3.client("dynamodb").get_item(TableName=table, Key={"executionId": {"S": execution_id}})
    item: dict[str, Any] | None = answer.get("Item")
    return item


def test_a_first_attempt_given_back_leaves_no_item(ledger_table: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)
    now = int(time.time() * 1000)
    taken = run(ledger.take_attempt(None, "exec-first", "wf", now))

    run(ledger.release_attempt(taken, None))

    assert item_of(ledger_table, "exec-first") is None
    assert run(ledger.take_attempt(None, "exec-first", "wf", now + 2)).attempts == 1


def test_an_attempt_is_not_given_back_once_another_invocation_took_the_next(ledger_table: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)
    now = int(time.time() * 1000)
    first = run(ledger.take_attempt(None, "exec-moved", "wf", now))
    second = run(ledger.take_attempt(first, "exec-moved", "wf", now + 1))
    third = run(ledger.take_attempt(second, "exec-moved", "wf", now + 2))  # another invocation, meanwhile

    run(ledger.release_attempt(first, None))  # delete, conditional on the first attempt
    run(ledger.release_attempt(second, first))  # put back, conditional on the second

    assert run(ledger.get("exec-moved", now + 5)) == third


def test_an_attempt_given_back_after_its_item_expired_does_not_bring_the_item_back(ledger_table: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)
    now = int(time.time() * 1000)
    first = run(ledger.take_attempt(None, "exec-gone", "wf", now))
    second = run(ledger.take_attempt(first, "exec-gone", "wf", now + 1))
    boto3.client("dynamodb").delete_item(TableName=ledger_table, Key={"executionId": {"S": "exec-gone"}})  # TTL

    run(ledger.release_attempt(second, first))

    assert item_of(ledger_table, "exec-gone") is None


def test_a_give_up_on_an_execution_never_retried_names_its_workflow(ledger_table: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)
    now = int(time.time() * 1000)

    run(ledger.record_outcome(AttemptRecord("exec-access", "payroll", 0, None, None, 0), "gave_up", now))

    record = run(ledger.get("exec-access", now + 1))
    assert (record.workflow_external_id, record.attempts, record.last_outcome) == ("payroll", 0, "gave_up")
    assert record.expires_at == now // 1000 + TTL


def test_reads_are_strongly_consistent_so_a_write_just_made_elsewhere_is_seen(ledger_table: str) -> None:
    # moto answers both kinds of read alike; DynamoDB's eventually consistent read may miss a write made
    # a moment ago by another invocation, which would let both take the last attempt.
    client: Any = boto3.client("dynamodb")
    sent: list[dict[str, Any]] = []
    client.meta.events.register("provide-client-params.dynamodb.GetItem", lambda params, **_: sent.append(params))
    ledger = DynamoDbLedger(client, ledger_table, TTL)

    run(ledger.get("exec-consistent", 0))

    assert [params.get("ConsistentRead") for params in sent] == [True]


def test_a_record_is_live_until_the_second_it_expires(ledger_table: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)
    now = int(time.time() * 1000)
    taken = run(ledger.take_attempt(None, "exec-edge", "wf", now))
    expires_ms = taken.expires_at * 1000

    assert run(ledger.get("exec-edge", expires_ms - 1)) == taken
    assert run(ledger.get("exec-edge", expires_ms)) is None


def test_an_item_written_before_the_history_was_kept_reads_as_a_record_without_history(ledger_table: str) -> None:
    now = int(time.time() * 1000)
    boto3.client("dynamodb").put_item(
        TableName=ledger_table,
        Item={
            "executionId": {"S": "exec-old"},
            "workflowExternalId": {"S": "wf"},
            "attempts": {"N": "2"},
            "lastAttemptAt": {"N": str(now - 60_000)},
            "lastOutcome": {"S": "retried"},
            "expiresAt": {"N": str(now // 1000 + TTL)},
        },
    )
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)

    record = run(ledger.get("exec-old", now))

    assert record == AttemptRecord("exec-old", "wf", 2, now - 60_000, "retried", now // 1000 + TTL)
    assert run(ledger.take_attempt(record, "exec-old", None, now)) is not None  # and it still counts


def test_a_give_up_for_an_execution_of_no_known_workflow_reads_back_without_one(ledger_table: str) -> None:
    ledger = DynamoDbLedger(boto3.client("dynamodb"), ledger_table, TTL)
    now = int(time.time() * 1000)

    assert run(ledger.record_outcome(AttemptRecord("exec-nowf", None, 0, None, None, 0), "gave_up", now)) is True

    item = item_of(ledger_table, "exec-nowf")
    assert item is not None
    assert "workflowExternalId" not in item
    record = run(ledger.get("exec-nowf", now + 1))
    assert (record.workflow_external_id, record.attempts, record.last_attempt_at, record.last_outcome) == (
        None,
        0,
        None,
        "gave_up",
    )
