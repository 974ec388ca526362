"""Workflow versions (upsert, retrieve, byids, list), capabilities granted at runtime, and a retried task
whose session principal lacks the capability its type needs."""

from __future__ import annotations

from typing import Any

import pytest
from cognite.client import CogniteClient
from cognite.client.data_classes import (
    FunctionTaskParameters,
    TransformationTaskParameters,
    WorkflowDefinitionUpsert,
    WorkflowTask,
    WorkflowVersionUpsert,
)
from cognite.client.data_classes.workflows import WorkflowVersionId

from emulator import SESSIONS_CREATE, WORKFLOW_READ, WORKFLOW_WRITE, CdfEmulator
from tests.emulator.support import ADMIN_ID, call, make_client

LIMITED_ID = "emu-test-limited"
LIMITED_SECRET = "emu-test-limited-secret"


@pytest.fixture
def token(emu: CdfEmulator) -> str:
    return emu.issue_token(ADMIN_ID)


def _version_body(xid: str, version: str, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"items": [{"workflowExternalId": xid, "version": version, "workflowDefinition": {"tasks": tasks}}]}


FN_TASK: dict[str, Any] = {"externalId": "fn", "type": "function", "parameters": {"function": {"externalId": "my-fn"}}}


def test_upsert_retrieve_and_list_through_the_sdk(emu: CdfEmulator, client: CogniteClient) -> None:
    version = WorkflowVersionUpsert(
        workflow_external_id="wf",
        version="1",
        workflow_definition=WorkflowDefinitionUpsert(
            tasks=[
                WorkflowTask("load", parameters=FunctionTaskParameters(external_id="load-fn")),
                WorkflowTask("shape", parameters=TransformationTaskParameters(external_id="tr"), depends_on=["load"]),
            ],
            description="two steps",
        ),
    )
    created = client.workflows.versions.upsert(version)
    assert created.workflow_external_id == "wf"
    assert [t.type for t in created.workflow_definition.tasks] == ["function", "transformation"]
    assert created.workflow_definition.hash_

    got = client.workflows.versions.retrieve(WorkflowVersionId("wf", "1"))
    assert got is not None
    assert got.workflow_definition.tasks[1].depends_on == ["load"]
    assert client.workflows.versions.retrieve(WorkflowVersionId("wf", "2")) is None

    emu.add_workflow_version("other", "3", [{"externalId": "t", "type": "cdf"}])
    assert {(v.workflow_external_id, v.version) for v in client.workflows.versions.list()} == {
        ("wf", "1"),
        ("other", "3"),
    }
    assert [v.version for v in client.workflows.versions.list(["other"])] == ["3"]
    assert list(client.workflows.versions.list([("wf", "2")])) == []


def test_upsert_replaces_and_keeps_created_time(emu: CdfEmulator, token: str) -> None:
    first = call(emu, "POST", "/workflows/versions", _version_body("wf", "1", [FN_TASK]), token=token)
    assert first.status == 200
    two = [
        FN_TASK,
        {"externalId": "cdf", "type": "cdf", "parameters": {"cdfRequest": {"resourcePath": "/x", "method": "GET"}}},
    ]
    second = call(emu, "POST", "/workflows/versions", _version_body("wf", "1", two), token=token)
    one, again = first.body["items"][0], second.body["items"][0]
    assert again["createdTime"] == one["createdTime"]
    assert again["workflowDefinition"]["hash"] != one["workflowDefinition"]["hash"]
    assert len(again["workflowDefinition"]["tasks"]) == 2


@pytest.mark.parametrize(
    "task",
    [
        {"externalId": "t", "type": "lambda", "parameters": {}},
        {"externalId": "t", "type": "function", "parameters": {}},
        {"externalId": "t", "type": "function", "parameters": {"function": {}}, "retries": 11},
        {"externalId": "t", "type": "function", "parameters": {"function": {}}, "onFailure": "ignore"},
        {"externalId": "t", "type": "function", "parameters": {"function": {}}, "dependsOn": [{"externalId": "x"}]},
        {"externalId": " t", "type": "function", "parameters": {"function": {}}},
    ],
)
def test_upsert_rejects_bad_tasks(emu: CdfEmulator, token: str, task: dict[str, object]) -> None:
    reply = call(emu, "POST", "/workflows/versions", _version_body("wf", "1", [task]), token=token)
    assert reply.status == 400
    assert emu.get_workflow_version("wf", "1") is None


