"""`make demo`: the main job end to end on the embedded CDF emulator.

Starts the emulator, seeds failed (and some not-failed) workflow executions, retries them through
``handler.handle`` exactly as a Cognite Function call would, prints a before/after table, runs the
lets the retried ones fail again to show the policy hold them back (cooldown) and then give up at
the cap (``exhausted``, the give-up announced once), runs the access check (the retried tasks run as
the function's principal) and exits 0 when every ID got the outcome it should and the check found the
missing capability.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
import uuid
from typing import Any

from cognite.client import CogniteClient, global_config

import handler
from emulator import CdfEmulator
from emulator.clients import sdk_client
from workflow_retry.access import (
    DEFAULT_PRINCIPAL_NAME,
    AccessReport,
    PrincipalReader,
    SdkAccessReader,
    read_and_check,
)
from workflow_retry.cdf import run_on_sdk_loop
from workflow_retry.cli import render_access_report
from workflow_retry.identity import WorkflowCredentialsMap
from workflow_retry.policy import WorkflowSelector

# The demo's operator settings: two attempts, three seconds apart, so that the cap shows in seconds.
DEMO_POLICY = {"RETRY_MAX_ATTEMPTS": "2", "RETRY_COOLDOWN_SECONDS": "3", "RETRY_COOLDOWN_FACTOR": "1"}

EXPECTED = {
    "FAILED": "retried",
    "TIMED_OUT": "retried",
    "TERMINATED": "retried",
    "RUNNING": "skipped",
    "COMPLETED": "skipped",
}


class _GiveUps(logging.Handler):
    """The give-up log lines (logger workflow_retry.giveup), to show that each is announced once."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main() -> int:
    global_config.disable_pypi_version_check = True
    os.environ.update(DEMO_POLICY)
    give_ups = _GiveUps()
    logging.getLogger("workflow_retry.giveup").addHandler(give_ups)
    client_id, client_secret = "demo-function", secrets.token_urlsafe(24)
    with CdfEmulator(project="demo") as emu:
        emu.add_client(client_id, client_secret)
        seeded = [
            emu.seed_execution("nightly-ingest", "1", "FAILED", reason="Task 'load' failed: connection reset"),
            emu.seed_execution("nightly-ingest", "1", "TIMED_OUT", reason="Task 'transform' timed out"),
            emu.seed_execution("hourly-sync", "3", "TERMINATED", reason="Cancelled by user"),
            emu.seed_execution("hourly-sync", "3", "RUNNING", reason=None),
            emu.seed_execution("weekly-report", "2", "COMPLETED", reason=None),
        ]
        before = {e["id"]: e for e in seeded}
        unknown = str(uuid.uuid4())
        data = {"executionIds": [*before, unknown, "not-an-execution-id"]}

        client = sdk_client(emu, client_id, client_secret, "workflow-retry-demo")
        function_secrets = {"client-id": client_id, "client-secret": client_secret}
        result = handler.handle(data, client, secrets=function_secrets)
        after = {e: emu.get_execution(e) for e in before}

        # The same failures come back at once (a failure that will not pass): the policy holds them
        # back for the cooldown, retries them once more after it, and gives up at the cap.
        restarted = [r["executionId"] for r in result["results"] if r["outcome"] == "retried"]
        emu.auto_fail_after_retry = True
        for execution_id in restarted:
            emu.fail_execution(execution_id, reason="failed again straight away")
        again = handler.handle({"executionIds": restarted}, client, secrets=function_secrets)
        time.sleep(float(DEMO_POLICY["RETRY_COOLDOWN_SECONDS"]) + 0.5)
        after_cooldown = handler.handle({"executionIds": restarted}, client, secrets=function_secrets)
        at_cap = handler.handle({"executionIds": restarted}, client, secrets=function_secrets)
        emu.auto_fail_after_retry = False

        # Retried tasks run as the function's principal: check-access says what it lacks, before a retry fails.
        access_before = _check_access(emu, client, client_id)
        emu.grant_capabilities(client_id, ["functionsAcl:RUN"])
        access_after = _check_access(emu, client, client_id)

    print("1) the failures are retried once, through handler.handle():\n")
    _print_table(result["results"], before, after)
    print("\ncounts:", ", ".join(f"{k}={v}" for k, v in result["counts"].items() if v))
    print(
        "\n2) they fail again at once, every time (operator settings for the demo: "
        + " ".join(f"{k}={v}" for k, v in DEMO_POLICY.items())
        + "):\n"
    )
    walk = [("at once", again), ("after the cooldown", after_cooldown), ("failed again", at_cap)]
    for when, call in walk:
        print(f"  {when}:")
        for item in call["results"]:
            print(f"    {item['executionId'][:13]}...  {item['outcome']:<9} {item['reason'][:90]}")
    print(f"\n  given up at the cap, each announced once: {len(give_ups.messages)} log line(s) (and SNS, when set):")
    for message in give_ups.messages:
        print(f"    {message[:110]}")
    print("\n3) the retried tasks run as the function's principal; check-access finds what it lacks:\n")
    print(render_access_report(access_before))
    print("\n   after granting functionsAcl:RUN:\n")
    print(render_access_report(access_after))
    wrong = [
        r["executionId"]
        for r in result["results"]
        if r["executionId"] in before and r["outcome"] != EXPECTED[before[r["executionId"]]["status"]]
    ]
    extras_ok = [r["outcome"] for r in result["results"][len(before) :]] == ["not_found", "invalid"]
    held_back = (
        all(r["outcome"] == "deferred" for r in again["results"])
        and all(r["outcome"] == "retried" for r in after_cooldown["results"])
        and all(r["outcome"] == "exhausted" for r in at_cap["results"])
        and len(give_ups.messages) == len(restarted)
    )
    access_found = not access_before.ok and access_after.ok
    if wrong or not extras_ok or not held_back or not access_found:
        print(f"\nunexpected outcomes for: {wrong or 'the unknown/invalid IDs'}", file=sys.stderr)
        return 1
    print(
        "\ndemo ok: every failed execution ran again; nothing else was touched; repeats were held back, then"
        " given up at the cap;"
        " the missing capability was found before a retry needed it."
    )
    return 0


def _check_access(emu: CdfEmulator, client: CogniteClient, client_id: str) -> AccessReport:
    """``python -m workflow_retry check-access --workflow nightly-ingest`` as the function's principal."""
    reader = SdkAccessReader(client)
    principals = [PrincipalReader(DEFAULT_PRINCIPAL_NAME, client_id, reader)]
    scope = [WorkflowSelector.model_validate("nightly-ingest")]
    return run_on_sdk_loop(read_and_check(reader, emu.project, principals, WorkflowCredentialsMap(), scope))


def _print_table(results: list[dict[str, Any]], before: dict[str, Any], after: dict[str, Any]) -> None:
    rows = [("execution", "workflow", "before", "outcome", "after", "reason")]
    for r in results:
        eid = r["executionId"]
        was, now = before.get(eid), after.get(eid)
        rows.append(
            (
                eid[:13] + ("..." if len(eid) > 13 else ""),
                f"{was['workflowExternalId']}:{was['version']}" if was else "-",
                was["status"] if was else "-",
                r["outcome"],
                now["status"] if now else "-",
                r["reason"][:80],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    sys.exit(main())
