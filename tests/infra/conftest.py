"""Helpers for the infra tests: the repository's deploy files, the check scripts, the check tools."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"
SCRIPTS = INFRA / "scripts"
SAM_TEMPLATE = INFRA / "aws/template.yaml"
TOOLKIT_ORG = INFRA / "cognite"
TOOLKIT_MODULE = TOOLKIT_ORG / "modules/workflow_retry"
INFRA_VENV = REPO_ROOT / ".venv-infra"
AWS_TOOLS_PYTHON = INFRA_VENV / "aws/bin/python"
TOOLKIT_PYTHON = INFRA_VENV / "toolkit/bin/python"
LAMBDA_ZIP = REPO_ROOT / "dist/lambda.zip"


def load_script(name: str) -> ModuleType:
    """Import ``infra/scripts/<name>.py`` (the scripts are not a package: they run in other venvs)."""
    spec = importlib.util.spec_from_file_location(f"infra_scripts_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (``!Ref X`` -> ``{"Ref": "X"}``, ``!If`` -> ``Fn::If``)."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _construct_tag)


def load_sam_template(path: Path = SAM_TEMPLATE) -> dict[str, Any]:
    loaded = yaml.load(path.read_text(), Loader=_CloudFormationLoader)  # noqa: S506 (a SafeLoader subclass)
    assert isinstance(loaded, dict)
    return loaded


def toolkit_variables(env: str = "dev") -> dict[str, Any]:
    config = yaml.safe_load((TOOLKIT_ORG / f"config.{env}.yaml").read_text())
    variables = config["variables"]["modules"]["workflow_retry"]
    assert isinstance(variables, dict)
    return variables


def load_toolkit_resource(relative: str, env: str = "dev") -> dict[str, Any]:
    """A resource YAML of the module with its ``{{ variable }}`` placeholders filled in, as `cdf build` does."""
    variables = toolkit_variables(env)
    text = (TOOLKIT_MODULE / relative).read_text()
    filled = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda match: str(variables[match.group(1)]), text)
    loaded = yaml.safe_load(filled)
    assert isinstance(loaded, dict)
    return loaded


def run_script(python: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a check script the way `make infra-check` does; output captured for the assertions."""
    return subprocess.run(
        [str(python), str(SCRIPTS / f"{script}.py"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


@pytest.fixture(scope="session")
def aws_tools_python() -> Path:
    if not AWS_TOOLS_PYTHON.exists():
        pytest.fail(f"{AWS_TOOLS_PYTHON} is missing: run `make infra-tools` (`make test` does it first)")
    return AWS_TOOLS_PYTHON


@pytest.fixture(scope="session")
def toolkit_python() -> Path:
    if not TOOLKIT_PYTHON.exists():
        pytest.fail(f"{TOOLKIT_PYTHON} is missing: run `make infra-tools` (`make test` does it first)")
    return TOOLKIT_PYTHON


@pytest.fixture(scope="session")
def lambda_zip() -> Path:
    if not LAMBDA_ZIP.exists():
        pytest.fail(f"{LAMBDA_ZIP} is missing: run `make package` (`make test` does it first)")
    return LAMBDA_ZIP
