"""Refuse to deploy a configuration that still holds the shipped example's placeholders.

    python infra/scripts/check_deploy_config.py                 # both: the Toolkit configs and the SAM parameters
    python infra/scripts/check_deploy_config.py --only cognite  # or --only aws
    python infra/scripts/check_deploy_config.py --cognite-dir DIR --sam-config FILE --template FILE

``cdf build`` accepts the example's values with "Ready to deploy", and ``sam deploy`` would send them
to CloudFormation. This check fails (exit 1) and names every value a user has still to fill in:

- any ``<...>`` left in a Toolkit ``config.<env>.yaml`` or in ``samconfig.toml``;
- the example's CDF project name (``environment.project``, ``CdfProject``);
- a ``${VARIABLE}`` of a Toolkit config (the runner's client ID and secret) that is unset or empty in
  the environment and in the ``.env`` file beside ``cdf.toml``, where the Toolkit reads it;
- a SAM parameter the template requires (no default) that is missing or empty, neither ``CdfCluster``
  nor ``CdfUrl`` set, or no ``WebhookSecretArn`` for a public Function URL (``FunctionUrlAuthType=NONE``).

It never prints a variable's value. Exit codes: 0 nothing left to fill in, 1 something is, 2 a file is
missing or cannot be read. Standard library and PyYAML only.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_COGNITE_DIR = REPO_ROOT / "infra/cognite"
DEFAULT_SAM_CONFIG = REPO_ROOT / "infra/aws/samconfig.toml"
DEFAULT_TEMPLATE = REPO_ROOT / "infra/aws/template.yaml"

PLACEHOLDER = re.compile(r"<[^<>\s][^<>]*>")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Project names used as examples in this repository's configs and docs.
EXAMPLE_PROJECTS = frozenset({"my-cdf-project-dev", "my-cdf-project", "my-project"})


def _shown(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar of a YAML/TOML document with its dotted path."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def _dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a ``.env`` file (comments, ``export`` and quotes allowed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _placeholders(label: str, document: Any, *, skip: str = "") -> list[str]:
    problems = []
    for path, value in _leaves(document):
        if isinstance(value, str) and not (skip and path.endswith(skip)):
            for found in PLACEHOLDER.findall(value):
                problems.append(f"{label}: {path} still holds the placeholder {found}")
    return problems


def check_toolkit_config(config: Path, environ: Mapping[str, str]) -> list[str]:
    """Problems of one Toolkit ``config.<env>.yaml``; variables are looked up in ``environ``, then ``.env``."""
    label = _shown(config)
    document = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    problems = _placeholders(label, document)
    project = (document.get("environment") or {}).get("project")
    if not isinstance(project, str) or not project.strip():
        problems.append(f"{label}: environment.project is empty: set your CDF project")
    elif project in EXAMPLE_PROJECTS:
        problems.append(f"{label}: environment.project is {project!r}, the example's name: set your CDF project")
    dotenv = _dotenv(config.parent / ".env")
    for path, value in _leaves(document):
        if not isinstance(value, str):
            continue
        for name in VARIABLE.findall(value):
            if not (environ.get(name) or dotenv.get(name) or "").strip():
                problems.append(
                    f"{label}: {path} reads ${{{name}}}, which is unset or empty "
                    f"(set it in the environment or in {_shown(config.parent / '.env')})"
                )
    return problems


def _overrides(raw: Any) -> dict[str, str]:
    """``parameter_overrides`` as ``sam deploy --guided`` writes it (one string) or as a list of ``K=V``."""
    items = raw if isinstance(raw, list) else shlex.split(raw or "")
    parameters: dict[str, str] = {}
    for item in items:
        key, _, value = str(item).partition("=")
        parameters[key.strip()] = value
    return parameters


def _template_parameters(template: Path) -> dict[str, Any]:
    class _CfnLoader(yaml.SafeLoader):
        """Reads CloudFormation's short tags (``!Ref``) as plain values: only ``Parameters`` is used."""

    _CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
    document = yaml.load(template.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 (safe loader)
    parameters: dict[str, Any] = document.get("Parameters") or {}
    return parameters


def check_sam_config(samconfig: Path, template: Path) -> list[str]:
    """Problems of every ``[<env>.deploy.parameters]`` table of a ``samconfig.toml``."""
    label = _shown(samconfig)
    document = tomllib.loads(samconfig.read_text(encoding="utf-8"))
    problems = _placeholders(label, document, skip="parameter_overrides")  # named per parameter below
    declared = _template_parameters(template)
    environments = {
        name: table["deploy"]["parameters"]
        for name, table in document.items()
        if isinstance(table, dict) and isinstance(table.get("deploy", {}).get("parameters"), dict)
    }
    if not environments:
        problems.append(f"{label}: no [<environment>.deploy.parameters] table")
    for env_name, deploy in environments.items():
        where = f"{label} [{env_name}.deploy.parameters]"
        given = _overrides(deploy.get("parameter_overrides"))
        for name, value in given.items():
            for found in PLACEHOLDER.findall(value):
                problems.append(f"{where}: {name} still holds the placeholder {found}")
            if name not in declared:
                problems.append(f"{where}: {name} is not a parameter of {template.name}")
        for name, spec in declared.items():
            if "Default" not in (spec or {}) and not given.get(name, "").strip():
                problems.append(f"{where}: {name} is required and {'empty' if name in given else 'not set'}")
        if given.get("CdfProject") in EXAMPLE_PROJECTS:
            problems.append(f"{where}: CdfProject is {given['CdfProject']!r}, the example's name: set your CDF project")
        if not (given.get("CdfCluster", "").strip() or given.get("CdfUrl", "").strip()):
            problems.append(f"{where}: set CdfCluster or CdfUrl")
        if given.get("FunctionUrlAuthType") == "NONE" and not given.get("WebhookSecretArn", "").strip():
            problems.append(f"{where}: WebhookSecretArn is empty, and a public Function URL (NONE) needs it")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", choices=("cognite", "aws"), help="check one deployment only")
    parser.add_argument("--cognite-dir", type=Path, default=DEFAULT_COGNITE_DIR, help="folder of config.<env>.yaml")
    parser.add_argument("--sam-config", type=Path, default=DEFAULT_SAM_CONFIG, help="samconfig.toml to check")
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help="the SAM template it is for")
    args = parser.parse_args(argv)

    problems: list[str] = []
    checked: list[Path] = []
    try:
        if args.only in (None, "cognite"):
            configs = sorted(args.cognite_dir.glob("config.*.yaml"))
            if not configs:
                print(f"deploy-check: no config.<env>.yaml in {args.cognite_dir}", file=sys.stderr)
                return 2
            for config in configs:
                problems += check_toolkit_config(config, os.environ)
                checked.append(config)
        if args.only in (None, "aws"):
            problems += check_sam_config(args.sam_config, args.template)
            checked.append(args.sam_config)
    except (OSError, yaml.YAMLError, tomllib.TOMLDecodeError, ValueError) as exc:
        print(f"deploy-check: cannot read the configuration: {exc}", file=sys.stderr)
        return 2
    names = ", ".join(_shown(path) for path in checked)
    if problems:
        print(f"deploy-check: {len(problems)} value(s) still to fill in before deploying:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"deploy-check: no placeholder left in {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
