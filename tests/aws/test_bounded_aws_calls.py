"""Every AWS call ends within the invocation's time, even when the endpoint accepts and never answers.

Real boto3 is pointed at a loopback server that accepts each connection and never writes a byte,
through the per-service endpoint variables boto3 reads (``AWS_ENDPOINT_URL_DYNAMODB`` and so on);
the other services stay on moto's server. Each test runs the invocation in a thread and fails if it
is still running after the Lambda's time, rather than waiting out botocore's own 60 s timeouts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from emulator import CdfEmulator, Fault
from tests.aws.conftest import AppFactory
from tests.aws.samples import http_event, lambda_context, sqs_event
from tests.aws.senders import new_webhook_secret, signed
from tests.support.silent import SilentServer
from workflow_retry.aws.config import LAMBDA_SAFETY_MARGIN_SECONDS
from workflow_retry.aws.entrypoint import MIN_DEADLINE_SECONDS, invocation_settings
from workflow_retry.boto_clients import CallBounds, bounded_client
from workflow_retry.errors import ConfigurationError, LedgerError, TransientFailuresError
from workflow_retry.giveup import GiveUp, SnsNotifier
from workflow_retry.ledger.dynamodb import DynamoDbLedger
from workflow_retry.settings import Settings

TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:gave-up"


@pytest.fixture
def silent(moto_endpoint: str) -> Iterator[SilentServer]:
    with SilentServer() as server:
        yield server


def hangs(monkeypatch: pytest.MonkeyPatch, silent: SilentServer, service: str) -> None:
    """Point ``service`` (its endpoint variable's suffix: botocore's service ID, e.g. SECRETS_MANAGER) at ``silent``."""
    monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", silent.url)


def within(seconds: float, call: Callable[[], Any]) -> tuple[Any, BaseException | None, float]:
    """(result, exception, elapsed) of ``call``; the test fails if it is still running after ``seconds``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"still running after {seconds} s"
    return outcome.get("result"), outcome.get("error"), elapsed


def retries(emu: CdfEmulator) -> list[Any]:
    return emu.requests_matching("POST", r"/workflows/executions/[^/]+/retry$")


# -- the idempotency table -----------------------------------------------------------------------------


