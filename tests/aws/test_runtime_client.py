"""``handler.lambda_handler`` run by the real AWS Lambda runtime interface client, as AWS runs it.

A small Lambda Runtime API (the protocol AWS's runtime serves to the function process) runs on
loopback and hands sample events to ``python -m awslambdaric handler.lambda_handler``, started from
the repository root like a deployment package; the test reads what the runtime client posts back and
what reached the CDF emulator. Several events go to the same process: a warm container.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from emulator import CdfEmulator
from tests.aws.samples import FUNCTION_ARN, http_event, sns_event, sqs_event
from tests.aws.senders import new_webhook_secret, signed
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET

pytestmark = pytest.mark.process  # each test starts an interpreter or forks a cold container
ROOT = Path(__file__).resolve().parents[2]
API = "/2018-06-01/runtime"
SECRET = new_webhook_secret()
TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
WAIT_SECONDS = 120  # a safety net for a hung process, not a measurement


@dataclass
class Answer:
    """What the runtime client posted back for one invocation."""

    kind: str  # "response" or "error"
    body: dict[str, Any]
    error_type: str | None


class LocalRuntimeApi:
    """The Lambda Runtime API (next, response, error, init error) on 127.0.0.1, in a thread."""

    def __init__(self) -> None:
        self._events: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self.answers: dict[str, Answer] = {}
        self.init_error: dict[str, Any] | None = None
        self._answered = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def invoke(self, event: dict[str, Any]) -> str:
        request_id = str(uuid.uuid4())
        self._events.put((request_id, event))
        return request_id

    def wait_for(self, request_ids: list[str], process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        with self._answered:
            while not all(r in self.answers for r in request_ids) and self.init_error is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    break
                self._answered.wait(timeout=0.5)

    def close(self) -> None:
        self._events.put(None)  # releases a runtime client waiting for its next event
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != f"{API}/invocation/next":
                    return self._reply(404, b"{}")
                item = api._events.get()
                if item is None:
                    return self._reply(500, b'{"errorMessage": "shutting down"}')
                request_id, event = item
                headers = {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(int((time.time() + 60) * 1000)),
                    "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                    "Lambda-Runtime-Trace-Id": TRACE_ID,
                    "Content-Type": "application/json",
                }
                self._reply(200, json.dumps(event).encode(), headers)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                parts = self.path.removeprefix(f"{API}/").split("/")
                with api._answered:
                    if parts == ["init", "error"]:
                        api.init_error = body
                    elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
                        api.answers[parts[1]] = Answer(parts[2], body, error_type)
                    else:
                        return self._reply(404, b"{}")
                    api._answered.notify_all()
                self._reply(202, b'{"status": "OK"}')

            def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@pytest.fixture
def runtime_api() -> Iterator[LocalRuntimeApi]:
    api = LocalRuntimeApi()
    yield api
    api.close()


def function_environment(emu: CdfEmulator, runtime_api: LocalRuntimeApi) -> dict[str, str]:
    """What Lambda would set, plus the function's configuration pointing at the emulator."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "CDF_", "IDP_", "RETRY_", "WEBHOOK_", "SNS_", "IDEMPOTENCY_"))
        and name != "POWERTOOLS_LOG_DEDUPLICATION_DISABLED"  # tests/conftest.py sets it; Lambda does not
    }
    return inherited | {
        "AWS_LAMBDA_LOG_FORMAT": "JSON",  # LoggingConfig: LogFormat: JSON (infra/aws/template.yaml)
        "AWS_LAMBDA_RUNTIME_API": runtime_api.address,
        "AWS_LAMBDA_FUNCTION_NAME": "workflow-retry",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "LAMBDA_TASK_ROOT": str(ROOT),
        "CDF_PROJECT": emu.project,
        "CDF_URL": emu.base_url,
        "IDP_CLIENT_ID": FUNCTION_CLIENT_ID,
        "IDP_TOKEN_URL": emu.token_url,
        "IDP_CLIENT_SECRET": FUNCTION_CLIENT_SECRET,
        "WEBHOOK_SECRET": SECRET,
        "RETRY_SDK_MAX_BACKOFF_SECONDS": "0",
        "RETRY_REQUEST_TIMEOUT_SECONDS": "5",
    }


def test_the_lambda_runtime_client_runs_lambda_handler_as_aws_would(
    emu: CdfEmulator, runtime_api: LocalRuntimeApi
) -> None:
    from_sns, from_sqs, from_url = (emu.seed_execution("wf", "1", "FAILED") for _ in range(3))
    sqs = sqs_event({"executionId": from_sqs["id"]}, "not a payload")
    url = http_event("function-url", *signed({"executionId": from_url["id"]}, SECRET), base64_body=True)
    invocations = [
        runtime_api.invoke(sns_event({"executionId": from_sns["id"]})),
        runtime_api.invoke(sqs),
        runtime_api.invoke(url),
        runtime_api.invoke({"Records": [{"eventSource": "aws:s3"}]}),
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", "handler.lambda_handler"],
        cwd=ROOT,
        env=function_environment(emu, runtime_api),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        runtime_api.wait_for(invocations, process)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode(errors="replace")

    assert runtime_api.init_error is None, output
    sns_answer, sqs_answer, url_answer, unknown_answer = (runtime_api.answers.get(r) for r in invocations)
    assert sns_answer is not None, output
    assert sns_answer.kind == "response"
    assert [(r["executionId"], r["outcome"]) for r in sns_answer.body["results"]] == [(from_sns["id"], "retried")]
    assert sqs_answer is not None
    assert sqs_answer.body == {"batchItemFailures": []}  # the unreadable record is reported, not retried
    assert url_answer is not None
    assert url_answer.body["statusCode"] == 200
    assert json.loads(url_answer.body["body"])["counts"]["retried"] == 1
    assert unknown_answer is not None
    assert unknown_answer.kind == "error"
    assert unknown_answer.body["errorType"] == "UnsupportedEventError"
    assert "aws:s3" in unknown_answer.body["errorMessage"]

    for execution in (from_sns, from_sqs, from_url):
        assert emu.retry_count(execution["id"]) == 1
    # One container: one CogniteClient, one token, for all four invocations.
    assert len(emu.requests_matching("POST", r"/oauth2/token$")) == 1
    assert FUNCTION_CLIENT_SECRET not in output
    assert SECRET not in output
    # The per-ID lines reach the function's log once each (the runtime's own JSON handler does not
    # print them again), as Powertools' JSON with the invocation's request ID.
    for execution, request_id in zip((from_sns, from_sqs, from_url), invocations, strict=False):
        lines = [line for line in output.splitlines() if f"execution {execution['id']}: retried" in line]
        assert len(lines) == 1, lines
        line = json.loads(lines[0])
        assert (line["event"], line["outcome"], line["function_request_id"]) == ("execution", "retried", request_id)
