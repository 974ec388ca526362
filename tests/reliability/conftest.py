"""Shared builders of the reliability suite: one environment, three entrypoints, what each one answered.

Every entrypoint is driven the way its platform drives it, through real HTTP to the CDF emulator:

- ``handle``: ``handler.handle(data, client, secrets)``, as the Cognite Functions runtime calls it;
- ``sqs``: ``handler.lambda_handler`` with an SQS batch, one record per ID (a fresh container);
- ``http``: ``handler.lambda_handler`` with a Function URL request signed with Standard Webhooks.

A :class:`Delivered` holds what the caller saw: one :class:`Seen` per ID (from the returned results;
on SQS, which returns only ``batchItemFailures``, from the per-ID log lines a user reads in
CloudWatch), what the platform delivers again, how long the call took, and every text it produced
(answer, exception, log records) for the secret scans.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator
from tests.aws import senders
from tests.aws.conftest import AWS_SETTING_NAMES
from tests.aws.conftest import idempotency_table as idempotency_table  # a fixture: the table docs/aws.md describes
from tests.aws.samples import http_event, lambda_context, sqs_event
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET, make_client, register_secret
from tests.ledger.conftest import ledger_table as ledger_table  # a fixture: see docs/policy-and-sweeps.md
from tests.support.leaks import CapturingHandler
from tests.support.moto import moto_server
from workflow_retry.aws import entrypoint as aws_entrypoint
from workflow_retry.errors import RetryToolError
from workflow_retry.settings import cached_settings

Entrypoint = Literal["handle", "sqs", "http"]
SecretStore = Callable[[str], str]
"""Stores a secret value somewhere the Lambda can read it; returns its reference (e.g. a Secrets Manager name)."""
ENTRYPOINTS: tuple[Entrypoint, ...] = ("handle", "sqs", "http")

DEADLINE_SECONDS = 2
"""``RETRY_DEADLINE_SECONDS`` of the suite: short, so that a call cut by it costs little."""
DEADLINE_SLACK_SECONDS = 2.0
"""Allowed beyond the deadline for answering and a loaded 2-core machine (a broken deadline costs far more)."""
REQUEST_TIMEOUT_SECONDS = 1

WEBHOOK_SECRET = senders.new_webhook_secret()
UUID_V4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"

FAST_ENV = {
    "RETRY_SDK_MAX_BACKOFF_SECONDS": "0",
    "RETRY_SDK_MAX_RETRIES": "3",
    "RETRY_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT_SECONDS),
    "RETRY_DEADLINE_SECONDS": str(DEADLINE_SECONDS),
}
"""The settings every call of the suite runs with (the ledger is the default: RAW)."""

_CLEARED = (
    *AWS_SETTING_NAMES,
    "RETRY_LEDGER",
    "RETRY_LEDGER_TABLE",
    "RETRY_CONCURRENCY",
    "RETRY_MAX_ATTEMPTS",
    "RETRY_COOLDOWN_SECONDS",
    "GIVE_UP_TOPIC_ARN",
)


@dataclass(frozen=True)
class Seen:
    """What the caller learnt about one ID."""

    outcome: str
    retryable: bool | None
    code: int | None = None
    """The error's HTTP status (None: no answer, or no error); not known on SQS (only logged in the reason)."""
    reason: str = ""

    @property
    def wants_redelivery(self) -> bool:
        return self.outcome == "deferred" or self.retryable is True


@dataclass
class Delivered:
    """One call of an entrypoint, as its caller saw it."""

    entrypoint: Entrypoint
    ids: list[str]
    results: dict[str, Seen]
    comes_back: list[str]
    """The IDs the platform will deliver again (SQS: the records in ``batchItemFailures``; HTTP: the whole
    request when the answer is 5xx; ``handle``: the IDs whose result says to try again)."""
    answer: Any
    elapsed: float
    texts: list[str] = field(default_factory=list)
    records: list[logging.LogRecord] = field(default_factory=list)
    http_status: int | None = None
    request: Any = None
    """What to send again for a redelivery (the SQS records, or the HTTP body and webhook-id)."""