@pytest.mark.slow  # waits out a deadline of seconds
def test_an_idempotency_table_that_never_answers_is_a_quick_503_and_cdf_is_not_called(
    new_app: AppFactory, emu: CdfEmulator, silent: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hangs(monkeypatch, silent, "DYNAMODB")
    secret = new_webhook_secret()
    app = new_app({"IDEMPOTENCY_TABLE": "idempotency", "WEBHOOK_SECRET": secret})
    failed = emu.seed_execution("wf", "1", "FAILED")
    body, headers = signed({"executionId": failed["id"]}, secret)
    remaining = 4.0

    answer, error, elapsed = within(
        remaining, lambda: app.handle(http_event("function-url", body, headers), lambda_context(remaining))
    )

    assert error is None
    assert answer["statusCode"] == 503
    assert "idempotency table" in json.loads(answer["body"])["error"]
    assert elapsed < remaining
    assert silent.accepted >= 1  # it was asked, and given up on
    assert retries(emu) == []


@pytest.mark.slow  # waits out a deadline of seconds
def test_an_sqs_record_whose_idempotency_table_never_answers_comes_back_within_the_invocation(
    new_app: AppFactory, emu: CdfEmulator, silent: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hangs(monkeypatch, silent, "DYNAMODB")
    app = new_app({"IDEMPOTENCY_TABLE": "idempotency"})
    failed = emu.seed_execution("wf", "1", "FAILED")
    event = sqs_event({"executionId": failed["id"]})
    remaining = LAMBDA_SAFETY_MARGIN_SECONDS + 2

    answer, error, elapsed = within(remaining, lambda: app.handle(event, lambda_context(remaining)))

    assert error is None
    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert elapsed < remaining
    assert retries(emu) == []


# -- secrets --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "reference"), [("SECRETS_MANAGER", "cdf/client-secret"), ("SSM", "ssm:/cdf/secret")]
)
def test_a_secret_store_that_never_answers_is_a_configuration_error_within_the_deadline(
    new_app: AppFactory,
    emu: CdfEmulator,
    silent: SilentServer,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    reference: str,
) -> None:
    hangs(monkeypatch, silent, service)
    monkeypatch.delenv("IDP_CLIENT_SECRET")
    app = new_app({"IDP_CLIENT_SECRET_REF": reference})
    failed = emu.seed_execution("wf", "1", "FAILED")
    remaining = LAMBDA_SAFETY_MARGIN_SECONDS + 2  # a deadline of 2 s

    _, error, elapsed = within(remaining, lambda: app.handle({"executionId": failed["id"]}, lambda_context(remaining)))

    assert isinstance(error, ConfigurationError)
    assert "Timeout" in str(error)
    assert elapsed < remaining
    assert silent.wait_until_all_closed(remaining - elapsed)
    assert emu.requests == []


# -- the attempt ledger and the give-up topic ------------------------------------------------------------


def test_a_dynamodb_ledger_that_never_answers_fails_the_ids_retryably_and_lets_go_of_its_connections(
    new_app: AppFactory, emu: CdfEmulator, silent: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hangs(monkeypatch, silent, "DYNAMODB")
    monkeypatch.setenv("RETRY_LEDGER", "dynamodb")
    monkeypatch.setenv("RETRY_LEDGER_TABLE", "attempts")
    app = new_app()
    failed = emu.seed_execution("wf", "1", "FAILED")
    remaining = LAMBDA_SAFETY_MARGIN_SECONDS + 2

    _, error, elapsed = within(remaining, lambda: app.handle({"executionId": failed["id"]}, lambda_context(remaining)))

    assert isinstance(error, TransientFailuresError)
    assert elapsed < remaining
    # No thread is left waiting on the table past the invocation (it would resume in the next one).
    assert silent.wait_until_all_closed(remaining - elapsed)
    assert retries(emu) == []


def test_a_ledger_call_is_bounded_by_the_calls_deadline(silent: SilentServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    hangs(monkeypatch, silent, "DYNAMODB")
    ledger = DynamoDbLedger.from_table_name("attempts", 3600, deadline_seconds=1.5)

    _, error, elapsed = within(3, lambda: asyncio.run(ledger.get("1", int(time.time() * 1000))))

    assert isinstance(error, LedgerError)
    assert error.retryable
    assert elapsed < 1.5 + 0.5


def test_a_give_up_topic_that_never_answers_is_given_up_on_within_the_calls_deadline(
    silent: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hangs(monkeypatch, silent, "SNS")
    notifier = SnsNotifier(TOPIC_ARN, deadline_seconds=1.5)
    give_up = GiveUp("1", "wf", "1", 3, 3, "exhausted", "boom", "retried 3 times")

    _, error, elapsed = within(3, lambda: notifier.notify(give_up))

    assert error is not None
    assert elapsed < 1.5 + 0.5
    assert silent.wait_until_all_closed(0.5)


# -- the bounds themselves -----------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.0, 0.3, 0.8, 1.0, 2.0, 3.7, 5.0, 6.0, 9.5, 24.0, 60.0, 900.0])
def test_the_longest_a_call_can_take_fits_in_the_time_given(seconds: float) -> None:
    bounds = CallBounds.within(seconds)

    assert bounds.longest_seconds <= max(seconds, CallBounds.within(0).longest_seconds) + 1e-9
    assert 1 <= bounds.max_attempts <= 3
    assert bounds.connect_timeout <= 2.0
    assert bounds.read_timeout <= 5.0


def test_a_client_carries_its_bounds_into_botocore(moto_endpoint: str) -> None:
    client = bounded_client("dynamodb", 4.0)
    bounds = CallBounds.within(4.0)

    assert client.meta.config.connect_timeout == bounds.connect_timeout
    assert client.meta.config.read_timeout == bounds.read_timeout
    assert client.meta.config.retries["total_max_attempts"] == bounds.max_attempts
    assert bounded_client("dynamodb", 4.0) is client  # one client per bounds, reused


# -- the invocation's deadline ----------------------------------------------------------------------------


@pytest.mark.parametrize("remaining", [0.0, 0.2, 0.8, 1.5, 3.0, 5.5, 6.0])
def test_the_deadline_never_outlasts_the_invocation(remaining: float) -> None:
    cut = invocation_settings(Settings(deadline_seconds=240), lambda_context(remaining))

    assert cut.deadline_seconds < max(remaining, 0.01)
    assert (
        cut.deadline_seconds <= MIN_DEADLINE_SECONDS or cut.deadline_seconds <= remaining - LAMBDA_SAFETY_MARGIN_SECONDS
    )


def test_with_less_than_a_second_left_the_invocation_answers_before_its_end(
    new_app: AppFactory, emu: CdfEmulator
) -> None:
    app = new_app()
    app.handle({"executionId": emu.seed_execution("wf", "1", "FAILED")["id"]}, lambda_context())  # the client is built
    failed = emu.seed_execution("wf", "1", "FAILED")
    emu.add_fault(Fault(method="GET", path_regex=rf"/workflows/executions/{failed['id']}$", latency=3.0))  # CDF is slow
    remaining = 0.8

    _, error, elapsed = within(5, lambda: app.handle({"executionId": failed["id"]}, lambda_context(remaining)))

    assert isinstance(error, TransientFailuresError)
    assert elapsed < remaining
