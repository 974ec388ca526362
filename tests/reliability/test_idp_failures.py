"""When the identity provider fails: every ID gets a ``failed`` result within the call's deadline.

The client is the one the Lambda and the command line build (``connection.build_client``, real
``OAuthClientCredentials`` over real HTTP). The identity provider is either the emulator's
``/oauth2/token`` with injected faults (429, 5xx, a refused client secret), a closed port, a name
that does not resolve, or a hostile server in a thread (:class:`HostileIdp`: it hangs, answers 200
without a token, or echoes the request, client secret included, in its error page).

For each failure and entrypoint: one ``failed`` result per ID, ``retryable`` where waiting can help;
the platform delivers again what may pass (SQS: a batch item failure; HTTP: 503; a direct invoke:
``TransientFailuresError``); nothing reached CDF; the call ended inside its deadline; and no secret
(the client secret the hostile server echoes) shows in a result, an answer or a log record.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cognite.client import ClientConfig, CogniteClient
from cognite.client.credentials import Token

import handler
from emulator import CdfEmulator, Fault
from tests.aws import senders
from tests.aws.samples import http_event, lambda_context, sqs_event
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from tests.reliability.conftest import WEBHOOK_SECRET, Harness, recording, results_from_log
from tests.reliability.secrets import known_secrets
from tests.support.cli import run_in_process
from tests.support.leaks import find_leaks
from workflow_retry.connection import build_client, connection_settings_from_environment
from workflow_retry.errors import TransientFailuresError
from workflow_retry.idp import fetch_token_ahead

pytestmark = pytest.mark.reliability

DEADLINE = 3.0
"""RETRY_DEADLINE_SECONDS of these tests (the figure the measurements in the docs use)."""
SLACK = 1.5
"""Allowed beyond the deadline for answering on a loaded 2-core machine (a hanging fetch costs 5 s or more)."""
ROOT = Path(__file__).resolve().parents[2]


# -- a hostile identity provider ------------------------------------------------------------------


class HostileIdp:
    """An OAuth token endpoint on loopback that misbehaves the way ``mode`` says.

    - ``hang``: reads the request, then never answers (until the server stops);
    - ``empty``: 200 with ``{}`` (no access token);
    - ``huge``: 200 with a JSON body of 64 MiB (a token among padding), sent as fast as it is read;
    - ``echo-<status>``: that status with an HTML page that quotes the request body (client secret included);
    - ``echo-json-<status>``: that status with an OAuth error whose description quotes the request body.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self._stop = threading.Event()
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                idp.requests += 1
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                if idp.mode == "hang":
                    idp._stop.wait(60)
                    return
                if idp.mode == "empty":
                    self._answer(200, "application/json", "{}")
                    return
                if idp.mode == "huge":
                    self._huge()
                    return
                status = int(idp.mode.rsplit("-", 1)[1])
                if idp.mode.startswith("echo-json-"):
                    page = json.dumps({"error": f"invalid_request {body}", "error_description": f"you sent {body}"})
                    self._answer(status, "application/json", page)
                else:
                    self._answer(status, "text/html", f"<html><body>Bad request: {body}</body></html>")

            def _huge(self) -> None:
                head, tail = b'{"access_token": "t", "expires_in": 3600, "padding": "', b'"}'
                padding = 64 * 1024 * 1024
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(head) + padding + len(tail)))
                self.end_headers()
                try:
                    self.wfile.write(head)
                    chunk = b"x" * 65536
                    for _ in range(padding // len(chunk)):
                        self.wfile.write(chunk)
                    self.wfile.write(tail)
                except OSError:
                    pass  # the client stopped reading

            def _answer(self, status: int, content_type: str, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/oauth2/token"

    def __enter__(self) -> HostileIdp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/oauth2/token"


# -- the failures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdpFailure:
    id: str
    retryable: bool
    arrange: Callable[[CdfEmulator], Any]
    """Makes the identity provider fail; returns the token URL to use, or a context manager giving it."""


def token_fault(status: int) -> Callable[[CdfEmulator], str]:
    def arrange(emu: CdfEmulator) -> str:
        emu.add_fault(Fault(method="POST", path_regex=r"^/oauth2/token$", statuses=[status] * 1000))
        return emu.token_url

    return arrange


def hostile(mode: str) -> Callable[[CdfEmulator], HostileIdp]:
    return lambda emu: HostileIdp(mode)


FAILURES = [
    IdpFailure("429", True, token_fault(429)),
    IdpFailure("500", True, token_fault(500)),
    IdpFailure("502", True, token_fault(502)),
    IdpFailure("503", True, token_fault(503)),
    IdpFailure("400", False, token_fault(400)),
    IdpFailure("401-wrong-secret", False, lambda emu: emu.token_url),  # the client secret is wrong (see below)
    IdpFailure("200-no-token", True, hostile("empty")),
    IdpFailure("200-huge", True, hostile("huge")),
    IdpFailure("refused", True, lambda emu: closed_port_url()),
    IdpFailure("dns", True, lambda emu: "http://idp.invalid/oauth2/token"),
    IdpFailure("hang", True, hostile("hang")),
    IdpFailure("echo-400", False, hostile("echo-400")),
    IdpFailure("echo-500", True, hostile("echo-500")),
    IdpFailure("echo-json-401", False, hostile("echo-json-401")),
    IdpFailure("echo-json-429", True, hostile("echo-json-429")),
]


@contextmanager
def failing_idp(failure: IdpFailure, harness: Harness) -> Iterator[str]:
    """The token URL of a failing identity provider; the environment of the Lambda and the CLI points at it."""
    arranged = failure.arrange(harness.emu)
    if failure.id == "401-wrong-secret":
        harness.use_client(FUNCTION_CLIENT_ID, "not-" + FUNCTION_CLIENT_SECRET)
    if isinstance(arranged, HostileIdp):
        with arranged as idp:
            harness.setenv({"IDP_TOKEN_URL": idp.token_url})
            yield idp.token_url
    else:
        harness.setenv({"IDP_TOKEN_URL": arranged})
        yield arranged


@pytest.fixture
def idp_harness(harness: Harness) -> Harness:
    harness.setenv({"RETRY_DEADLINE_SECONDS": f"{DEADLINE:g}"})
    return harness


def seed(emu: CdfEmulator, count: int) -> list[str]:
    now = int(time.time() * 1000)
    return [
        str(emu.seed_execution("wf", "1", "FAILED", created_time=now - 120_000, end_time=now - 60_000)["id"])
        for _ in range(count)
    ]


def built_client(harness: Harness) -> CogniteClient:
    """The client the Lambda and the CLI build from the environment (IDP_TOKEN_URL and the client secret)."""
    settings = connection_settings_from_environment()
    return build_client(settings, harness.client_secret, timeout_seconds=1)


def assert_failed_for_the_idp(results: list[dict[str, Any]], ids: list[str], retryable: bool) -> None:
    assert [r["executionId"] for r in results] == ids
    for result in results:
        assert result["outcome"] == "failed", result
        assert result["error"]["retryable"] is retryable, result
        assert result["error"]["code"] is None, result
        assert result["error"]["identityProvider"] is True, result
        assert "identity provider" in result["reason"], result


def assert_no_secret(harness: Harness, texts: list[str]) -> None:
    assert find_leaks(texts, [*known_secrets(harness.emu), harness.client_secret]) == []


def assert_nothing_reached_cdf(emu: CdfEmulator) -> None:
    assert [r.path for r in emu.requests if r.path != "/oauth2/token"] == []


# -- every entrypoint, every failure ----------------------------------------------------------------


@pytest.mark.parametrize("failure", FAILURES, ids=lambda f: f.id)
def test_handle_reports_every_id_failed_within_the_deadline(idp_harness: Harness, failure: IdpFailure) -> None:
    ids = seed(idp_harness.emu, 3)
    with failing_idp(failure, idp_harness), recording() as capture:
        client = built_client(idp_harness)
        started = time.monotonic()
        answer = handler.handle({"executionIds": ids}, client)
        elapsed = time.monotonic() - started

    print(f"\nIdP {failure.id} via handle: {elapsed:.2f} s")  # the figures of docs (pytest -s)
    assert elapsed < DEADLINE + SLACK, f"took {elapsed:.1f} s"
    assert_failed_for_the_idp(answer["results"], ids, failure.retryable)
    assert_nothing_reached_cdf(idp_harness.emu)
    assert_no_secret(idp_harness, [*capture.texts, json.dumps(answer)])


@pytest.mark.parametrize("failure", FAILURES, ids=lambda f: f.id)
def test_a_direct_invoke_raises_transient_failures_or_reports_a_refusal(
    idp_harness: Harness, failure: IdpFailure
) -> None:
    ids = seed(idp_harness.emu, 3)
    with failing_idp(failure, idp_harness), recording() as capture:
        started = time.monotonic()
        try:
            answer: Any = handler.lambda_handler({"executionIds": ids}, lambda_context(60))
        except TransientFailuresError as exc:
            answer = exc
        elapsed = time.monotonic() - started

    print(f"\nIdP {failure.id} via direct: {elapsed:.2f} s")  # the figures of docs (pytest -s)
    assert elapsed < DEADLINE + SLACK, f"took {elapsed:.1f} s"
    if failure.retryable:
        assert isinstance(answer, TransientFailuresError), answer
        report = answer.to_dict()
        texts = [str(answer), json.dumps(report)]
    else:
        report = answer
        texts = [json.dumps(report)]
    assert_failed_for_the_idp(report["results"], ids, failure.retryable)
    assert_nothing_reached_cdf(idp_harness.emu)
    assert_no_secret(idp_harness, [*capture.texts, *texts])


@pytest.mark.parametrize("failure", FAILURES, ids=lambda f: f.id)
def test_sqs_delivers_again_every_record_that_may_pass(idp_harness: Harness, failure: IdpFailure) -> None:
    ids = seed(idp_harness.emu, 3)
    event = sqs_event(*({"executionId": i} for i in ids))
    with failing_idp(failure, idp_harness), recording() as capture:
        started = time.monotonic()
        answer = handler.lambda_handler(event, lambda_context(60))
        elapsed = time.monotonic() - started

    print(f"\nIdP {failure.id} via sqs: {elapsed:.2f} s")  # the figures of docs (pytest -s)
    assert elapsed < DEADLINE + SLACK, f"took {elapsed:.1f} s"
    records = [r["messageId"] for r in event["Records"]] if failure.retryable else []
    assert sorted(i["itemIdentifier"] for i in answer["batchItemFailures"]) == sorted(records)
    seen = results_from_log(capture.records)
    assert sorted(seen) == sorted(ids)
    assert all((s.outcome, s.retryable) == ("failed", failure.retryable) for s in seen.values()), seen
    assert_nothing_reached_cdf(idp_harness.emu)
    assert_no_secret(idp_harness, [*capture.texts, json.dumps(answer)])


@pytest.mark.parametrize("failure", FAILURES, ids=lambda f: f.id)
def test_http_answers_503_when_it_may_pass(idp_harness: Harness, failure: IdpFailure) -> None:
    ids = seed(idp_harness.emu, 3)
    body, headers = senders.signed({"executionIds": ids}, WEBHOOK_SECRET)
    with failing_idp(failure, idp_harness), recording() as capture:
        started = time.monotonic()
        answer = handler.lambda_handler(http_event("function-url", body, headers), lambda_context(60))
        elapsed = time.monotonic() - started

    print(f"\nIdP {failure.id} via http: {elapsed:.2f} s")  # the figures of docs (pytest -s)
    assert elapsed < DEADLINE + SLACK, f"took {elapsed:.1f} s"
    assert answer["statusCode"] == (503 if failure.retryable else 200)
    if failure.retryable:
        assert answer["headers"]["retry-after"] == "30"
    assert_failed_for_the_idp(json.loads(answer["body"])["results"], ids, failure.retryable)
    assert_nothing_reached_cdf(idp_harness.emu)
    assert_no_secret(idp_harness, [*capture.texts, json.dumps(answer)])


@pytest.mark.parametrize("failure", FAILURES, ids=lambda f: f.id)
def test_the_command_line_prints_one_line_and_exits_3(idp_harness: Harness, failure: IdpFailure) -> None:
    ids = seed(idp_harness.emu, 2)
    with failing_idp(failure, idp_harness) as token_url:
        env: dict[str, str | None] = {
            "CDF_URL": idp_harness.emu.base_url,
            "CDF_PROJECT": idp_harness.emu.project,
            "IDP_CLIENT_ID": idp_harness.client_id,
            "IDP_CLIENT_SECRET": idp_harness.client_secret,
            "IDP_TOKEN_URL": token_url,
            "RETRY_DEADLINE_SECONDS": f"{DEADLINE:g}",
            "RETRY_REQUEST_TIMEOUT_SECONDS": "1",
        }
        done = run_in_process(["retry", *ids], env)  # its main, stdout, stderr and logging (tests/support/cli.py)

    # The deadline is asserted by the tests above that time a call; this one checks what the command line says.
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: cannot authenticate: the identity provider"), lines[0]
    assert ("try again later" in lines[0]) is failure.retryable, lines[0]
    assert_nothing_reached_cdf(idp_harness.emu)
    assert_no_secret(idp_harness, [done.stdout, done.stderr])


# -- a hanging identity provider: the deadline holds, whatever the batch -----------------------------


@pytest.mark.parametrize("count", [1, 20])
def test_a_hanging_idp_ends_a_direct_invoke_within_the_deadline(idp_harness: Harness, count: int) -> None:
    ids = seed(idp_harness.emu, count)
    with HostileIdp("hang") as idp:
        idp_harness.setenv({"IDP_TOKEN_URL": idp.token_url})
        started = time.monotonic()
        with pytest.raises(TransientFailuresError) as raised:
            handler.lambda_handler({"executionIds": ids}, lambda_context(60))
        elapsed = time.monotonic() - started

    print(f"hanging IdP, direct invoke of {count} ID(s): {elapsed:.2f} s")
    assert elapsed < DEADLINE + SLACK, f"took {elapsed:.1f} s"
    assert_failed_for_the_idp(raised.value.to_dict()["results"], ids, retryable=True)


def test_a_hanging_idp_ends_an_sqs_batch_of_10_within_the_deadline(idp_harness: Harness) -> None:
    ids = seed(idp_harness.emu, 10)
    event = sqs_event(*({"executionId": i} for i in ids))
    with HostileIdp("hang") as idp:
        idp_harness.setenv({"IDP_TOKEN_URL": idp.token_url})
        started = time.monotonic()
        answer = handler.lambda_handler(event, lambda_context(60))
        elapsed = time.monotonic() - started

    print(f"hanging IdP, SQS batch of 10 records: {elapsed:.2f} s")
    assert elapsed < DEADLINE + SLACK, f"took {elapsed:.1f} s"
    assert len(answer["batchItemFailures"]) == 10


def test_the_token_is_fetched_once_and_reused_by_the_next_calls(idp_harness: Harness) -> None:
    ids = seed(idp_harness.emu, 2)
    client = built_client(idp_harness)

    first = handler.handle({"executionIds": ids[:1]}, client)
    second = handler.handle({"executionIds": ids[1:]}, client)

    assert [r["outcome"] for r in first["results"] + second["results"]] == ["retried", "retried"]
    assert len(idp_harness.emu.requests_matching("POST", r"^/oauth2/token$")) == 1


def test_a_token_that_would_expire_during_the_call_is_fetched_again_ahead(idp_harness: Harness) -> None:
    """The emulator's tokens last 3,600 s: a call of 60 s reuses one, a call that would outlive it gets a new one."""
    client = built_client(idp_harness)

    def token_requests() -> int:
        return len(idp_harness.emu.requests_matching("POST", r"^/oauth2/token$"))

    fetch_token_ahead(client, valid_for=60, timeout=DEADLINE)
    fetch_token_ahead(client, valid_for=60, timeout=DEADLINE)
    assert token_requests() == 1
    fetch_token_ahead(client, valid_for=3600, timeout=DEADLINE)
    assert token_requests() == 2


def test_the_idp_recovers_and_the_next_call_retries(idp_harness: Harness) -> None:
    ids = seed(idp_harness.emu, 1)
    idp_harness.emu.add_fault(Fault(method="POST", path_regex=r"^/oauth2/token$", statuses=[503]))
    client = built_client(idp_harness)

    first = handler.handle({"executionIds": ids}, client)
    second = handler.handle({"executionIds": ids}, client)

    assert first["results"][0]["error"]["retryable"] is True
    assert second["results"][0]["outcome"] == "retried"


def test_a_function_runtime_token_client_keeps_working(idp_harness: Harness) -> None:
    """A Cognite Function's runtime client holds a bearer token from the call's session: no identity
    provider is asked (the retry sessions use the client credentials of the function's secrets)."""
    emu = idp_harness.emu
    ids = seed(emu, 2)
    token = emu.issue_session_token(FUNCTION_CLIENT_ID)
    config = ClientConfig(client_name="runtime", project=emu.project, base_url=emu.base_url, credentials=Token(token))
    client = CogniteClient(config)
    secrets = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}

    answer = handler.handle({"executionIds": ids}, client, secrets)

    assert [r["outcome"] for r in answer["results"]] == ["retried", "retried"]
    assert emu.requests_matching("POST", r"^/oauth2/token$") == []


def test_an_unknown_id_is_still_invalid_when_the_idp_fails(idp_harness: Harness) -> None:
    ids = seed(idp_harness.emu, 1)
    with HostileIdp("echo-500") as idp:
        idp_harness.setenv({"IDP_TOKEN_URL": idp.token_url})
        answer = handler.handle({"executionIds": [*ids, "not-an-id"]}, built_client(idp_harness))

    assert [r["outcome"] for r in answer["results"]] == ["failed", "invalid"]


def test_a_sweep_reports_the_idp_as_its_listing_error(idp_harness: Harness) -> None:
    seed(idp_harness.emu, 1)
    with HostileIdp("hang") as idp:
        idp_harness.setenv({"IDP_TOKEN_URL": idp.token_url})
        started = time.monotonic()
        answer = handler.handle({"sweep": {}}, built_client(idp_harness))
        elapsed = time.monotonic() - started

    assert elapsed < DEADLINE + SLACK
    sweep = answer["sweep"]
    assert sweep["listingError"]["retryable"] is True
    assert sweep["listingError"]["identityProvider"] is True
    assert "identity provider" in sweep["stoppedEarly"]
    assert_nothing_reached_cdf(idp_harness.emu)
