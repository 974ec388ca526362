"""`make deploy-check` fails on the shipped example, naming each value left to fill in, and passes on a filled-in copy.

The shipped example runs through the Makefile target itself; the filled-in copies (in a temporary
folder, the repository untouched) through the script the target runs, pointed at the copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import register_secret
from tests.infra.conftest import REPO_ROOT, SAM_TEMPLATE, SCRIPTS, TOOLKIT_ORG

pytestmark = pytest.mark.process  # each test starts an interpreter or forks a cold container
SAM_CONFIG = REPO_ROOT / "infra/aws/samconfig.toml"
RUNNER_VARIABLES = ("IDP_FUNCTION_CLIENT_ID", "IDP_FUNCTION_CLIENT_SECRET")
FILLED_SAM_VALUES = {
    "<aws-region>": "eu-west-1",
    "<your-cdf-project>": "acme-production",
    "<your-cdf-cluster>": "westeurope-1",
    "<client-id-of-the-service-principal>": "7d3f8c1e-4b5a-4c2d-9e8f-0a1b2c3d4e5f",
    "<tenant-id>": "0f1e2d3c-4b5a-4968-8776-655443322110",
    "<email-of-the-person-on-call>": "data-oncall@example.com",
    "<arn-of-the-client-secret-in-secrets-manager>": (
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:workflow-retry/cdf-client-secret-AbCdEf"
    ),
}


def _environment(**variables: str) -> dict[str, str]:
    """The test's environment without the runner's variables, plus the given ones."""
    env = {name: value for name, value in os.environ.items() if name not in RUNNER_VARIABLES}
    return {**env, **variables}


def _check(cognite_dir: Path, sam_config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = SCRIPTS / "check_deploy_config.py"
    command = [sys.executable, str(script), "--cognite-dir", str(cognite_dir), "--sam-config", str(sam_config)]
    return subprocess.run(
        [*command, "--template", str(SAM_TEMPLATE)], capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the Toolkit config and the SAM parameters with every value filled in as a user would."""
    cognite_dir = tmp_path / "cognite"
    cognite_dir.mkdir()
    config = yaml.safe_load((TOOLKIT_ORG / "config.dev.yaml").read_text())
    config["environment"]["project"] = "acme-dev"
    variables = config["variables"]["modules"]["workflow_retry"]
    variables["runner_source_id"] = "5a6b7c8d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
    variables["notification_contact_name"] = "Data platform on call"
    variables["notification_contact_email"] = "data-oncall@example.com"
    (cognite_dir / "config.dev.yaml").write_text(yaml.safe_dump(config))
    sam_text = SAM_CONFIG.read_text()
    for placeholder, value in FILLED_SAM_VALUES.items():
        sam_text = sam_text.replace(placeholder, value)
    sam_config = tmp_path / "samconfig.toml"
    sam_config.write_text(sam_text)
    assert "<" not in "".join(line for line in sam_text.splitlines() if not line.startswith("#"))
    return cognite_dir, sam_config


def test_make_deploy_check_fails_on_the_shipped_example_naming_each_placeholder() -> None:
    run = subprocess.run(
        ["make", "-s", "deploy-check", f"PY={sys.executable}", "STAMP="],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=120,
        check=False,
    )
    assert run.returncode != 0
    expected = [
        "infra/cognite/config.dev.yaml: variables.modules.workflow_retry.runner_source_id still holds the "
        "placeholder <object-id-of-the-idp-group>",
        "notification_contact_name still holds the placeholder <name-of-the-person-on-call>",
        "notification_contact_email still holds the placeholder <email-of-the-person-on-call>",
        "infra/cognite/config.dev.yaml: environment.project is 'my-cdf-project-dev', the example's name",
        "function_client_id reads ${IDP_FUNCTION_CLIENT_ID}, which is unset or empty",
        "function_client_secret reads ${IDP_FUNCTION_CLIENT_SECRET}, which is unset or empty",
        "infra/aws/samconfig.toml: default.deploy.parameters.region still holds the placeholder <aws-region>",
        "CdfProject still holds the placeholder <your-cdf-project>",
        "CdfCluster still holds the placeholder <your-cdf-cluster>",
        "IdpClientId still holds the placeholder <client-id-of-the-service-principal>",
        "IdpTokenUrl still holds the placeholder <tenant-id>",
        "ClientSecretArn still holds the placeholder <arn-of-the-client-secret-in-secrets-manager>",
        "AlarmEmail still holds the placeholder <email-of-the-person-on-call>",
    ]
    for problem in expected:
        assert problem in run.stderr
    assert "13 value(s) still to fill in" in run.stderr


