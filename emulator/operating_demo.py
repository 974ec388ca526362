"""`python -m emulator.operating_demo`: what an operator sees, produced by the code on the CDF emulator.

Prints the examples of docs/operating.md: the JSON log lines of a Cognite Function call (a retry, then
a give-up), the extraction pipeline runs those calls reported (read back through cognite-sdk), the
log and metric (EMF) lines of a Lambda invocation, and the retry history the command line shows
(``workflow-retry history``, and ``status`` of the execution given up on).
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import time
from contextlib import redirect_stdout
from dataclasses import dataclass
from typing import Any

from cognite.client import global_config

import handler
from emulator import CdfEmulator
from emulator.clients import sdk_client
from workflow_retry.logs import PACKAGE_LOGGER, JsonStdoutHandler

PIPELINE = "ep_workflow_retry"


@dataclass
class _LambdaContext:
    """The attributes of AWS Lambda's context object that the function reads."""

    aws_request_id: str
    function_name: str = "workflow-retry"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:workflow-retry"

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _show(title: str, value: object) -> None:
    print(f"## {title}\n{json.dumps(value, indent=2) if not isinstance(value, str) else value}\n")


def main() -> int:
    global_config.disable_pypi_version_check = True
    client_id, client_secret = "workflow-retry-function", secrets.token_urlsafe(24)
    with CdfEmulator(project="demo") as emu:
        emu.add_client(client_id, client_secret)
        emu.grant_capabilities(client_id, ["extractionRunsAcl:WRITE", "extractionRunsAcl:READ"])
        emu.add_extraction_pipeline(
            PIPELINE,
            name="Workflow retry",
            schedule="*/15 * * * *",
            contacts=[{"name": "On call", "email": "oncall@example.com", "role": "Owner", "sendNotification": True}],
            notificationConfig={"allowedNotSeenRangeInMinutes": 30},
        )
        client = sdk_client(emu, client_id, client_secret, "operating-demo")
        os.environ.update(
            {"RETRY_EXTRACTION_PIPELINE": PIPELINE, "RETRY_SDK_MAX_BACKOFF_SECONDS": "0", "RETRY_LEDGER": "raw"}
        )
        secrets_ = {"client-id": client_id, "client-secret": client_secret}

        # A Cognite Function: a sweep that finds nothing; a failed execution retried, then (it failed
        # again) given up at maxAttempts 1.
        emu.auto_fail_after_retry = True
        out = io.StringIO()
        with redirect_stdout(out):
            handler.handle({"sweep": {}}, client, secrets_, {"call_id": "1718900000001", "function_id": 123})
            failed = emu.seed_execution("nightly-ingest", "3", "FAILED", reason="Task 'load' failed: connection reset")
            data = {"executionId": failed["id"], "policy": {"maxAttempts": 1}}
            handler.handle(data, client, secrets_, {"call_id": "1718900000002", "function_id": 123})
            time.sleep(0.01)
            handler.handle(data, client, secrets_, {"call_id": "1718900000003", "function_id": 123})
        lines = _lines(out.getvalue())
        _show("Cognite Function: a retried execution", next(line for line in lines if line.get("event") == "execution"))
        _show("Cognite Function: a give-up", next(line for line in lines if line.get("event") == "gave_up"))
        runs = client.extraction_pipelines.runs.list(external_id=PIPELINE, limit=10)
        _show("Extraction pipeline runs (newest first)", [run.dump() for run in runs])

        # AWS Lambda: a direct invoke with one failed execution, as in a container of its own (a Lambda
        # never runs handle(), so the Cognite Function's stdout handler is not there).
        package = logging.getLogger(PACKAGE_LOGGER)
        for stdout_handler in [h for h in package.handlers if isinstance(h, JsonStdoutHandler)]:
            package.removeHandler(stdout_handler)
        emu.auto_fail_after_retry = False
        os.environ.update(
            {
                "CDF_PROJECT": emu.project,
                "CDF_URL": emu.base_url,
                "IDP_CLIENT_ID": client_id,
                "IDP_TOKEN_URL": emu.token_url,
                "IDP_CLIENT_SECRET": client_secret,
                "POWERTOOLS_SERVICE_NAME": "workflow-retry",
                "POWERTOOLS_METRICS_NAMESPACE": "WorkflowRetry",
            }
        )
        os.environ.pop("RETRY_EXTRACTION_PIPELINE")
        again = emu.seed_execution("hourly-sync", "1", "FAILED", reason="Task 'transform' timed out")
        out = io.StringIO()
        with redirect_stdout(out):
            handler.lambda_handler({"executionId": again["id"]}, _LambdaContext("8f5e1c1a-6f4b-4d3c-9a7e-2b1d0c9e8f7a"))
        lines = _lines(out.getvalue())
        _show("AWS Lambda: a retried execution", next(line for line in lines if line.get("event") == "execution"))
        _show("AWS Lambda: the invocation's metrics (EMF)", next(line for line in lines if "_aws" in line))

        # The retry history: two more executions retried, one of which then completed and one failed
        # again (cooling down before its next retry), beside the one given up on and the one running.
        recovered = emu.seed_execution("daily-report", "2", "FAILED", reason="Task 'publish' failed: 503 from API")
        cooling = emu.seed_execution("hourly-sync", "1", "FAILED", reason="Task 'transform' timed out")
        with redirect_stdout(io.StringIO()):
            handler.handle({"executionIds": [recovered["id"], cooling["id"]]}, client, secrets_, {"call_id": "4"})
        emu.complete_execution(recovered["id"])
        emu.fail_execution(cooling["id"], "Task 'transform' timed out")
        _show("workflow-retry history", _command("history"))
        os.environ["RETRY_MAX_ATTEMPTS"] = "1"  # the cap its calls gave it, so that "policy now" agrees
        _show("workflow-retry status (the execution given up on)", _command("status", failed["id"]))
    return 0


def _command(*args: str) -> str:
    """What the command line prints (stdout) for these arguments, in this process's environment."""
    from workflow_retry import cli

    out = io.StringIO()
    with redirect_stdout(out):
        cli.main(list(args))
    return out.getvalue().rstrip()


if __name__ == "__main__":
    raise SystemExit(main())
