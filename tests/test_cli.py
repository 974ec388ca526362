"""The command line, run as a subprocess against the emulator, configured through the environment only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from emulator import CdfEmulator
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET

ROOT = Path(__file__).resolve().parents[1]
UNKNOWN = "059edaa4-a17a-4102-910e-2c3591500cce"


def cli(emu: CdfEmulator, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRY_", "CDF_", "IDP_"))}
    env.update(
        CDF_URL=emu.base_url,
        CDF_PROJECT=emu.project,
        IDP_CLIENT_ID=FUNCTION_CLIENT_ID,
        IDP_CLIENT_SECRET=FUNCTION_CLIENT_SECRET,
        IDP_TOKEN_URL=emu.token_url,
        RETRY_SDK_MAX_BACKOFF_SECONDS="0",
    )
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "workflow_retry", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_retry_prints_a_table_and_exits_0(emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf-a", "1", "FAILED")["id"]

    run = cli(emu, "retry", failed)

    assert run.returncode == 0, run.stderr
    header, row = run.stdout.splitlines()[:2]
    assert header.split() == ["EXECUTION", "WORKFLOW", "OUTCOME", "ATTEMPTS", "REASON"]
    assert row.split()[:4] == [failed, "wf-a", "retried", "1"]
    assert "1 retried" in run.stdout
    assert emu.retry_count(failed) == 1
    assert FUNCTION_CLIENT_SECRET not in run.stdout + run.stderr


def test_retry_exits_1_when_an_id_is_invalid_or_unknown(emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    run = cli(emu, "retry", failed, "not-a-uuid", UNKNOWN, "--json")

    assert run.returncode == 1
    result = json.loads(run.stdout)
    assert [r["outcome"] for r in result["results"]] == ["retried", "invalid", "not_found"]
    assert run.stderr == ""  # no progress bar when stderr is not a terminal


def test_dry_run_json_changes_nothing(emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    run = cli(emu, "retry", failed, "--dry-run", "--json")

    assert run.returncode == 0, run.stderr
    [item] = json.loads(run.stdout)["results"]
    assert item["outcome"] == "dry_run"
    assert emu.retry_count(failed) == 0
    assert emu.requests_matching("POST", r"/sessions$|/raw/") == []


def test_json_results_hold_the_compact_execution_unless_full_is_asked_for(emu: CdfEmulator) -> None:
    completed = emu.seed_execution("wf", "1", "COMPLETED", metadata={"team": "data"})["id"]

    compact = json.loads(cli(emu, "retry", completed, "--json").stdout)["results"][0]["execution"]
    full = json.loads(cli(emu, "retry", completed, "--json", "--full").stdout)["results"][0]["execution"]

    assert set(compact) == {
        "id", "workflowExternalId", "version", "status", "engineExecutionId",
        "createdTime", "startTime", "endTime", "metadata",
    }  # fmt: skip
    assert compact["metadata"] == {"team": "data"}
    assert [t["externalId"] for t in full["executedTasks"]] == ["task-1", "task-2"]
    assert {k: full[k] for k in compact} == compact


def test_sweep_with_workflow_and_window(emu: CdfEmulator) -> None:
    now = int(time.time() * 1000)
    wanted = emu.seed_many(3, workflow_external_id="wf-a", status="FAILED")
    emu.seed_many(2, workflow_external_id="wf-b", status="FAILED")
    emu.seed_execution("wf-a", "1", "FAILED", created_time=now - 5 * 3_600_000)  # ended before the window

    run = cli(emu, "sweep", "--workflow", "wf-a", "--since", "2h", "--max-restarts", "2")

    assert run.returncode == 0, run.stderr
    assert "4 seen in 1 page(s), 3 candidate(s)" in run.stdout  # listed: it may have ended late; screened by endTime
    assert "outcomes: 2 retried, 1 skipped" in run.stdout
    assert "left for the next sweep (maxRestarts 2): 1" in run.stdout
    assert [emu.retry_count(i) for i in wanted] == [1, 1, 0]


def test_sweep_json_dry_run(emu: CdfEmulator) -> None:
    ids = emu.seed_many(4, status="FAILED")

    run = cli(emu, "sweep", "--dry-run", "--json", RETRY_SWEEP_PAGE_SIZE="2")

    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    assert result["sweep"]["pagesRead"] == 2
    assert [r["executionId"] for r in result["results"]] == ids
    assert sum(emu.retry_count(i) for i in ids) == 0


def test_status_shows_the_execution_its_ledger_record_and_the_policy(emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.auto_fail_after_retry = True
    assert cli(emu, "retry", failed).returncode == 0

    table = cli(emu, "status", failed)
    as_json = cli(emu, "status", failed, "--json")

    assert table.returncode == 0, table.stderr
    assert "1 attempt(s) of 3" in table.stdout
    assert "policy now" in table.stdout
    status = json.loads(as_json.stdout)
    assert status["execution"]["id"] == failed
    assert status["ledger"]["kind"] == "raw"
    assert status["ledger"]["record"]["attempts"] == 1
    assert status["policy"]["action"] == "defer"


def test_missing_configuration_is_a_clear_error_and_exit_2(emu: CdfEmulator) -> None:
    run = cli(emu, "retry", UNKNOWN, IDP_CLIENT_SECRET="")

    assert run.returncode == 2
    assert "IDP_CLIENT_SECRET" in run.stderr
    assert emu.requests == []


def test_invalid_policy_in_the_environment_exits_2_before_any_request(emu: CdfEmulator) -> None:
    run = cli(emu, "retry", UNKNOWN, RETRY_MAX_ATTEMPTS="0")

    assert run.returncode == 2
    assert "RETRY_MAX_ATTEMPTS" in run.stderr
    assert emu.requests_matching(None, r"/api/v1/projects/") == []


@pytest.mark.timeout(60)
def test_the_emulator_command_serves_until_stopped() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "workflow_retry", "emulator", "--port", "0", "--seed", "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        text = "".join(lines)
        assert "export CDF_URL=http://127.0.0.1:" in text
        assert "2 FAILED execution(s) seeded" in text
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_progress_bar_draws_only_on_a_terminal() -> None:
    import io

    from workflow_retry.cli import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = ProgressBar(stream, "retrying")
        bar.update(5, 10)
        bar.update(120, None, "listing")
        bar.close()

    assert "[###############...............] 5/10" in terminal.getvalue()
    assert "120 execution(s) listed" in terminal.getvalue()
    assert pipe.getvalue() == ""
