"""DynamoDB for the ledger tests: moto's server on 127.0.0.1, reached by real boto3."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.support.moto import moto_server


@pytest.fixture(scope="package")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def ledger_table(moto_endpoint: str) -> str:
    """A fresh ledger table, shaped as docs/policy-and-sweeps.md tells users to create it."""
    name = f"ledger-{uuid.uuid4().hex[:12]}"
    dynamodb: Any = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "executionId", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "executionId", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "purgeAt"})
    return name
