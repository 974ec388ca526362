"""Access against the emulator: a retried task that lacks a capability, and ``check-access`` finding it first.

The emulator grants capabilities per client, answers ``/token/inspect`` with them, serves the
workflow versions, and (``enforce_task_capabilities``) fails a retried task whose session principal
lacks the capability its type needs, as CDF does.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid

import pytest

import handler
from emulator import DEFAULT_CAPABILITIES, CdfEmulator
from tests.conftest import make_client, register_secret
from workflow_retry import cli
from workflow_retry.access import DEFAULT_PRINCIPAL_NAME, PrincipalReader, SdkAccessReader, read_and_check
from workflow_retry.cdf import run_on_sdk_loop
from workflow_retry.identity import WorkflowCredentialsMap

pytestmark = pytest.mark.usefixtures("fast_env")

FUNCTION_TASKS = [{"externalId": "extract", "type": "function"}, {"externalId": "load", "type": "function"}]


def new_principal(emu: CdfEmulator, prefix: str, *extra: str) -> tuple[str, str]:
    """A client of its own (capabilities granted here do not leak into other tests)."""
    client_id, secret = f"{prefix}-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24)
    register_secret(secret)
    emu.add_client(client_id, secret, [*DEFAULT_CAPABILITIES, *extra])
    return client_id, secret


def failed_at_load(emu: CdfEmulator, workflow: str) -> str:
    emu.add_workflow_version(workflow, "1", FUNCTION_TASKS)
    tasks = [
        {"externalId": "extract", "status": "COMPLETED", "taskType": "function"},
        {"externalId": "load", "status": "FAILED", "taskType": "function", "reasonForIncompletion": "timeout"},
    ]
    return str(emu.seed_execution(workflow, "1", "FAILED", tasks=tasks)["id"])


# -- a retried task runs as the session's principal -----------------------------------------------------


def test_a_retried_function_task_fails_again_when_the_principal_lacks_functions_run(
    emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu.enforce_task_capabilities = True
    monkeypatch.setenv("RETRY_LEDGER", "none")
    runner_id, runner_secret = new_principal(emu, "runner")
    execution_id = failed_at_load(emu, "sales-daily")
    client = make_client(emu, runner_id, runner_secret)

    result = handler.handle(
        {"executionId": execution_id}, client, {"client-id": runner_id, "client-secret": runner_secret}
    )

    # CDF accepts the retry; the task then fails for lack of access, and so would every further attempt.
    assert result["results"][0]["outcome"] == "retried"
    after = emu.get_execution(execution_id)
    assert after is not None
    assert after["status"] == "FAILED"
    assert "missing capability functionsAcl:RUN" in after["reasonForIncompletion"]


def test_mapped_to_a_principal_that_holds_it_the_retried_task_runs(
    emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu.enforce_task_capabilities = True
    monkeypatch.setenv("RETRY_LEDGER", "none")
    monkeypatch.setenv("RETRY_CREDENTIALS_MAP", json.dumps({"sales-*": "sales"}))
    runner_id, runner_secret = new_principal(emu, "runner")
    sales_id, sales_secret = new_principal(emu, "sales", "functionsAcl:RUN")
    execution_id = failed_at_load(emu, "sales-daily")
    secrets_of_function = {
        "client-id": runner_id,
        "client-secret": runner_secret,
        "sales-id": sales_id,
        "sales-secret": sales_secret,
    }

    result = handler.handle(
        {"executionId": execution_id}, make_client(emu, runner_id, runner_secret), secrets_of_function
    )

    assert result["results"][0]["outcome"] == "retried"
    after = emu.get_execution(execution_id)
    assert after is not None
    assert after["status"] == "RUNNING"
    [session] = emu.requests_matching("POST", r"/sessions$")
    assert session.body["items"][0]["clientId"] == sales_id


# -- check-access finds it before the first retry ---------------------------------------------------------


@pytest.fixture
def cli_env(emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    runner_id, runner_secret = new_principal(emu, "runner")
    monkeypatch.setenv("CDF_PROJECT", emu.project)
    monkeypatch.setenv("CDF_URL", emu.base_url)
    monkeypatch.setenv("IDP_CLIENT_ID", runner_id)
    monkeypatch.setenv("IDP_TOKEN_URL", emu.token_url)
    monkeypatch.setenv("IDP_CLIENT_SECRET", runner_secret)
    monkeypatch.delenv("IDP_CLIENT_SECRET_REF", raising=False)
    monkeypatch.setenv("RETRY_LEDGER", "none")
    return runner_id, runner_secret


def test_check_access_reports_a_missing_capability_and_passes_once_it_is_granted(
    emu: CdfEmulator, cli_env: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    runner_id, _ = cli_env
    emu.add_workflow_version("sales-daily", "1", FUNCTION_TASKS)
    emu.add_workflow_version("hr-weekly", "2", [{"externalId": "report", "type": "cdf"}])

    code = cli.main(["check-access"])

    out = capsys.readouterr().out
    assert code == cli.EXIT_FAILURES
    assert re.search(r"MISSING\s+functionsAcl:RUN", out)
    assert "sales-daily:1" in out
    assert "extract (function)" in out
    assert "load (function)" in out
    assert "NOT CHECKED" in out  # the cdf task: its endpoint's capability cannot be known ahead
    assert "access NOT ok: 2 missing" in out

    emu.grant_capabilities(runner_id, ["functionsAcl:RUN"])
    code = cli.main(["check-access"])

    out = capsys.readouterr().out
    assert code == cli.EXIT_OK
    assert "MISSING" not in out
    assert "access ok" in out


def test_check_access_json_names_capability_action_task_and_workflow_in_scope_only(
    emu: CdfEmulator, cli_env: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    emu.add_workflow_version("sales-daily", "1", FUNCTION_TASKS)
    emu.add_workflow_version("sim-nightly", "4", [{"externalId": "simulate", "type": "simulation"}])

    code = cli.main(["check-access", "--workflow", "sim-nightly:4", "--json"])

    report = json.loads(capsys.readouterr().out)
    assert code == cli.EXIT_FAILURES
    assert report["ok"] is False
    assert report["workflowVersions"] == 1
    [missing] = report["missing"]
    assert {k: missing[k] for k in ("capability", "action", "task", "taskType", "workflow", "version")} == {
        "capability": "simulatorsAcl",
        "action": "RUN",
        "task": "simulate",
        "taskType": "simulation",
        "workflow": "sim-nightly",
        "version": "4",
    }
    listed = emu.requests_matching("POST", r"/workflows/versions/list$")
    assert [r.body["filter"]["workflowFilters"] for r in listed] == [[{"externalId": "sim-nightly", "version": "4"}]]


def test_check_access_refuses_a_malformed_workflow_without_a_request(
    emu: CdfEmulator, cli_env: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["check-access", "--workflow", ":1"])

    assert code == cli.EXIT_USAGE
    assert "not a workflow" in capsys.readouterr().err
    assert emu.requests == []


def test_each_mapped_principal_signs_in_itself_and_is_checked_for_its_workflows(emu: CdfEmulator) -> None:
    runner_id, runner_secret = new_principal(emu, "runner", "functionsAcl:RUN")
    sales_id, sales_secret = new_principal(emu, "sales")
    emu.add_workflow_version("sales-daily", "1", FUNCTION_TASKS)
    emu.add_workflow_version("hr-weekly", "1", FUNCTION_TASKS)
    runner = SdkAccessReader(make_client(emu, runner_id, runner_secret))
    entries = [
        PrincipalReader(DEFAULT_PRINCIPAL_NAME, runner_id, runner),
        PrincipalReader("sales", sales_id, SdkAccessReader(make_client(emu, sales_id, sales_secret))),
    ]

    report = run_on_sdk_loop(
        read_and_check(runner, emu.project, entries, WorkflowCredentialsMap({"sales-*": "sales"}), [])
    )

    assert [(c.principal, c.workflow, c.task) for c in report.missing] == [
        ("sales", "sales-daily", "extract"),
        ("sales", "sales-daily", "load"),
    ]
    inspected = {r.client_id for r in emu.requests_matching("GET", r"/token/inspect$")}
    assert inspected == {runner_id, sales_id}


def test_a_mapped_principal_whose_secret_the_idp_refuses_is_an_error_without_the_idps_answer(
    emu: CdfEmulator,
) -> None:
    runner_id, runner_secret = new_principal(emu, "runner", "functionsAcl:RUN")
    sales_id, _ = new_principal(emu, "sales")
    wrong = secrets.token_urlsafe(24)
    register_secret(wrong)
    runner = SdkAccessReader(make_client(emu, runner_id, runner_secret))
    entries = [
        PrincipalReader(DEFAULT_PRINCIPAL_NAME, runner_id, runner),
        PrincipalReader("sales", sales_id, SdkAccessReader(make_client(emu, sales_id, wrong))),
    ]

    report = run_on_sdk_loop(
        read_and_check(runner, emu.project, entries, WorkflowCredentialsMap({"sales-*": "sales"}), [])
    )

    sales = next(p for p in report.principals if p.name == "sales")
    assert sales.error is not None
    assert "no token from the identity provider" in sales.error
    assert "Invalid client" not in sales.error
    assert not report.ok


def test_check_access_scope_defaults_to_the_sweeps_workflows(
    emu: CdfEmulator, cli_env: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RETRY_SWEEP_WORKFLOWS", "hr-weekly")
    emu.add_workflow_version("sales-daily", "1", FUNCTION_TASKS)
    emu.add_workflow_version("hr-weekly", "2", [{"externalId": "report", "type": "cdf"}])

    code = cli.main(["check-access", "--json"])

    report = json.loads(capsys.readouterr().out)
    assert (code, report["ok"], report["workflowVersions"]) == (cli.EXIT_OK, True, 1)


def test_a_runner_that_cannot_read_workflows_is_told_so_and_fails(
    emu: CdfEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runner_id, runner_secret = f"blind-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24)
    register_secret(runner_secret)
    emu.add_client(runner_id, runner_secret, [c for c in DEFAULT_CAPABILITIES if not c.endswith(":READ")])
    for name, value in {
        "CDF_PROJECT": emu.project,
        "CDF_URL": emu.base_url,
        "IDP_CLIENT_ID": runner_id,
        "IDP_TOKEN_URL": emu.token_url,
        "IDP_CLIENT_SECRET": runner_secret,
        "RETRY_LEDGER": "none",
    }.items():
        monkeypatch.setenv(name, value)

    code = cli.main(["check-access"])

    out = capsys.readouterr().out
    assert code == cli.EXIT_FAILURES
    assert re.search(r"MISSING\s+workflowOrchestrationAcl:READ\s+default\s+\(the tool itself\)", out)
    assert "problem: listing the workflow versions failed" in out