def test_upsert_takes_one_version_per_request(emu: CdfEmulator, token: str) -> None:
    one = _version_body("wf", "1", [FN_TASK])["items"]
    two = _version_body("wf", "2", [FN_TASK])["items"]
    assert call(emu, "POST", "/workflows/versions", {"items": one + two}, token=token).status == 400
    assert call(emu, "POST", "/workflows/versions", {"items": []}, token=token).status == 400


def test_upsert_rejects_duplicate_task_ids_and_too_many_tasks(emu: CdfEmulator, token: str) -> None:
    reply = call(emu, "POST", "/workflows/versions", _version_body("wf", "1", [FN_TASK, FN_TASK]), token=token)
    assert reply.status == 400
    many = [{**FN_TASK, "externalId": f"t{i}"} for i in range(201)]
    assert call(emu, "POST", "/workflows/versions", _version_body("wf", "1", many), token=token).status == 400


def test_byids_answers_known_versions_and_refuses_unknown(emu: CdfEmulator, token: str) -> None:
    emu.add_workflow_version("wf", "1", [{"externalId": "t", "type": "function"}])
    ok = call(
        emu, "POST", "/workflows/versions/byids", {"items": [{"workflowExternalId": "wf", "version": "1"}]}, token=token
    )
    assert ok.status == 200
    assert ok.body["items"][0]["workflowDefinition"]["tasks"][0]["type"] == "function"
    body = {"items": [{"workflowExternalId": "wf", "version": "1"}, {"workflowExternalId": "wf", "version": "9"}]}
    missing = call(emu, "POST", "/workflows/versions/byids", body, token=token)
    assert missing.status == 400
    assert missing.body["error"]["missing"] == [{"workflowExternalId": "wf", "version": "9"}]


def test_list_pages_with_cursor(emu: CdfEmulator, token: str) -> None:
    for i in range(5):
        emu.add_workflow_version("wf", str(i), [{"externalId": "t", "type": "function"}])
    seen: list[str] = []
    body: dict[str, object] = {"limit": 2}
    while True:
        reply = call(emu, "POST", "/workflows/versions/list", body, token=token)
        assert reply.status == 200
        seen += [v["version"] for v in reply.body["items"]]
        if "nextCursor" not in reply.body:
            break
        body = {"limit": 2, "cursor": reply.body["nextCursor"]}
    assert seen == ["0", "1", "2", "3", "4"]
    assert call(emu, "POST", "/workflows/versions/list", {"limit": 1001}, token=token).status == 400
    assert call(emu, "POST", "/workflows/versions/list", {"cursor": "nonsense"}, token=token).status == 400


def test_seeding_registers_or_reuses_the_version(emu: CdfEmulator) -> None:
    execution = emu.seed_execution("wf", "1", "FAILED")
    version = emu.get_workflow_version("wf", "1")
    assert version is not None
    assert version["workflowDefinition"] == execution["workflowDefinition"]

    emu.add_workflow_version(
        "etl",
        "2",
        [
            {"externalId": "extract", "type": "function"},
            {"externalId": "shape", "type": "transformation", "dependsOn": [{"externalId": "extract"}]},
        ],
    )
    seeded = emu.seed_execution("etl", "2", "FAILED", reason="boom")
    tasks = {t["externalId"]: (t["taskType"], t["status"]) for t in seeded["executedTasks"]}
    assert tasks == {"extract": ("function", "COMPLETED"), "shape": ("transformation", "FAILED")}
    registered = emu.get_workflow_version("etl", "2")
    assert registered is not None
    assert seeded["workflowDefinition"] == registered["workflowDefinition"]


def test_version_endpoints_need_their_capabilities(emu: CdfEmulator) -> None:
    emu.add_client(LIMITED_ID, LIMITED_SECRET, [WORKFLOW_READ])
    token = emu.issue_token(LIMITED_ID)
    assert call(emu, "POST", "/workflows/versions", _version_body("wf", "1", [FN_TASK]), token=token).status == 403
    assert call(emu, "POST", "/workflows/versions/list", {}, token=token).status == 200


# --- capabilities at runtime -----------------------------------------------------------------------