class RecordingHandler(CapturingHandler):
    """Keeps the records too, not only their texts (SQS results are read from the per-ID log lines)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        with self._lock_texts:
            self.records.append(record)


@dataclass
class Harness:
    """One test's emulator, environment and entrypoints (see the module docstring)."""

    emu: CdfEmulator
    monkeypatch: pytest.MonkeyPatch
    # Not init fields: hypothesis prints a failing example's init fields, and this one is a secret.
    client_id: str = field(default=FUNCTION_CLIENT_ID, init=False)
    client_secret: str = field(default=FUNCTION_CLIENT_SECRET, init=False, repr=False)
    secret_store: SecretStore | None = field(default=None, init=False, repr=False)

    def setenv(self, env: dict[str, str]) -> None:
        for name, value in env.items():
            self.monkeypatch.setenv(name, value)
        cached_settings.cache_clear()

    def use_client(self, client_id: str, client_secret: str) -> None:
        """Credentials of the function (Cognite secrets, or the Lambda's IDP_* environment or secret store)."""
        self.client_id, self.client_secret = client_id, client_secret
        if self.secret_store is None:
            self.setenv({"IDP_CLIENT_ID": client_id, "IDP_CLIENT_SECRET": client_secret})
        else:
            self.setenv({"IDP_CLIENT_ID": client_id, "IDP_CLIENT_SECRET_REF": self.secret_store(client_secret)})

    def deliver(self, entrypoint: Entrypoint, ids: list[str]) -> Delivered:
        """A first delivery of ``ids`` through ``entrypoint``."""
        match entrypoint:
            case "handle":
                return self._handle(ids)
            case "sqs":
                return self._sqs(sqs_event(*({"executionId": i} for i in ids)), ids)
            case "http":
                return self._http(ids, webhook_id=f"msg_{uuid.uuid4().hex}")

    def redeliver(self, first: Delivered) -> Delivered | None:
        """What the platform delivers again after ``first`` (None when nothing comes back)."""
        if not first.comes_back:
            return None
        match first.entrypoint:
            case "handle":
                return self._handle(first.comes_back)
            case "sqs":
                # SQS delivers the very records named in batchItemFailures again (same messageId).
                back = {item["itemIdentifier"] for item in first.answer["batchItemFailures"]}
                again = [r for r in first.request["Records"] if r["messageId"] in back]
                return self._sqs({"Records": again}, first.comes_back)
            case "http":
                return self._http(first.ids, webhook_id=first.request)

    # -- the entrypoints -----------------------------------------------------------------------------

    def _handle(self, ids: list[str]) -> Delivered:
        client = self.cognite_client()
        secrets = {"client-id": self.client_id, "client-secret": self.client_secret}
        with recording() as capture:
            started = time.monotonic()
            try:
                answer: Any = handler.handle({"executionIds": ids}, client, secrets)
            except RetryToolError as exc:
                answer = exc
            elapsed = time.monotonic() - started
        if isinstance(answer, Exception):
            return Delivered("handle", ids, {}, [], answer, elapsed, [*capture.texts, f"{answer!r} {answer}"])
        results = {r["executionId"]: seen_of(r) for r in answer["results"]}
        back = [i for i, seen in results.items() if seen.wants_redelivery]
        texts = [*capture.texts, json.dumps(answer)]
        return Delivered("handle", ids, results, back, answer, elapsed, texts, capture.records)

    def _sqs(self, event: dict[str, Any], ids: list[str]) -> Delivered:
        self.new_container()
        with recording() as capture:
            started = time.monotonic()
            answer = handler.lambda_handler(event, lambda_context(60))
            elapsed = time.monotonic() - started
        by_record = {r["messageId"]: json.loads(r["body"])["executionId"] for r in event["Records"]}
        failed_records = [item["itemIdentifier"] for item in answer["batchItemFailures"]]
        return Delivered(
            "sqs",
            ids,
            results_from_log(capture.records),
            [by_record[r] for r in failed_records],
            answer,
            elapsed,
            [*capture.texts, json.dumps(answer)],
            capture.records,
            request=event,
        )

    def _http(self, ids: list[str], *, webhook_id: str) -> Delivered:
        self.new_container()
        body, headers = senders.signed({"executionIds": ids}, WEBHOOK_SECRET, webhook_id=webhook_id)
        with recording() as capture:
            started = time.monotonic()
            answer = handler.lambda_handler(http_event("function-url", body, headers), lambda_context(60))
            elapsed = time.monotonic() - started
        status = int(answer["statusCode"])
        content = json.loads(answer["body"])
        results = {r["executionId"]: seen_of(r) for r in content.get("results", [])}
        # A Standard Webhooks sender sends the whole request again, same webhook-id, on any 5xx.
        back = list(ids) if status >= 500 else []
        texts = [*capture.texts, answer["body"], json.dumps(answer["headers"])]
        return Delivered("http", ids, results, back, answer, elapsed, texts, capture.records, status, webhook_id)

    def cognite_client(self) -> CogniteClient:
        return make_client(self.emu, self.client_id, self.client_secret)

    def new_container(self) -> None:
        """The next Lambda invocation starts a fresh container (its own client, token and duplicate memory)."""
        self.monkeypatch.setattr(aws_entrypoint, "_app", None)


