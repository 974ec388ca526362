"""The access check's decision, without I/O: what tasks need, what a token holds, what is missing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from workflow_retry.access import (
    DEFAULT_PRINCIPAL_NAME,
    Capability,
    HeldCapabilities,
    Principal,
    PrincipalReader,
    check_access,
    read_and_check,
    subworkflow_references,
    task_needs,
)
from workflow_retry.errors import CdfRequestError
from workflow_retry.identity import WorkflowCredentialsMap
from workflow_retry.policy import WorkflowSelector

PROJECT = "test-project"
TOOL = ["workflowOrchestrationAcl:READ", "workflowOrchestrationAcl:WRITE", "sessionsAcl:CREATE"]


def inspect_body(*capabilities: str, scope: dict[str, Any] | None = None, project: str = PROJECT) -> dict[str, Any]:
    """A ``GET /token/inspect`` body, one group item per capability, as CDF answers it."""
    items = []
    for text in capabilities:
        acl, action = text.split(":")
        items.append(
            {acl: {"actions": [action], "scope": scope or {"all": {}}}, "projectScope": {"projects": [project]}}
        )
    return {"subject": "someone", "projects": [{"projectUrlName": project}], "capabilities": items}


def held(*capabilities: str) -> HeldCapabilities:
    return HeldCapabilities.from_inspect(inspect_body(*capabilities), PROJECT)


def task(external_id: str, task_type: str, **parameters: Any) -> dict[str, Any]:
    return {"externalId": external_id, "type": task_type, "parameters": parameters}


def version(workflow: str, number: str, *tasks: dict[str, Any]) -> dict[str, Any]:
    return {
        "workflowExternalId": workflow,
        "version": number,
        "workflowDefinition": {"hash": "h", "tasks": list(tasks)},
    }


FUNCTION = task("load", "function", function={"externalId": "fn-load"})
TRANSFORMATION = task("shape", "transformation", transformation={"externalId": "tr-shape"})
SIMULATION = task("simulate", "simulation", simulation={"routineExternalId": "routine-1"})


# -- what each task type needs ------------------------------------------------------------------------


def test_function_transformation_and_simulation_tasks_need_their_run_capabilities() -> None:
    [function] = task_needs(FUNCTION)
    [transformation] = task_needs(TRANSFORMATION)
    [simulation] = task_needs(SIMULATION)

    assert [str(n.capability) for n in function.needs] == ["functionsAcl:RUN"]
    assert [str(n.capability) for n in transformation.needs] == ["transformationsAcl:WRITE"]
    assert [str(n.capability) for n in simulation.needs] == ["simulatorsAcl:RUN"]
    assert "'fn-load'" in function.needs[0].why
    assert all(n.source.startswith("https://") for t in (function, transformation, simulation) for n in t.needs)


def test_a_transformation_with_the_sessions_credentials_says_its_data_access_is_not_checked() -> None:
    [own] = task_needs(
        task("t", "transformation", transformation={"externalId": "x", "useTransformationCredentials": True})
    )
    [session] = task_needs(task("t", "transformation", transformation={"externalId": "x"}))

    assert "not checked" not in own.needs[0].why
    assert "reads and writes its data as this principal" in session.needs[0].why


def test_cdf_dynamic_and_unknown_tasks_are_reported_as_not_checked() -> None:
    [cdf] = task_needs(task("req", "cdf", cdfRequest={"resourcePath": "/assets/list", "method": "POST"}))
    [dynamic] = task_needs(task("dyn", "dynamic", dynamic={"tasks": "${gen.output.tasks}"}))
    [unknown] = task_needs(task("new", "quantum"))

    assert (cdf.needs, dynamic.needs, unknown.needs) == ((), (), ())
    assert "POST /assets/list" in (cdf.not_checked or "")
    assert "decided while the workflow runs" in (dynamic.not_checked or "")
    assert "quantum" in (unknown.not_checked or "")


def test_inline_subworkflow_tasks_are_followed_and_named_by_their_path() -> None:
    inline = task("stage", "subworkflow", subworkflow={"tasks": [FUNCTION, SIMULATION]})

    needs = task_needs(inline)

    assert [(n.task, str(n.needs[0].capability)) for n in needs] == [
        ("stage/load", "functionsAcl:RUN"),
        ("stage/simulate", "simulatorsAcl:RUN"),
    ]


def test_a_referenced_subworkflow_is_followed_when_its_version_was_read() -> None:
    reference = task("child", "subworkflow", subworkflow={"workflowExternalId": "lib", "version": "2"})

    assert subworkflow_references([reference]) == {("lib", "2")}
    [unread] = task_needs(reference)
    [read] = task_needs(reference, {("lib", "2"): [TRANSFORMATION]})
    assert "lib:2 could not be read" in (unread.not_checked or "")
    assert (read.task, str(read.needs[0].capability)) == ("child/shape", "transformationsAcl:WRITE")


def test_a_subworkflow_that_refers_to_itself_stops() -> None:
    loop = task("again", "subworkflow", subworkflow={"workflowExternalId": "self", "version": "1"})

    needs = task_needs(loop, {("self", "1"): [loop]})

    assert needs[-1].not_checked is not None
    assert len(needs) == 1


# -- what a token holds -------------------------------------------------------------------------------


def test_token_inspect_is_read_for_this_project_only_and_acl_spellings_agree() -> None:
    body = inspect_body("functionsAcl:RUN")
    body["capabilities"] += inspect_body("transformationsAcl:WRITE", project="other-project")["capabilities"]
    body["capabilities"].append({"workflowOrchestrationACL": {"actions": ["READ"], "scope": {"all": {}}}})

    holds = HeldCapabilities.from_inspect(body, PROJECT)

    assert holds.holds(Capability("functionsAcl", "RUN"))
    assert holds.holds(Capability.of("workflowOrchestrationACL", "read"))
    assert not holds.holds(Capability("transformationsAcl", "WRITE"))


def test_a_capability_held_only_for_some_data_sets_counts_as_held_but_scoped() -> None:
    body = inspect_body("functionsAcl:RUN", scope={"datasetScope": {"ids": [1]}})
    body["capabilities"] += inspect_body("sessionsAcl:CREATE")["capabilities"]

    holds = HeldCapabilities.from_inspect(body, PROJECT)

    assert holds.holds(Capability("functionsAcl", "RUN"))
    assert holds.scoped == frozenset({Capability("functionsAcl", "RUN")})


# -- the decision -------------------------------------------------------------------------------------


def principals(**held_by_name: HeldCapabilities | None) -> dict[str, Principal]:
    return {
        name: Principal(name, f"{name}-client", held=h, error=None if h else "no token")
        for name, h in held_by_name.items()
    }


def test_a_missing_capability_names_the_capability_the_action_the_task_and_its_workflow() -> None:
    report = check_access(
        principals(default=held(*TOOL)),
        [version("sales-daily", "1", FUNCTION, TRANSFORMATION)],
        WorkflowCredentialsMap(),
    )

    assert not report.ok
    [missing_function, missing_transformation] = [c.to_dict() for c in report.missing]
    assert missing_function == {
        "principal": "default",
        "workflow": "sales-daily",
        "version": "1",
        "task": "load",
        "taskType": "function",
        "capability": "functionsAcl",
        "action": "RUN",
        "status": "missing",
        "why": "calls function 'fn-load'",
        "source": missing_function["source"],
    }
    assert (missing_transformation["capability"], missing_transformation["action"]) == ("transformationsAcl", "WRITE")


def test_everything_held_is_ok_and_not_checked_tasks_do_not_fail_the_check() -> None:
    report = check_access(
        principals(default=held(*TOOL, "functionsAcl:RUN")),
        [version("wf", "1", FUNCTION, task("req", "cdf", cdfRequest={"resourcePath": "/x", "method": "GET"}))],
        WorkflowCredentialsMap(),
    )

    assert report.ok
    assert [c.status for c in report.checks if c.workflow] == ["held", "not checked"]


def test_each_workflow_is_checked_against_the_principal_its_retries_use() -> None:
    report = check_access(
        principals(default=held(*TOOL), sales=held("functionsAcl:RUN")),
        [version("sales-daily", "1", FUNCTION), version("hr-weekly", "3", FUNCTION)],
        WorkflowCredentialsMap({"sales-*": "sales"}),
    )

    by_workflow = {c.workflow: (c.principal, c.status) for c in report.checks if c.workflow}
    assert by_workflow == {"sales-daily": ("sales", "held"), "hr-weekly": ("default", "missing")}


def test_the_tools_own_needs_are_checked_on_the_default_principal() -> None:
    report = check_access(principals(default=held("functionsAcl:RUN")), [], WorkflowCredentialsMap())

    assert [str(c.capability) for c in report.missing] == TOOL
    assert all(c.workflow is None for c in report.missing)


def test_a_principal_whose_capabilities_could_not_be_read_misses_everything_and_fails() -> None:
    report = check_access(
        principals(default=held(*TOOL, "functionsAcl:RUN"), sales=None),
        [version("sales-daily", "1", FUNCTION)],
        WorkflowCredentialsMap({"sales-*": "sales"}),
    )

    assert not report.ok
    assert [(c.principal, str(c.capability)) for c in report.missing] == [("sales", "functionsAcl:RUN")]


# -- the reads, through a reader that answers from memory ------------------------------------------------


class MemoryReader:
    def __init__(self, body: dict[str, Any] | None, versions: Sequence[dict[str, Any]] = ()) -> None:
        self.body = body
        self.versions = list(versions)
        self.listed: list[list[str]] = []

    async def inspect_token(self) -> dict[str, Any]:
        if self.body is None:
            raise CdfRequestError(401, "unauthorized", False)
        return self.body

    async def list_workflow_versions(self, selectors: Sequence[WorkflowSelector]) -> list[dict[str, Any]]:
        self.listed.append([str(s) for s in selectors])
        return [
            v
            for v in self.versions
            if not selectors or any(s.matches(v["workflowExternalId"], v["version"]) for s in selectors)
        ]


def test_read_and_check_follows_subworkflow_references_outside_the_scope() -> None:
    child = task("child", "subworkflow", subworkflow={"workflowExternalId": "lib", "version": "2"})
    reader = MemoryReader(
        inspect_body(*TOOL), [version("sales-daily", "1", child), version("lib", "2", TRANSFORMATION)]
    )
    entries = [PrincipalReader(DEFAULT_PRINCIPAL_NAME, "tool", reader)]

    report = asyncio.run(
        read_and_check(
            reader, PROJECT, entries, WorkflowCredentialsMap(), [WorkflowSelector.model_validate("sales-daily")]
        )
    )

    assert reader.listed == [["sales-daily"], ["lib:2"]]
    assert report.workflow_versions == 1
    assert [(c.task, str(c.capability)) for c in report.missing] == [("child/shape", "transformationsAcl:WRITE")]


def test_a_principal_that_cannot_sign_in_is_reported_with_its_error() -> None:
    reader = MemoryReader(inspect_body(*TOOL), [version("sales-daily", "1", FUNCTION)])
    entries = [
        PrincipalReader(DEFAULT_PRINCIPAL_NAME, "tool", reader),
        PrincipalReader("sales", "sales-app", MemoryReader(None)),
    ]

    report = asyncio.run(read_and_check(reader, PROJECT, entries, WorkflowCredentialsMap({"sales-*": "sales"}), []))

    sales = next(p for p in report.principals if p.name == "sales")
    assert sales.error is not None
    assert "unauthorized" in sales.error
    assert not report.ok
