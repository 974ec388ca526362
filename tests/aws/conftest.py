"""AWS for the Lambda tests: moto's server on 127.0.0.1, reached by real boto3 through AWS_ENDPOINT_URL."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from emulator import CdfEmulator
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from tests.support.moto import moto_server
from workflow_retry.aws.config import aws_settings_from_environment
from workflow_retry.aws.entrypoint import LambdaApp
from workflow_retry.connection import connection_settings_from_environment


@pytest.fixture(scope="package")
def moto_endpoint() -> Iterator[str]:
    """moto in server mode on a free loopback port; boto3 clients made in these tests go there."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    with moto_server() as endpoint:
        yield endpoint


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def idempotency_table(moto_endpoint: str) -> str:
    """A fresh DynamoDB table shaped as docs/aws.md tells users to create it."""
    name = unique("idempotency")
    dynamodb: Any = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
    )
    return name


AWS_SETTING_NAMES = (
    "IDP_CLIENT_SECRET",
    "IDP_CLIENT_SECRET_REF",
    "WEBHOOK_SECRET",
    "WEBHOOK_SECRET_REF",
    "WEBHOOK_SIGNATURES",
    "FUNCTION_URL_AUTH_TYPE",
    "SNS_TOPIC_ARNS",
    "IDEMPOTENCY_TABLE",
    "IDEMPOTENCY_EXPIRY_SECONDS",
    "SECRETS_MAX_AGE_SECONDS",
)


@pytest.fixture
def lambda_env(emu: CdfEmulator, fast_env: None, monkeypatch: pytest.MonkeyPatch) -> CdfEmulator:
    """The Lambda's environment pointing at the emulator (client credentials of the test function)."""
    for name in AWS_SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDF_PROJECT", emu.project)
    monkeypatch.setenv("CDF_URL", emu.base_url)
    monkeypatch.setenv("IDP_CLIENT_ID", FUNCTION_CLIENT_ID)
    monkeypatch.setenv("IDP_TOKEN_URL", emu.token_url)
    monkeypatch.setenv("IDP_CLIENT_SECRET", FUNCTION_CLIENT_SECRET)
    # The attempt ledger's cap and cooldown are the policy's business (tests/test_policy*); here they
    # would only blur what the entrypoint does. Tests that need them set RETRY_LEDGER back.
    monkeypatch.setenv("RETRY_LEDGER", "none")
    return emu


AppFactory = Callable[..., LambdaApp]


@pytest.fixture
def new_app(lambda_env: CdfEmulator, monkeypatch: pytest.MonkeyPatch) -> AppFactory:
    """A fresh container: ``new_app({"WEBHOOK_SECRET": ...}, sns_verifier=...)`` sets the environment first."""

    def make(env: dict[str, str] | None = None, **kwargs: Any) -> LambdaApp:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        # What LambdaApp.from_environment does at a cold start, with test parts (e.g. sns_verifier) passed in.
        return LambdaApp(aws_settings_from_environment(), connection_settings_from_environment(), **kwargs)

    return make