def seen_of(result: dict[str, Any]) -> Seen:
    error = result.get("error")
    return Seen(
        outcome=result["outcome"],
        retryable=error["retryable"] if error else None,
        code=error["code"] if error else None,
        reason=result["reason"],
    )


def result_lines(records: list[logging.LogRecord]) -> list[tuple[str, Seen]]:
    """The per-ID result lines of ``workflow_retry.service`` (one per ID and call), in order."""
    lines = []
    for record in records:
        execution_id = getattr(record, "execution_id", None)
        if record.name == "workflow_retry.service" and execution_id is not None:
            reason = record.args[2] if isinstance(record.args, tuple) and len(record.args) > 2 else ""
            seen = Seen(outcome=record.outcome, retryable=record.retryable, reason=str(reason))  # type: ignore[attr-defined]
            lines.append((str(execution_id), seen))
    return lines


def results_from_log(records: list[logging.LogRecord]) -> dict[str, Seen]:
    """The last result line of each ID."""
    return dict(result_lines(records))


@contextmanager
def recording() -> Iterator[RecordingHandler]:
    """Capture every log record (root, DEBUG) while the block runs."""
    capture = RecordingHandler()
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)


def make_harness(
    emu: CdfEmulator,
    monkeypatch: pytest.MonkeyPatch,
    secret_store: SecretStore | None = None,
    webhook_secret_store: SecretStore | None = None,
) -> Harness:
    """The suite's settings and the Lambda's environment on ``monkeypatch``; the next invocation a fresh container.

    With stores, the Lambda reads its client secret (``IDP_CLIENT_SECRET_REF``) and its webhook secret
    (``WEBHOOK_SECRET_REF``) from there instead of the environment.
    """
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    h = Harness(emu, monkeypatch)
    h.secret_store = secret_store
    h.setenv({**FAST_ENV, "CDF_PROJECT": emu.project, "CDF_URL": emu.base_url, "IDP_TOKEN_URL": emu.token_url})
    if webhook_secret_store is None:
        h.setenv({"WEBHOOK_SECRET": WEBHOOK_SECRET})
    else:
        h.setenv({"WEBHOOK_SECRET_REF": webhook_secret_store(WEBHOOK_SECRET)})
    h.use_client(FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET)
    h.new_container()
    return h


@pytest.fixture
def harness(emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """The emulator (emptied), the suite's settings, the Lambda's environment, and fresh containers."""
    yield make_harness(emu, monkeypatch)
    cached_settings.cache_clear()


@pytest.fixture(scope="package")
def moto_endpoint() -> Iterator[str]:
    """moto in server mode on a free loopback port (DynamoDB for the ledger and the idempotency table),
    one request at a time so that conditional writes are atomic under concurrent invocations."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with moto_server() as endpoint:
        yield endpoint


def new_secret_client(emu: CdfEmulator, name: str, capabilities: list[str]) -> tuple[str, str]:
    """A client (service principal) with only ``capabilities``; its secret is known to the secret scans."""
    secret = f"{name}-{uuid.uuid4().hex}"
    register_secret(secret)
    emu.add_client(name, secret, capabilities=capabilities)
    return name, secret
