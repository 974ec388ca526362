"""The deploy configurations agree with the code and with each other (fast: YAML only, no tools).

Three ways to deploy describe the same function: the Toolkit module (infra/cognite), the
deploy-functions-oidc files (function_config.yaml, schedules/) and the SAM template (infra/aws). A
misspelt variable name or a schedule payload the function refuses would only show on the first deploy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices, BaseModel

from tests.infra.conftest import (
    REPO_ROOT,
    load_sam_template,
    load_script,
    load_toolkit_resource,
    toolkit_variables,
)
from workflow_retry.aws.config import AwsSettings
from workflow_retry.connection import CdfConnectionSettings
from workflow_retry.payloads import parse_payload
from workflow_retry.policy import ENVIRONMENT_VARIABLES
from workflow_retry.settings import SECRET_CLIENT_ID, SECRET_CLIENT_SECRET, Settings, settings_from_environment

# Keys of function_config.yaml the deploy-functions-oidc workflow reads.
FUNCTION_CONFIG_KEYS = {
    "description", "owner", "cpu", "memory", "metadata", "env_vars", "data_set_id", "common_folder",
    "function_file", "function_deploy_timeout", "post_deploy_cleanup", "index_url", "extra_index_urls", "runtime",
}  # fmt: skip
POWERTOOLS_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}


def _environment_names(model: type[BaseModel]) -> set[str]:
    """The environment variables a settings class reads (aliases, else prefix + field name)."""
    prefix = str(model.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{name}".upper())
    return names


KNOWN_VARIABLES = (
    _environment_names(Settings)
    | _environment_names(CdfConnectionSettings)
    | _environment_names(AwsSettings)
    | set(ENVIRONMENT_VARIABLES)
    | POWERTOOLS_VARIABLES
)


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return load_sam_template()


@pytest.fixture(scope="module")
def function_config() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO_ROOT / "function_config.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def toolkit_function() -> dict[str, Any]:
    return load_toolkit_resource("functions/fn_workflow_retry.Function.yaml")


def _sam_resource(sam: dict[str, Any], logical_id: str) -> dict[str, Any]:
    resource = sam["Resources"][logical_id]
    assert isinstance(resource, dict)
    return resource


def test_every_environment_variable_is_one_the_code_reads(sam, function_config, toolkit_function):
    sam_variables = _sam_resource(sam, "RetryFunction")["Properties"]["Environment"]["Variables"]
    for where, names in {
        "infra/aws/template.yaml": set(sam_variables),
        "function_config.yaml": set(function_config["env_vars"]),
        "fn_workflow_retry.Function.yaml": set(toolkit_function["envVars"]),
    }.items():
        assert names <= KNOWN_VARIABLES, f"{where} sets variables no code reads: {sorted(names - KNOWN_VARIABLES)}"


def test_the_two_cognite_configurations_agree(function_config, toolkit_function):
    assert set(function_config) <= FUNCTION_CONFIG_KEYS
    assert function_config["env_vars"] == toolkit_function["envVars"]
    assert function_config["function_file"] == toolkit_function["functionPath"] == "handler.py"
    assert function_config["runtime"] == toolkit_function["runtime"] == "py311"
    assert function_config["metadata"] == toolkit_function["metadata"]
    assert (function_config["cpu"], function_config["memory"]) == (toolkit_function["cpu"], toolkit_function["memory"])


def test_cognite_function_gets_the_secret_keys_the_code_reads(toolkit_function):
    assert set(toolkit_function["secrets"]) == {SECRET_CLIENT_ID, SECRET_CLIENT_SECRET}
    # Secret values come from the environment at deploy time, never from git.
    assert all(value.startswith("${") for value in toolkit_function["secrets"].values())
    assert toolkit_variables()["function_client_secret"].startswith("${")


def test_ledger_resources_match_the_function_settings(toolkit_function):
    database = load_toolkit_resource("raw/ledger.Database.yaml")
    table = load_toolkit_resource("raw/ledger.Table.yaml")
    assert toolkit_function["envVars"]["RETRY_LEDGER"] == "raw"
    assert toolkit_function["envVars"]["RETRY_LEDGER_RAW_DATABASE"] == database["dbName"] == table["dbName"]
    assert toolkit_function["envVars"]["RETRY_LEDGER_RAW_TABLE"] == table["tableName"]
    group = load_toolkit_resource("auth/workflow_retry_runner.Group.yaml")
    raw_scopes = [cap["rawAcl"]["scope"] for cap in group["capabilities"] if "rawAcl" in cap]
    assert raw_scopes == [{"tableScope": {"dbsToTables": {database["dbName"]: []}}}]


def test_runner_group_is_least_privilege():
    group = load_toolkit_resource("auth/workflow_retry_runner.Group.yaml")
    actions = {name: sorted(cap[name]["actions"]) for cap in group["capabilities"] for name in cap}
    assert actions == {
        "workflowOrchestrationAcl": ["READ", "WRITE"],
        "sessionsAcl": ["CREATE"],
        "rawAcl": ["READ", "WRITE"],
        "functionsAcl": ["RUN"],
        "extractionRunsAcl": ["WRITE"],
    }


def _schedule_payloads(sam: dict[str, Any]) -> dict[str, object]:
    payloads: dict[str, object] = {}
    for path in sorted((REPO_ROOT / "schedules").glob("*.yaml")):
        for schedule in yaml.safe_load(path.read_text()):
            assert set(schedule) <= {"name", "cron", "description", "data"}, path
            assert len(schedule["cron"].split()) == 5, f"{path}: {schedule['cron']!r} is not a 5-field cron"
            payloads[f"{path.name}:{schedule['name']}"] = schedule["data"]
    toolkit_schedule = load_toolkit_resource("functions/fn_workflow_retry.Schedule.yaml")
    assert len(toolkit_schedule["cronExpression"].split()) == 5
    payloads["Toolkit schedule"] = toolkit_schedule["data"]
    sweep = _sam_resource(sam, "RetryFunction")["Properties"]["Events"]["Sweep"]
    assert sweep["Type"] == "ScheduleV2"
    payloads["SAM schedule"] = yaml.safe_load(sweep["Properties"]["Input"])
    return payloads


def test_every_schedule_sends_a_sweep_the_function_accepts(sam):
    payloads = _schedule_payloads(sam)
    assert len(payloads) >= 3
    for where, data in payloads.items():
        request = parse_payload(data)
        assert request.sweep is not None, where
        assert request.ids == (), where


def test_sam_queue_outlasts_six_function_timeouts(sam):
    function = _sam_resource(sam, "RetryFunction")["Properties"]
    queue = _sam_resource(sam, "FailureEventsQueue")["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]
    assert int(function["Environment"]["Variables"]["RETRY_DEADLINE_SECONDS"]) < function["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}


def test_sam_event_wiring(sam):
    function = _sam_resource(sam, "RetryFunction")["Properties"]
    assert function["Handler"] == "handler.lambda_handler"
    sqs = function["Events"]["FailureEvents"]
    assert sqs["Type"] == "SQS"
    assert sqs["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    subscription = _sam_resource(sam, "FailureEventsSubscription")["Properties"]
    assert subscription["Protocol"] == "sqs"
    assert subscription["RawMessageDelivery"] is False
    policy = _sam_resource(sam, "FailureEventsQueuePolicy")["Properties"]["PolicyDocument"]["Statement"]
    assert policy[0]["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Ref": "FailureEventsTopic"}


@pytest.mark.parametrize(
    ("table", "key", "ttl"), [("IdempotencyTable", "id", "expiration"), ("LedgerTable", "executionId", "purgeAt")]
)
def test_sam_tables_have_the_schema_the_code_uses(sam, table, key, ttl):
    properties = _sam_resource(sam, table)["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [{"AttributeName": key, "AttributeType": "S"}]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": ttl, "Enabled": True}
    assert properties["SSESpecification"]["SSEEnabled"] is True


def test_sam_encrypts_every_queue_and_topic(sam):
    for logical_id, resource in sam["Resources"].items():
        if resource["Type"] == "AWS::SQS::Queue":
            assert resource["Properties"].get("SqsManagedSseEnabled") is True, logical_id
        if resource["Type"] == "AWS::SNS::Topic":
            assert resource["Properties"].get("KmsMasterKeyId"), logical_id


def test_every_checkov_skip_gives_its_reason(sam):
    skips = [
        (logical_id, skip)
        for logical_id, resource in sam["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for logical_id, skip in skips:
        assert skip["id"].startswith("CKV"), logical_id
        assert len(skip.get("comment", "")) > 40, f"{logical_id} skips {skip['id']} without a reason"


def test_runtime_matches_the_package_build(sam):
    package = load_script("package_lambda")
    function = _sam_resource(sam, "RetryFunction")["Properties"]
    assert function["Runtime"] == f"python{package.PYTHON_VERSION}"
    assert function["Architectures"] == ["x86_64"]
    assert all(platform.endswith("_x86_64") for platform in package.PLATFORMS)
    assert Path(function["CodeUri"]).name == package.DEFAULT_OUT.name


def test_sam_passes_the_credential_sets_and_lets_the_role_read_their_secrets(sam, monkeypatch):
    """Per-workflow credentials on AWS (docs/identity-and-access.md): the map and the sets reach the
    function, the template's defaults load as "no sets", and the sets' secrets are readable only when given."""
    parameters = sam["Parameters"]
    variables = _sam_resource(sam, "RetryFunction")["Properties"]["Environment"]["Variables"]
    assert variables["RETRY_CREDENTIALS_MAP"] == {"Ref": "CredentialsMap"}
    assert variables["RETRY_CREDENTIAL_SETS"] == {"Ref": "CredentialSets"}
    monkeypatch.setenv("RETRY_CREDENTIALS_MAP", parameters["CredentialsMap"]["Default"])
    monkeypatch.setenv("RETRY_CREDENTIAL_SETS", parameters["CredentialSets"]["Default"])
    defaults = settings_from_environment()
    assert (defaults.credentials_map, defaults.credential_sets) == ({}, {})

    policy = _sam_resource(sam, "ReadCredentialSetSecretsPolicy")
    assert policy["Condition"] == "HasCredentialSetSecrets"
    assert sam["Conditions"]["HasCredentialSetSecrets"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "CredentialSetSecretArns"}]}, ""]}]
    }
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Action"], statement["Resource"]) == (
        "secretsmanager:GetSecretValue",
        {"Ref": "CredentialSetSecretArns"},
    )
    assert policy["Properties"]["Roles"] == [{"Ref": "RetryFunctionRole"}]


@pytest.mark.parametrize(("value", "expected"), [("", None), ("40", 40)])
def test_sam_sets_retry_max_running_only_when_given(sam, monkeypatch, value, expected):
    """MaxRunning reaches the function as RETRY_MAX_RUNNING when set; empty, the variable is left out (an
    empty value would not parse), and the settings read it as not counted."""
    parameter = sam["Parameters"]["MaxRunning"]
    assert parameter["Default"] == ""
    assert re.fullmatch(parameter["AllowedPattern"], value)
    assert not re.fullmatch(parameter["AllowedPattern"], "51")
    assert not re.fullmatch(parameter["AllowedPattern"], "0")
    variables = _sam_resource(sam, "RetryFunction")["Properties"]["Environment"]["Variables"]
    assert variables["RETRY_MAX_RUNNING"] == {
        "Fn::If": ["HasMaxRunning", {"Ref": "MaxRunning"}, {"Ref": "AWS::NoValue"}]
    }
    assert sam["Conditions"]["HasMaxRunning"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "MaxRunning"}, ""]}]}
    monkeypatch.delenv("RETRY_MAX_RUNNING", raising=False)
    if value:
        monkeypatch.setenv("RETRY_MAX_RUNNING", value)
    assert settings_from_environment().max_running == expected
