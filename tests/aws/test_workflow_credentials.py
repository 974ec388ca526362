"""Per-workflow credentials on AWS: each set's secret read by reference (SSM, Secrets Manager) through moto."""

from __future__ import annotations

import json
import secrets
from typing import Any

import boto3
import pytest

from emulator import CdfEmulator
from tests.aws.conftest import AppFactory, unique
from tests.aws.samples import lambda_context
from tests.conftest import FUNCTION_CLIENT_ID, register_secret
from workflow_retry import cli
from workflow_retry.errors import ConfigurationError

pytestmark = pytest.mark.usefixtures("moto_endpoint")


def new_principal(emu: CdfEmulator, client_id: str) -> str:
    secret = secrets.token_urlsafe(24)
    register_secret(secret)
    emu.add_client(client_id, secret)
    return secret


def session_client_ids(emu: CdfEmulator) -> list[str]:
    return [r.body["items"][0].get("clientId", "token exchange") for r in emu.requests_matching("POST", r"/sessions$")]


def test_mapped_workflows_retry_with_the_credentials_their_references_hold(
    new_app: AppFactory, emu: CdfEmulator
) -> None:
    sales_secret, finance_secret = new_principal(emu, "sales-app"), new_principal(emu, "finance-app")
    parameter = unique("/workflow-retry/sales")
    ssm: Any = boto3.client("ssm")
    ssm.put_parameter(Name=parameter, Value=sales_secret, Type="SecureString")
    secret_name = unique("workflow-retry/finance")
    secretsmanager: Any = boto3.client("secretsmanager")
    secretsmanager.create_secret(Name=secret_name, SecretString=json.dumps({"clientSecret": finance_secret}))
    env = {
        "RETRY_CONCURRENCY": "1",
        "RETRY_CREDENTIALS_MAP": json.dumps({"sales-*": "sales", "finance-daily": "finance"}),
        "RETRY_CREDENTIAL_SETS": json.dumps(
            {
                "sales": {"clientId": "sales-app", "clientSecretRef": f"ssm:{parameter}"},
                "finance": {"clientId": "finance-app", "clientSecretRef": f"{secret_name}#clientSecret"},
            }
        ),
    }
    ids = [emu.seed_execution(wf, "1", "FAILED")["id"] for wf in ("finance-daily", "sales-eu", "hr-weekly")]

    result = new_app(env).handle({"executionIds": ids}, lambda_context())

    assert [r["outcome"] for r in result["results"]] == ["retried"] * 3
    assert session_client_ids(emu) == ["finance-app", "sales-app", FUNCTION_CLIENT_ID]


def test_a_set_the_map_names_but_nobody_defined_is_a_configuration_error_before_any_request(
    new_app: AppFactory, emu: CdfEmulator
) -> None:
    env = {"RETRY_CREDENTIALS_MAP": json.dumps({"sales-*": "sales"})}
    failed = emu.seed_execution("sales-eu", "1", "FAILED")

    with pytest.raises(ConfigurationError, match="'sales', which RETRY_CREDENTIAL_SETS does not define"):
        new_app(env).handle({"executionId": failed["id"]}, lambda_context())
    assert emu.requests == []


def test_an_unreadable_reference_says_which_and_holds_no_secret(new_app: AppFactory, emu: CdfEmulator) -> None:
    env = {
        "RETRY_CREDENTIALS_MAP": json.dumps({"sales-*": "sales"}),
        "RETRY_CREDENTIAL_SETS": json.dumps({"sales": {"clientId": "sales-app", "clientSecretRef": "ssm:/absent"}}),
    }
    failed = emu.seed_execution("sales-eu", "1", "FAILED")

    with pytest.raises(ConfigurationError, match="SSM parameter '/absent'"):
        new_app(env).handle({"executionId": failed["id"]}, lambda_context())
    assert emu.requests == []


def test_check_access_signs_in_as_each_mapped_set_read_by_reference(
    lambda_env: CdfEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = lambda_env
    sales_secret = new_principal(emu, "sales-app")
    parameter = unique("/workflow-retry/sales")
    ssm: Any = boto3.client("ssm")
    ssm.put_parameter(Name=parameter, Value=sales_secret, Type="SecureString")
    monkeypatch.setenv("RETRY_CREDENTIALS_MAP", json.dumps({"sales-*": "sales"}))
    monkeypatch.setenv(
        "RETRY_CREDENTIAL_SETS", json.dumps({"sales": {"clientId": "sales-app", "clientSecretRef": f"ssm:{parameter}"}})
    )
    emu.add_workflow_version("sales-daily", "1", [{"externalId": "load", "type": "function"}])

    code = cli.main(["check-access", "--json"])

    report = json.loads(capsys.readouterr().out)
    assert code == cli.EXIT_FAILURES
    assert [(p["name"], p["clientId"], p["error"]) for p in report["principals"]] == [
        ("default", FUNCTION_CLIENT_ID, None),
        ("sales", "sales-app", None),
    ]
    assert [(m["principal"], m["capability"], m["action"], m["task"]) for m in report["missing"]] == [
        ("sales", "functionsAcl", "RUN", "load")
    ]
    assert {r.client_id for r in emu.requests_matching("GET", r"/token/inspect$")} == {FUNCTION_CLIENT_ID, "sales-app"}
