"""A Cognite Function never loads the Lambda path: ``import handler`` pulls in no boto3 or Powertools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_ONLY = ("boto3", "botocore", "aws_lambda_powertools", "workflow_retry.aws", "workflow_retry.webhooks")

PROBE = f"""
import json, sys
import handler
assert callable(handler.handle) and callable(handler.lambda_handler)
loaded = sorted(m for m in sys.modules if m.startswith({LAMBDA_ONLY!r}))
print(json.dumps(loaded))
"""


def test_importing_handler_loads_nothing_of_the_lambda_path() -> None:
    # A fresh interpreter: this test process has long imported everything.
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)

    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_probe_would_see_the_lambda_path_once_it_is_used() -> None:
    probe = PROBE.replace("import handler\n", "import handler\nimport workflow_retry.aws.entrypoint\n")

    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)

    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "boto3" in loaded
    assert "aws_lambda_powertools" in loaded
