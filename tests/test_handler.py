"""``handler`` stays a thin adapter: importing it loads the SDK only, and the first call loads the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emulator import CdfEmulator
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter, as a Functions runtime: import handler, build the client, call handle.
_SCRIPT = """
import json, sys
import handler
after_import = sorted(m for m in ("pydantic", "workflow_retry", "boto3", "aws_lambda_powertools") if m in sys.modules)
from cognite.client import ClientConfig, CogniteClient, global_config
from cognite.client.credentials import OAuthClientCredentials
global_config.disable_pypi_version_check = True
base_url, token_url, client_id, secret, execution_id = sys.argv[1:]
client = CogniteClient(ClientConfig(
    client_name="test", project="test-project", base_url=base_url,
    credentials=OAuthClientCredentials(token_url=token_url, client_id=client_id, client_secret=secret,
                                       scopes=[base_url + "/.default"]),
))
result = handler.handle({"executionId": execution_id}, client, {"client-id": client_id, "client-secret": secret})
after_call = sorted(m for m in ("pydantic", "workflow_retry", "boto3", "aws_lambda_powertools") if m in sys.modules)
print(json.dumps({"after_import": after_import, "after_call": after_call, "counts": result["counts"]}))
"""


@pytest.mark.process
def test_import_handler_loads_the_sdk_only_and_the_first_call_loads_the_cognite_path(emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    arguments = [emu.base_url, emu.token_url, FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET, failed]
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.splitlines()[-1])
    assert seen["after_import"] == []
    assert seen["after_call"] == ["pydantic", "workflow_retry"]  # never boto3 or Powertools on this path
    assert seen["counts"]["retried"] == 1
    assert emu.retry_count(failed) == 1