def _acls(inspection: dict[str, object]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for cap in inspection["capabilities"]:  # type: ignore[attr-defined]
        (acl,) = [k for k in cap if k != "projectScope"]
        out[acl] = cap[acl]
    return out


def test_capabilities_granted_and_revoked_at_runtime(emu: CdfEmulator) -> None:
    emu.add_client(LIMITED_ID, LIMITED_SECRET, [WORKFLOW_READ])
    token = emu.issue_token(LIMITED_ID)

    def inspect() -> dict[str, Any]:
        body: dict[str, Any] = call(emu, "GET", "/api/v1/token/inspect", token=token, project_path=False).body
        return body

    assert set(_acls(inspect())) == {"workflowOrchestrationAcl"}

    emu.grant_capabilities(LIMITED_ID, ["functionsAcl:RUN", SESSIONS_CREATE])
    acls = _acls(inspect())
    assert acls["functionsAcl"] == {"actions": ["RUN"], "scope": {"all": {}}}
    assert "sessionsAcl" in acls
    assert call(emu, "POST", "/sessions", {"items": [{"tokenExchange": True}]}, token=token).status == 200

    emu.revoke_capabilities(LIMITED_ID, ["sessionsAcl:CREATE"])
    assert "sessionsAcl" not in _acls(inspect())
    assert call(emu, "POST", "/sessions", {"items": [{"tokenExchange": True}]}, token=token).status == 403


def test_scopes_show_in_cdf_shape(emu: CdfEmulator) -> None:
    emu.add_client(LIMITED_ID, LIMITED_SECRET, ["rawACL:READ"], scopes={"rawAcl": {"datasetScope": {"ids": [7]}}})
    token = emu.issue_token(LIMITED_ID)
    acls = _acls(call(emu, "GET", "/api/v1/token/inspect", token=token, project_path=False).body)
    assert acls["rawAcl"]["scope"] == {"datasetScope": {"ids": [7]}}
    emu.set_capability_scope(LIMITED_ID, "rawAcl", None)
    acls = _acls(call(emu, "GET", "/api/v1/token/inspect", token=token, project_path=False).body)
    assert acls["rawAcl"]["scope"] == {"all": {}}
    with pytest.raises(ValueError, match="scope of rawAcl"):
        emu.set_capability_scope(LIMITED_ID, "rawAcl", {"everything": {}})


# --- a retried task needs its capability ----------------------------------------------------------


def test_retried_function_task_fails_when_the_principal_lacks_functions_run(emu: CdfEmulator) -> None:
    emu.enforce_task_capabilities = True
    emu.add_client(LIMITED_ID, LIMITED_SECRET, [WORKFLOW_READ, WORKFLOW_WRITE, SESSIONS_CREATE])
    client = make_client(emu, LIMITED_ID, LIMITED_SECRET)
    execution = emu.seed_execution(
        "wf", "1", "FAILED", tasks=[{"externalId": "call-fn", "taskType": "function", "status": "FAILED"}]
    )

    answer = client.workflows.executions.retry(execution["id"])
    assert answer.status == "running"  # the retry itself is accepted
    after = emu.get_execution(execution["id"])
    assert after is not None
    assert after["status"] == "FAILED"
    assert "missing capability functionsAcl:RUN" in after["reasonForIncompletion"]
    assert "403" in after["executedTasks"][0]["reasonForIncompletion"]

    emu.grant_capabilities(LIMITED_ID, ["functionsAcl:RUN"])
    assert client.workflows.executions.retry(execution["id"]).status == "running"
    again = emu.get_execution(execution["id"])
    assert again is not None
    assert again["status"] == "RUNNING"


def test_task_capabilities_are_not_checked_unless_asked(emu: CdfEmulator) -> None:
    emu.add_client(LIMITED_ID, LIMITED_SECRET, [WORKFLOW_READ, WORKFLOW_WRITE, SESSIONS_CREATE])
    client = make_client(emu, LIMITED_ID, LIMITED_SECRET)
    execution = emu.seed_execution("wf", "1", "FAILED")
    client.workflows.executions.retry(execution["id"])
    after = emu.get_execution(execution["id"])
    assert after is not None
    assert after["status"] == "RUNNING"


def test_cdf_task_needs_no_named_capability(emu: CdfEmulator) -> None:
    emu.enforce_task_capabilities = True
    emu.add_client(LIMITED_ID, LIMITED_SECRET, [WORKFLOW_READ, WORKFLOW_WRITE, SESSIONS_CREATE])
    client = make_client(emu, LIMITED_ID, LIMITED_SECRET)
    execution = emu.seed_execution(
        "wf", "1", "FAILED", tasks=[{"externalId": "req", "taskType": "cdf", "status": "FAILED"}]
    )
    client.workflows.executions.retry(execution["id"])
    after = emu.get_execution(execution["id"])
    assert after is not None
    assert after["status"] == "RUNNING"
