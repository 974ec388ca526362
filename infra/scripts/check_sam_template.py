"""Check the SAM template offline: translate it, lint the translation, scan both with checkov.

    .venv-infra/aws/bin/python infra/scripts/check_sam_template.py [--template T] [--out DIR]

1. aws-sam-translator turns the template into plain CloudFormation, with a placeholder S3 CodeUri (the
   real one is the local zip `sam deploy` uploads). This is where an unknown event type, a wrong event
   property or a bad reference fails: `cfn-lint` alone and `sam validate --lint` do not catch those.
2. cfn-lint lints the translation; warnings fail too.
3. checkov scans the template and the translation: any failed check fails. Skips live in the template,
   each on its resource with the reason (Metadata.checkov.skip); the translation keeps them.

Runs in the `.venv-infra/aws` virtual environment (pinned in infra/requirements-infra.txt). No network:
no AWS account, no managed-policy lookup, no checkov platform download.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cfnlint.decode.cfn_yaml import load as load_cfn_yaml
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "infra/aws/template.yaml"
DEFAULT_OUT = REPO_ROOT / "build/infra"
PLACEHOLDER_CODE_URI = "s3://placeholder-bucket/workflow-retry/lambda.zip"
# Region and account used to translate; SAM needs them for partitions and ARNs, nothing is contacted.
PSEUDO_PARAMETERS = {"AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}


class CheckFailed(Exception):
    """One of the checks rejected the template."""


class OfflineManagedPolicyLoader(ManagedPolicyLoader):
    """Resolves no managed policy names (the template attaches none by name); never calls IAM."""

    def __init__(self) -> None:
        super().__init__(iam_client=None)

    def load(self) -> dict[str, str]:
        return {}


def translate(template_path: Path) -> dict[str, Any]:
    """The CloudFormation that SAM would deploy, with placeholder S3 code locations."""
    # SAM reads the region from a boto3 session (no call is made); the same one as the pseudo parameters.
    os.environ["AWS_DEFAULT_REGION"] = PSEUDO_PARAMETERS["AWS::Region"]
    template = load_cfn_yaml(str(template_path))
    for resource in template.get("Resources", {}).values():
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::Function":
            resource.setdefault("Properties", {})["CodeUri"] = PLACEHOLDER_CODE_URI
    try:
        translated = transform(
            json.loads(json.dumps(template)),  # plain dicts, without cfn-lint's position-marked types
            dict(PSEUDO_PARAMETERS),
            OfflineManagedPolicyLoader(),
            passthrough_metadata=True,
        )
    except InvalidDocumentException as exc:
        causes = "\n".join(f"  - {cause.message}" for cause in exc.causes)
        raise CheckFailed(f"aws-sam-translator rejected {template_path}:\n{causes}") from None
    return translated


def run_tool(name: str, args: list[str]) -> str | None:
    """Run a tool of this virtual environment (its output goes to ours); a failure's description, or None."""
    tool = Path(sys.executable).parent / name
    print(f"$ {name} {' '.join(args)}", flush=True)
    completed = subprocess.run([str(tool), *args], check=False)
    if completed.returncode != 0:
        return f"{name} failed (exit code {completed.returncode})"
    return None


def check_template(template_path: Path, out_dir: Path) -> Path:
    """Run every check on ``template_path`` (all of them, even after a failure); returns the translation."""
    out_dir.mkdir(parents=True, exist_ok=True)
    translated_path = out_dir / f"{template_path.stem}.translated.json"
    translated_path.write_text(json.dumps(translate(template_path), indent=2, sort_keys=True) + "\n")
    print(f"translated {template_path} -> {translated_path}", flush=True)
    failures = [run_tool("cfn-lint", ["--non-zero-exit-code", "warning", "--", str(translated_path)])]
    # One checkov run for both files (its start-up is most of its time). --skip-download: no Prisma
    # Cloud platform call; the checks ship with the package.
    checkov_args = ["--quiet", "--compact", "--skip-download", "--framework", "cloudformation"]
    files = ["--file", str(template_path), "--file", str(translated_path)]
    failures.append(run_tool("checkov", [*checkov_args, *files]))
    found = [failure for failure in failures if failure]
    if found:
        raise CheckFailed("; ".join(found))
    return translated_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the translation is written")
    args = parser.parse_args(argv)
    try:
        check_template(args.template.resolve(), args.out.resolve())
    except CheckFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"OK: {args.template} translates, lints clean and passes checkov")
    return 0


if __name__ == "__main__":
    sys.exit(main())
