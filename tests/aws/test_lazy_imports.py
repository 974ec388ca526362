"""A cold start loads only what it needs: no boto3, Powertools idempotency or cryptography unless used.

Each test runs ``handler.lambda_handler`` in a fresh container (this test process has long imported
everything): forked after the container's init (tests/support/cold_start.py), or, for the import of
``handler`` itself, a new interpreter. Against the CDF emulator, each test asserts both what the caller
gets back and which of the heavy modules the container holds afterwards. Not a timing test:
docs/benchmarks.md has the times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from emulator import CdfEmulator
from tests.aws.conftest import unique
from tests.aws.samples import http_event, sqs_event
from tests.aws.senders import new_webhook_secret, signed
from tests.conftest import FUNCTION_CLIENT_SECRET
from tests.support.cold_start import run_in_container

pytestmark = pytest.mark.process  # each test starts an interpreter or forks a cold container
ROOT = Path(__file__).resolve().parents[2]
LAMBDA_ONLY = ("boto3", "botocore", "aws_lambda_powertools", "workflow_retry.aws")
HEAVY = (
    "boto3",
    "aws_lambda_powertools.utilities.idempotency",
    "workflow_retry.aws.idempotency_dynamodb",
    "aws_lambda_powertools.utilities.parser",
    "cryptography",
    "workflow_retry.aws.webhooks",
)

IMPORT_PROBE = f"""
import json, sys
import handler
assert callable(handler.handle) and callable(handler.lambda_handler)
loaded = sorted(m for m in sys.modules if m.startswith({LAMBDA_ONLY!r}))
print(json.dumps(loaded))
"""

# A cold container after its init (the runtime imported handler): lambda_handler once per event (stdin).
INVOKE_PROBE = f"""
import json, sys, time
from awslambdaric.lambda_context import LambdaContext
import handler

answers = []
for event in json.load(sys.stdin):
    deadline = int((time.time() + 60) * 1000)
    context = LambdaContext("request-1", None, None, deadline, "arn:aws:lambda:eu-west-1:123456789012:function:f")
    answers.append(handler.lambda_handler(event, context))
print(json.dumps({{"answers": answers, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def cold_container(*events: dict[str, Any], env: dict[str, str] | None = None) -> tuple[list[Any], set[str]]:
    """What a fresh container answers to ``events``, and which of HEAVY it loaded doing so."""
    done = run_in_container(INVOKE_PROBE, env={**os.environ, **(env or {})}, input=json.dumps(events), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert FUNCTION_CLIENT_SECRET not in done.stdout + done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["answers"], set(out["loaded"])


def outcomes(result: dict[str, Any]) -> dict[str, str]:
    return {r["executionId"]: r["outcome"] for r in result["results"]}


def test_importing_handler_loads_nothing_of_the_lambda_path() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE], cwd=ROOT, capture_output=True, text=True, check=True)

    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_signature_checks_import_requests_only_to_fetch_an_sns_certificate() -> None:
    probe = (
        "import sys, workflow_retry.aws.webhooks as webhooks\n"
        "before = 'requests' in sys.modules\n"
        "webhooks.RequestsHttpsGetter()\n"
        "print(before, 'requests' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)

    assert done.stdout.split() == ["False", "True"]


def test_a_direct_invoke_retries_without_boto3_powertools_parser_or_cryptography(lambda_env: CdfEmulator) -> None:
    emu = lambda_env
    failed = emu.seed_execution("wf", "1", "FAILED")

    [result], loaded = cold_container({"executionId": failed["id"]})

    assert outcomes(result) == {failed["id"]: "retried"}
    execution = emu.get_execution(failed["id"])
    assert execution is not None
    assert execution["status"] == "RUNNING"
    assert loaded == set()


def test_an_sqs_batch_without_idempotency_table_needs_only_powertools_parser(lambda_env: CdfEmulator) -> None:
    emu = lambda_env
    failed = emu.seed_execution("wf", "1", "FAILED")
    event = sqs_event({"executionId": failed["id"]})

    answers, loaded = cold_container(event, event)  # delivered twice: the container's memory knows it

    assert answers == [{"batchItemFailures": []}, {"batchItemFailures": []}]
    assert len(emu.requests_matching("POST", rf"/workflows/executions/{failed['id']}/retry$")) == 1
    assert loaded == {"aws_lambda_powertools.utilities.parser"}


def test_a_signed_webhook_loads_the_signature_checks_but_not_cryptography(lambda_env: CdfEmulator) -> None:
    emu = lambda_env
    failed = emu.seed_execution("wf", "1", "FAILED")
    secret = new_webhook_secret()
    body, headers = signed({"executionId": failed["id"]}, secret)

    [answer], loaded = cold_container(http_event("function-url", body, headers), env={"WEBHOOK_SECRET": secret})

    assert answer["statusCode"] == 200
    assert outcomes(json.loads(answer["body"])) == {failed["id"]: "retried"}
    assert loaded == {"workflow_retry.aws.webhooks"}  # Standard Webhooks are HMAC: cryptography is for SNS


def test_an_idempotency_table_loads_powertools_and_boto3_and_they_work(
    lambda_env: CdfEmulator, idempotency_table: str
) -> None:
    emu = lambda_env
    failed = emu.seed_execution("wf", "1", "FAILED")
    event = sqs_event({"executionId": failed["id"]})

    answers, loaded = cold_container(event, event, env={"IDEMPOTENCY_TABLE": idempotency_table})

    assert answers == [{"batchItemFailures": []}, {"batchItemFailures": []}]
    assert len(emu.requests_matching("POST", rf"/workflows/executions/{failed['id']}/retry$")) == 1
    dynamodb: Any = boto3.client("dynamodb")
    [item] = dynamodb.scan(TableName=idempotency_table)["Items"]
    assert item["status"]["S"] == "COMPLETED"
    assert {
        "boto3",
        "aws_lambda_powertools.utilities.idempotency",
        "workflow_retry.aws.idempotency_dynamodb",
    } <= loaded
    assert "cryptography" not in loaded


def test_a_client_secret_reference_loads_boto3_to_read_it(
    lambda_env: CdfEmulator, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = lambda_env
    name = unique("cdf/client-secret")
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=FUNCTION_CLIENT_SECRET)
    monkeypatch.delenv("IDP_CLIENT_SECRET")
    failed = emu.seed_execution("wf", "1", "FAILED")

    [result], loaded = cold_container({"executionId": failed["id"]}, env={"IDP_CLIENT_SECRET_REF": name})

    assert outcomes(result) == {failed["id"]: "retried"}
    assert loaded == {"boto3"}
