"""Secrets Manager and SSM through real boto3 against moto's server, with the per-container cache."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from tests.aws.conftest import unique
from tests.conftest import register_secret
from tests.support.moto import REGION
from workflow_retry.aws.secrets import AwsSecretReader, SecretReference, resolve_secret
from workflow_retry.errors import ConfigurationError

pytestmark = pytest.mark.usefixtures("moto_endpoint")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def secretsmanager() -> Any:
    return boto3.client("secretsmanager")


def ssm() -> Any:
    return boto3.client("ssm")


def new_value() -> str:
    value = unique("s3cr3t-value")
    register_secret(value)
    return value


def test_a_secrets_manager_secret_is_read_by_name_and_by_arn() -> None:
    name, value = unique("cdf/client-secret"), new_value()
    arn = secretsmanager().create_secret(Name=name, SecretString=value)["ARN"]
    reader = AwsSecretReader(300)

    assert reader.read(name) == value
    assert reader.read(arn) == value


def test_one_key_of_a_json_secret_is_read_with_a_hash_suffix() -> None:
    name, value = unique("cdf/credentials"), new_value()
    secretsmanager().create_secret(Name=name, SecretString=json.dumps({"clientId": "abc", "clientSecret": value}))

    assert AwsSecretReader(300).read(f"{name}#clientSecret") == value


def test_a_missing_json_key_is_a_configuration_error_without_the_secret() -> None:
    name, value = unique("cdf/credentials"), new_value()
    secretsmanager().create_secret(Name=name, SecretString=json.dumps({"other": value}))

    with pytest.raises(ConfigurationError, match="not a JSON object with a non-empty string at that key") as raised:
        AwsSecretReader(300).read(f"{name}#clientSecret")
    assert value not in str(raised.value)


def test_an_ssm_secure_string_is_read_decrypted_by_name_and_by_arn() -> None:
    name, value = f"/{unique('workflow-retry')}/client-secret", new_value()
    ssm().put_parameter(Name=name, Value=value, Type="SecureString")
    arn = ssm().get_parameter(Name=name)["Parameter"]["ARN"]
    reader = AwsSecretReader(300)

    assert reader.read(f"ssm:{name}") == value
    assert reader.read(arn) == value


def test_a_value_is_fetched_once_per_period_then_again() -> None:
    name, first, second = unique("webhook"), new_value(), new_value()
    secretsmanager().create_secret(Name=name, SecretString=first)
    clock = Clock()
    reader = AwsSecretReader(300, clock=clock)

    assert reader.read(name) == first
    secretsmanager().put_secret_value(SecretId=name, SecretString=second)
    clock.now += 299
    assert reader.read(name) == first  # cached: no call to Secrets Manager
    clock.now += 2
    assert reader.read(name) == second  # the rotated value reaches the warm container


def test_an_unknown_secret_is_a_configuration_error_naming_the_reference_and_the_aws_code() -> None:
    with pytest.raises(ConfigurationError, match=r"Secrets Manager secret 'no/such/secret'.*ResourceNotFoundException"):
        AwsSecretReader(300).read("no/such/secret")
    with pytest.raises(ConfigurationError, match=r"SSM parameter '/no/such/parameter'.*ParameterNotFound"):
        AwsSecretReader(300).read("ssm:/no/such/parameter")


@pytest.mark.parametrize(
    ("text", "service", "name", "region", "key"),
    [
        ("ssm:/a/b", "ssm", "/a/b", None, None),
        (
            "arn:aws:ssm:us-east-2:123456789012:parameter/a/b",
            "ssm",
            "arn:aws:ssm:us-east-2:123456789012:parameter/a/b",
            "us-east-2",
            None,
        ),
        ("my/secret", "secretsmanager", "my/secret", None, None),
        ("my/secret#clientSecret", "secretsmanager", "my/secret", None, "clientSecret"),
        (
            "arn:aws:secretsmanager:eu-north-1:123456789012:secret:cdf-AbCdEf",
            "secretsmanager",
            "arn:aws:secretsmanager:eu-north-1:123456789012:secret:cdf-AbCdEf",
            "eu-north-1",
            None,
        ),
    ],
)
def test_references_are_parsed(text: str, service: str, name: str, region: str | None, key: str | None) -> None:
    assert SecretReference.parse(text) == SecretReference(service, name, region, key)  # type: ignore[arg-type]


def test_an_arn_in_another_region_is_asked_in_that_region() -> None:
    other_region = "us-west-2" if REGION != "us-west-2" else "eu-west-1"
    name, value = unique("cross-region"), new_value()
    arn = boto3.client("secretsmanager", region_name=other_region).create_secret(Name=name, SecretString=value)["ARN"]

    assert AwsSecretReader(300).read(arn) == value


def test_a_value_set_directly_wins_over_no_reference_and_none_is_none() -> None:
    reader = AwsSecretReader(300)

    assert resolve_secret(SecretStr("direct"), "ignored/reference", reader) == "direct"
    assert resolve_secret(None, None, reader) is None