def test_passes_on_a_filled_in_copy_and_never_prints_the_secret(filled: tuple[Path, Path]) -> None:
    secret = "runner-client-secret-6f0c2b7e9d"
    register_secret(secret)
    run = _check(*filled, _environment(IDP_FUNCTION_CLIENT_ID="runner-id", IDP_FUNCTION_CLIENT_SECRET=secret))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("deploy-check: no placeholder left in ")
    assert run.stderr == ""
    assert secret not in run.stdout


def test_reads_the_runner_credentials_from_the_env_file_beside_the_config(filled: tuple[Path, Path]) -> None:
    cognite_dir, sam_config = filled
    secret = "runner-client-secret-from-dotenv-41d7"
    register_secret(secret)
    (cognite_dir / ".env").write_text(f'IDP_FUNCTION_CLIENT_ID=runner-id\nIDP_FUNCTION_CLIENT_SECRET="{secret}"\n')
    run = _check(cognite_dir, sam_config, _environment())
    assert run.returncode == 0, run.stderr
    assert secret not in run.stdout + run.stderr


def test_an_empty_secret_variable_is_named(filled: tuple[Path, Path]) -> None:
    run = _check(*filled, _environment(IDP_FUNCTION_CLIENT_ID="runner-id", IDP_FUNCTION_CLIENT_SECRET=""))
    assert run.returncode == 1
    assert "function_client_secret reads ${IDP_FUNCTION_CLIENT_SECRET}, which is unset or empty" in run.stderr
    assert "IDP_FUNCTION_CLIENT_ID}" not in run.stderr
    assert "1 value(s) still to fill in" in run.stderr


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        (
            'CdfProject=\\"acme-production\\"',
            'CdfProject=\\"my-project\\"',
            "CdfProject is 'my-project', the example's",
        ),
        (
            'ClientSecretArn=\\"arn:aws:secretsmanager:eu-west-1:123456789012:secret:workflow-retry/cdf-client-secret-AbCdEf\\"',
            'ClientSecretArn=\\"\\"',
            "ClientSecretArn is required and empty",
        ),
        ('CdfCluster=\\"westeurope-1\\"', 'CdfCluster=\\"\\"', "set CdfCluster or CdfUrl"),
        (
            'CdfCluster=\\"westeurope-1\\"',
            'CdfCluster=\\"westeurope-1\\" FunctionUrlAuthType=\\"NONE\\"',
            "WebhookSecretArn is empty, and a public Function URL (NONE) needs it",
        ),
    ],
    ids=["example-project", "empty-client-secret-arn", "no-cluster", "public-url-without-webhook-secret"],
)
def test_each_sam_mistake_is_named(filled: tuple[Path, Path], old: str, new: str, named: str) -> None:
    cognite_dir, sam_config = filled
    text = sam_config.read_text()
    assert old in text
    sam_config.write_text(text.replace(old, new))
    run = _check(cognite_dir, sam_config, _environment(IDP_FUNCTION_CLIENT_ID="id", IDP_FUNCTION_CLIENT_SECRET="s"))
    assert run.returncode == 1
    assert named in run.stderr


def test_the_example_project_in_a_toolkit_config_copied_for_another_environment_is_named(
    filled: tuple[Path, Path],
) -> None:
    cognite_dir, sam_config = filled
    shutil.copy2(TOOLKIT_ORG / "config.dev.yaml", cognite_dir / "config.prod.yaml")
    run = _check(cognite_dir, sam_config, _environment(IDP_FUNCTION_CLIENT_ID="id", IDP_FUNCTION_CLIENT_SECRET="s"))
    assert run.returncode == 1
    assert "config.prod.yaml: environment.project is 'my-cdf-project-dev', the example's name" in run.stderr
    assert "config.dev.yaml" not in run.stderr
