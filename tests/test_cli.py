"""The command line against the emulator, configured through the environment only: in this process (its
``main``, tests/support/cli.py) and, for the entry point and its logging set-up, as
``python -m workflow_retry``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from emulator import CdfEmulator
from emulator.faults import Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from tests.support.cli import command_environment, run_in_process

ROOT = Path(__file__).resolve().parents[1]
UNKNOWN = "059edaa4-a17a-4102-910e-2c3591500cce"


def _env(emu: CdfEmulator, extra_env: dict[str, str | None]) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "CDF_URL": emu.base_url,
        "CDF_PROJECT": emu.project,
        "IDP_CLIENT_ID": FUNCTION_CLIENT_ID,
        "IDP_CLIENT_SECRET": FUNCTION_CLIENT_SECRET,
        "IDP_TOKEN_URL": emu.token_url,
        "RETRY_SDK_MAX_BACKOFF_SECONDS": "0",
    }
    return env | extra_env


def cli(emu: CdfEmulator, *args: str, **extra_env: str | None) -> subprocess.CompletedProcess[str]:
    """Run the command in this process (tests/support/cli.py); an ``extra_env`` value of None unsets that variable."""
    return run_in_process(args, _env(emu, extra_env))


def cli_process(emu: CdfEmulator, *args: str, **extra_env: str | None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m workflow_retry`` as a user would: the entry point, its imports, its logging set-up."""
    return subprocess.run(
        [sys.executable, "-m", "workflow_retry", *args],
        cwd=ROOT,
        env=command_environment(_env(emu, extra_env)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.process
def test_retry_prints_a_table_and_exits_0(emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf-a", "1", "FAILED")["id"]

    run = cli_process(emu, "retry", failed)

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
    assert status["policy"]["outcome"] == "deferred"


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
@pytest.mark.parametrize("command", [["-m", "workflow_retry", "emulator"], ["-m", "emulator"]])
@pytest.mark.process
def test_the_emulator_command_serves_until_stopped(command: list[str]) -> None:
    process = subprocess.Popen(
        [sys.executable, *command, "--port", "0", "--seed", "2"],
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
        assert "2 FAILED execution(s) of workflow 'wf' seeded" in text
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


def test_every_missing_setting_is_named_in_one_message(emu: CdfEmulator) -> None:
    unset = dict.fromkeys(("CDF_PROJECT", "CDF_URL", "CDF_CLUSTER", "IDP_CLIENT_ID", "IDP_TOKEN_URL"))
    run = cli(emu, "sweep", IDP_CLIENT_SECRET=None, IDP_CLIENT_SECRET_REF=None, RETRY_MAX_ATTEMPTS="0", **unset)

    assert run.returncode == 2
    for name in ("CDF_PROJECT", "CDF_URL", "CDF_CLUSTER", "IDP_CLIENT_ID", "IDP_TOKEN_URL", "IDP_CLIENT_SECRET"):
        assert name in run.stderr, name
    assert "RETRY_MAX_ATTEMPTS" in run.stderr
    assert emu.requests == []


def test_an_invalid_setting_names_its_variable(emu: CdfEmulator) -> None:
    run = cli(emu, "retry", UNKNOWN, RETRY_DEADLINE_SECONDS="soon")

    assert run.returncode == 2
    assert "RETRY_DEADLINE_SECONDS" in run.stderr
    assert emu.requests == []


@pytest.mark.process
def test_verbose_is_accepted_after_the_subcommand_as_before(emu: CdfEmulator) -> None:
    failed = emu.seed_many(2, status="FAILED")

    after = cli_process(emu, "sweep", "--dry-run", "-v")
    before = cli(emu, "-v", "sweep", "--dry-run")
    quiet = cli(emu, "retry", failed[0], "--dry-run")

    assert after.returncode == before.returncode == 0, after.stderr + before.stderr
    assert "INFO workflow_retry" in after.stderr
    assert "INFO workflow_retry" in before.stderr
    assert quiet.stderr == ""


def test_a_misspelt_retry_variable_is_warned_about_with_the_closest_name(emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    run = cli(emu, "retry", failed, RETRY_CONCURENCY="4", RETRY_MAX_ATTEMTPS="2", RETRY_CONCURRENCY="4")

    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: RETRY_CONCURENCY is not a setting of this tool and is ignored; did you mean RETRY_CONCURRENCY?",
        "warning: RETRY_MAX_ATTEMTPS is not a setting of this tool and is ignored; did you mean RETRY_MAX_ATTEMPTS?",
    ]


def test_every_retry_variable_the_tool_reads_is_known() -> None:
    import re

    from workflow_retry.settings import known_retry_variables, unknown_retry_variables

    read = set()
    for path in (ROOT / "workflow_retry").rglob("*.py"):
        read |= set(re.findall(r"[\"']?(RETRY_[A-Z_]+)[\"']", path.read_text()))
    read -= {"RETRY_AFTER_SECONDS", "RETRY_DOC"}  # constants of the code, not variables it reads

    assert read <= known_retry_variables(), read - known_retry_variables()
    assert unknown_retry_variables(dict.fromkeys(known_retry_variables(), "")) == []


def test_a_failed_sweep_says_why_first(emu: CdfEmulator) -> None:
    emu.seed_many(2, status="FAILED")
    emu.add_fault(Fault(method="POST", path_regex=r"/workflows/executions/list$", statuses=[403]))

    run = cli(emu, "sweep")

    assert run.returncode == 1
    first = run.stdout.splitlines()[0]
    assert first.startswith("sweep failed: could not list executions:"), run.stdout
    assert "(no executions to show)" not in run.stdout


def test_the_progress_bar_says_would_retry_in_a_dry_run(emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from workflow_retry.cli import main

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    failed = emu.seed_many(2, status="FAILED")
    for name in [n for n in os.environ if n.startswith(("RETRY_", "CDF_", "IDP_"))]:
        monkeypatch.delenv(name)
    for name, value in _env(emu, {}).items():
        monkeypatch.setenv(name, str(value))
    bars = {}
    for command in (["retry", *failed, "--dry-run"], ["sweep", "--dry-run"], ["retry", failed[0]]):
        terminal = Terminal()
        monkeypatch.setattr("sys.stderr", terminal)
        assert main(command) == 0
        bars[" ".join(command[:1] + command[-1:])] = terminal.getvalue()

    assert "would retry" in bars["retry --dry-run"]
    assert "retrying" not in bars["retry --dry-run"]
    assert "would retry" in bars["sweep --dry-run"]
    assert "retrying" not in bars["sweep --dry-run"]
    assert "retrying" in bars[f"retry {failed[0]}"]
    assert emu.retry_count(failed[0]) == 1
    assert emu.retry_count(failed[1]) == 0


def test_status_json_speaks_in_the_outcome_words_of_results(emu: CdfEmulator) -> None:
    fresh = emu.seed_execution("wf", "1", "FAILED")["id"]
    cooling = emu.seed_execution("wf", "1", "FAILED")["id"]
    done = emu.seed_execution("wf", "1", "COMPLETED")["id"]
    emu.auto_fail_after_retry = True
    assert cli(emu, "retry", cooling).returncode == 0

    outcomes = {
        execution: json.loads(cli(emu, "status", execution, "--json").stdout)["policy"]["outcome"]
        for execution in (fresh, cooling, done)
    }
    dry_run = json.loads(cli(emu, "retry", fresh, cooling, done, "--dry-run", "--json").stdout)

    assert outcomes == {fresh: "dry_run", cooling: "deferred", done: "skipped"}
    assert [r["outcome"] for r in dry_run["results"]] == [outcomes[fresh], outcomes[cooling], outcomes[done]]


def test_an_id_pasted_with_white_space_is_taken_on_the_command_line(emu: CdfEmulator) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]

    status = cli(emu, "status", f" {failed}\n", "--json")
    retry = cli(emu, "retry", f"\t{failed} ", "--json")

    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["execution"]["id"] == failed
    assert retry.returncode == 0, retry.stderr
    assert [r["outcome"] for r in json.loads(retry.stdout)["results"]] == ["retried"]
    assert emu.retry_count(failed) == 1


@pytest.mark.timeout(120)
@pytest.mark.process
def test_the_emulator_can_fail_retries_again_to_walk_through_the_policy_by_hand() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "workflow_retry", "emulator", "--port", "0", "--seed", "1", "--fail-again"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C"):
                break
        exported = dict(pair.split("=", 1) for line in lines if line.startswith("export ") for pair in line.split()[1:])
        [execution] = [line.strip() for line in lines if re.fullmatch(r"\s+[0-9a-f-]{36}", line)]
        env: dict[str, str | None] = {**exported, "RETRY_MAX_ATTEMPTS": "2", "RETRY_COOLDOWN_FACTOR": "1"}

        def retry(cooldown: str) -> str:
            run = run_in_process(["retry", execution, "--json"], env | {"RETRY_COOLDOWN_SECONDS": cooldown})
            [result] = json.loads(run.stdout)["results"]
            return str(result["outcome"])

        # The operator shortens the cooldown between the second and third call, instead of the test waiting.
        walk = [retry("3600"), retry("3600"), retry("0"), retry("0")]

        assert "every retried execution fails again at once" in "\n".join(lines).lower()
        assert walk == ["retried", "deferred", "retried", "exhausted"]
    finally:
        process.terminate()
        process.wait(timeout=10)
