"""Workflow executions: shapes, retrieve, list with filters and cursors, retry, cancel and run."""

from __future__ import annotations

import time
import uuid

import pytest
from cognite.client import CogniteClient
from cognite.client.data_classes import ClientCredentials
from cognite.client.data_classes.workflows import WorkflowVersionId
from cognite.client.exceptions import CogniteAPIError, CogniteNotFoundError

from emulator import CdfEmulator
from tests.emulator.support import ADMIN_ID, ADMIN_SECRET, call


@pytest.fixture
def token(emu: CdfEmulator) -> str:
    return emu.issue_token(ADMIN_ID)


def _nonce(emu: CdfEmulator, token: str) -> str:
    reply = call(emu, "POST", "/sessions", {"items": [{"tokenExchange": True}]}, token=token)
    assert reply.status == 200
    return str(reply.body["items"][0]["nonce"])


def _retry(emu: CdfEmulator, token: str, execution_id: str, nonce: str):
    return call(
        emu, "POST", f"/workflows/executions/{execution_id}/retry", {"authentication": {"nonce": nonce}}, token=token
    )


# --- seeding and shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "last_task"),
    [
        ("FAILED", "FAILED"),
        ("TIMED_OUT", "TIMED_OUT"),
        ("TERMINATED", "CANCELED"),
        ("RUNNING", "IN_PROGRESS"),
        ("COMPLETED", "COMPLETED"),
    ],
)
def test_seed_default_tasks_follow_status(emu: CdfEmulator, status: str, last_task: str) -> None:
    execution = emu.seed_execution("wf", "1", status)
    assert uuid.UUID(execution["id"]).version == 4
    assert uuid.UUID(execution["engineExecutionId"]).version == 4
    assert execution["status"] == status
    assert [t["status"] for t in execution["executedTasks"]] == ["COMPLETED", last_task]
    if status == "RUNNING":
        assert "endTime" not in execution
        assert "reasonForIncompletion" not in execution
    elif status == "COMPLETED":
        assert "reasonForIncompletion" not in execution
    else:
        assert execution["endTime"] >= execution["startTime"]
        assert execution["reasonForIncompletion"] == "task failed"
    assert emu.get_execution(execution["id"]) == execution


def test_detailed_shape_as_the_sdk_reads_it(emu: CdfEmulator, client: CogniteClient) -> None:
    seeded = emu.seed_execution(
        "nightly",
        "3",
        "FAILED",
        reason="boom",
        created_time=1_730_000_000_000,
        metadata={"team": "data"},
        input={"a": 1},
    )
    detailed = client.workflows.executions.retrieve_detailed(seeded["id"])
    assert detailed is not None
    assert detailed.id == seeded["id"]
    assert detailed.workflow_external_id == "nightly"
    assert detailed.version == "3"
    assert detailed.status == "failed"
    assert detailed.created_time == 1_730_000_000_000
    assert detailed.reason_for_incompletion == "boom"
    assert detailed.metadata == {"team": "data"}
    assert detailed.input == {"a": 1}
    assert [t.external_id for t in detailed.workflow_definition.tasks] == ["task-1", "task-2"]
    assert [t.status for t in detailed.executed_tasks] == ["completed", "failed"]
    assert detailed.executed_tasks[0].task_type == "function"
    raw = call(emu, "GET", f"/workflows/executions/{seeded['id']}", token=emu.issue_token(ADMIN_ID)).body
    assert set(raw) >= {
        "id",
        "workflowExternalId",
        "version",
        "status",
        "engineExecutionId",
        "createdTime",
        "startTime",
        "endTime",
        "reasonForIncompletion",
        "metadata",
        "input",
        "workflowDefinition",
        "executedTasks",
    }
    assert set(raw["workflowDefinition"]) == {"hash", "description", "tasks"}
    assert set(raw["executedTasks"][1]) >= {
        "id",
        "externalId",
        "status",
        "taskType",
        "input",
        "output",
        "startTime",
        "endTime",
        "reasonForIncompletion",
    }


def test_seed_with_explicit_tasks_and_id(emu: CdfEmulator) -> None:
    execution_id = str(uuid.uuid4())
    execution = emu.seed_execution(
        "wf",
        "1",
        "FAILED",
        execution_id=execution_id,
        tasks=[
            {"externalId": "extract", "status": "COMPLETED"},
            {"externalId": "notify", "status": "FAILED", "onFailure": "skipTask"},
            {"externalId": "load", "status": "FAILED_WITH_TERMINAL_ERROR", "reasonForIncompletion": "disk"},
            {"externalId": "dyn-child", "status": "TIMED_OUT", "parentTaskExternalId": "load"},
        ],
    )
    assert execution["id"] == execution_id
    definition = {t["externalId"]: t for t in execution["workflowDefinition"]["tasks"]}
    assert set(definition) == {"extract", "notify", "load"}
    assert definition["notify"]["onFailure"] == "skipTask"
    tasks = {t["externalId"]: t for t in execution["executedTasks"]}
    assert tasks["load"]["reasonForIncompletion"] == "disk"
    assert tasks["dyn-child"]["parentTaskExternalId"] == "load"
    with pytest.raises(ValueError, match="already exists"):
        emu.seed_execution(execution_id=execution_id)
    with pytest.raises(ValueError, match="status"):
        emu.seed_execution(status="EXPLODED")


def test_unknown_id_is_404_or_configured_400(emu: CdfEmulator, client: CogniteClient) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(CogniteNotFoundError):
        client.workflows.executions.retrieve_detailed(missing)
    emu.unknown_execution_status = 400
    assert client.workflows.executions.retrieve_detailed(missing) is None
    reply = call(emu, "GET", f"/workflows/executions/{missing}", token=emu.issue_token(ADMIN_ID))
    assert reply.status == 400
    assert reply.body["error"]["message"] == f"Workflow execution {missing} not found"
    emu.reset()
    assert emu.unknown_execution_status == 404


# --- list -----------------------------------------------------------------------------------------


def test_list_pages_through_everything_newest_first(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = emu.seed_many(2_500, workflow_external_id="big")
    emu.seed_many(30, workflow_external_id="other")
    listed = client.workflows.executions.list(workflow_version_ids=[("big", "1")], limit=None)
    assert [e.id for e in listed] == list(reversed(ids))
    pages = emu.requests_matching("POST", r"/workflows/executions/list$")
    assert len(pages) == 3  # the SDK asks for 1000 at a time
    assert all(p.status == 200 for p in pages)
    assert "cursor" not in pages[0].body
    assert pages[1].body["cursor"]


def test_list_raw_cursor_walk(emu: CdfEmulator, token: str) -> None:
    ids = set(emu.seed_many(250))
    seen: list[str] = []
    cursor = None
    while True:
        body: dict[str, object] = {"filter": {"status": ["FAILED"]}, "limit": 100}
        if cursor:
            body["cursor"] = cursor
        reply = call(emu, "POST", "/workflows/executions/list", body, token=token)
        assert reply.status == 200
        seen.extend(item["id"] for item in reply.body["items"])
        for item in reply.body["items"]:
            assert "executedTasks" not in item
            assert "workflowDefinition" not in item
            assert "engineExecutionId" in item
        cursor = reply.body.get("nextCursor")
        if not cursor:
            break
    assert len(seen) == 250
    assert set(seen) == ids


def test_list_cursor_is_stable_when_executions_are_added(emu: CdfEmulator, token: str) -> None:
    first = emu.seed_many(10)
    page1 = call(emu, "POST", "/workflows/executions/list", {"filter": {}, "limit": 5}, token=token).body
    emu.seed_many(5)  # newer ones: they must not shift the next page
    page2 = call(
        emu,
        "POST",
        "/workflows/executions/list",
        {"filter": {}, "limit": 5, "cursor": page1["nextCursor"]},
        token=token,
    ).body
    assert [i["id"] for i in page1["items"] + page2["items"]] == list(reversed(first))
    assert "nextCursor" not in page2


def test_list_filters(emu: CdfEmulator, client: CogniteClient) -> None:
    t0 = 1_700_000_000_000
    a1 = emu.seed_execution("a", "1", "FAILED", created_time=t0)
    a2 = emu.seed_execution("a", "2", "TIMED_OUT", created_time=t0 + 1000)
    b1 = emu.seed_execution("b", "1", "COMPLETED", created_time=t0 + 2000)
    b2 = emu.seed_execution("b", "1", "TERMINATED", created_time=t0 + 3000)
    ex = client.workflows.executions

    def ids(result: object) -> list[str]:
        return [e.id for e in result]  # type: ignore[attr-defined]

    assert ids(ex.list(workflow_version_ids=[("a", "1")])) == [a1["id"]]
    assert ids(ex.list(workflow_version_ids=[WorkflowVersionId("a")])) == [a2["id"], a1["id"]]
    assert ids(ex.list(workflow_version_ids=[("a", "2"), ("b", "1")])) == [b2["id"], b1["id"], a2["id"]]
    assert ids(ex.list(statuses=["failed", "timed_out", "terminated"])) == [b2["id"], a2["id"], a1["id"]]
    assert ids(ex.list(created_time_start=t0 + 1000, created_time_end=t0 + 2000)) == [b1["id"], a2["id"]]
    assert ids(ex.list(created_time_start=t0 + 3001)) == []
    assert ids(ex.list(created_time_end=t0 - 1)) == []
    assert ids(
        ex.list(workflow_version_ids=[WorkflowVersionId("b")], statuses=["completed"], created_time_end=t0 + 2000)
    ) == [b1["id"]]


@pytest.mark.parametrize(
    "body",
    [
        {"limit": 1001},
        {"limit": 0},
        {"limit": "10"},
        {"cursor": "definitely-not-a-cursor"},
        {"cursor": "eyJrIjoicmF3cm93IiwibyI6MCwiZSI6bnVsbH0"},  # a RAW cursor
        {"filter": {"status": ["EXPLODED"]}},
        {"filter": {"unknownField": 1}},
        {"filter": {"workflowFilters": [{"version": "1"}]}},
        {"filter": {"createdTimeStart": -1}},
        {"filter": []},
        {"sort": "x"},
    ],
)
def test_list_rejects_bad_requests(emu: CdfEmulator, token: str, body: dict[str, object]) -> None:
    reply = call(emu, "POST", "/workflows/executions/list", body, token=token)
    assert reply.status == 400, reply.body
    assert reply.body["error"]["code"] == 400


# --- retry ----------------------------------------------------------------------------------------


def test_retry_through_sdk(emu: CdfEmulator, client: CogniteClient) -> None:
    execution = emu.seed_execution(status="FAILED")
    result = client.workflows.executions.retry(execution["id"])
    assert result.status == "running"
    assert result.id == execution["id"]
    assert emu.retry_count(execution["id"]) == 1
    session_call = emu.requests_matching("POST", "/sessions$")[-1]
    assert session_call.body == {"items": [{"clientId": ADMIN_ID, "clientSecret": ADMIN_SECRET}]}
    retry_call = emu.requests_matching("POST", "/retry$")[-1]
    assert retry_call.body["authentication"]["nonce"] in emu.issued_nonces


def test_retry_answer_and_state(emu: CdfEmulator, token: str) -> None:
    execution = emu.seed_execution(
        status="FAILED",
        tasks=[
            {"externalId": "a", "status": "COMPLETED"},
            {"externalId": "b", "status": "FAILED"},
            {"externalId": "c", "status": "FAILED_WITH_TERMINAL_ERROR"},
            {"externalId": "d", "status": "CANCELED"},
            {"externalId": "e", "status": "TIMED_OUT"},
            {"externalId": "opt", "status": "FAILED", "onFailure": "skipTask"},
            {"externalId": "s", "status": "SKIPPED"},
        ],
    )
    reply = _retry(emu, token, execution["id"], _nonce(emu, token))
    assert reply.status == 200
    answer = reply.body
    assert answer["status"] == "RUNNING"
    assert answer["engineExecutionId"] == execution["engineExecutionId"]
    assert "endTime" not in answer
    assert "reasonForIncompletion" not in answer
    assert "executedTasks" not in answer
    after = emu.get_execution(execution["id"])
    assert after is not None
    statuses = {t["externalId"]: t["status"] for t in after["executedTasks"]}
    assert statuses == {
        "a": "COMPLETED",
        "b": "IN_PROGRESS",
        "c": "IN_PROGRESS",
        "d": "IN_PROGRESS",
        "e": "IN_PROGRESS",
        "opt": "FAILED",
        "s": "SKIPPED",
    }
    reset = next(t for t in after["executedTasks"] if t["externalId"] == "b")
    assert "endTime" not in reset
    assert "reasonForIncompletion" not in reset
    assert after["status"] == "RUNNING"
    assert emu.retry_count(execution["id"]) == 1


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "TERMINATED"])
def test_retryable_statuses(emu: CdfEmulator, token: str, status: str) -> None:
    execution = emu.seed_execution(status=status)
    assert _retry(emu, token, execution["id"], _nonce(emu, token)).status == 200
    after = emu.get_execution(execution["id"])
    assert after is not None
    assert [t["status"] for t in after["executedTasks"]] == ["COMPLETED", "IN_PROGRESS"]


@pytest.mark.parametrize("status", ["RUNNING", "COMPLETED"])
def test_retry_refused_for_running_and_completed(emu: CdfEmulator, token: str, status: str) -> None:
    execution = emu.seed_execution(status=status)
    nonce = _nonce(emu, token)
    reply = _retry(emu, token, execution["id"], nonce)
    assert reply.status == 400
    assert reply.body["error"]["message"] == f"Execution {execution['id']} cannot be retried: status is {status}"
    assert emu.retry_count(execution["id"]) == 0
    # a refused retry does not consume the nonce
    other = emu.seed_execution(status="FAILED")
    assert _retry(emu, token, other["id"], nonce).status == 200


def test_running_limit_is_off_by_default_and_after_reset(emu: CdfEmulator, token: str) -> None:
    for _ in range(3):
        emu.seed_execution(status="RUNNING")
    emu.max_running_executions = 3
    assert emu.max_running_executions == 3
    emu.reset()
    assert emu.max_running_executions is None
    for _ in range(3):
        emu.seed_execution(status="RUNNING")
    failed = emu.seed_execution(status="FAILED")
    assert _retry(emu, token, failed["id"], _nonce(emu, token)).status == 200


def test_a_retry_past_the_running_limit_gets_429_and_changes_nothing(emu: CdfEmulator, token: str) -> None:
    emu.max_running_executions = 2
    emu.seed_execution(status="RUNNING")
    first, second = emu.seed_execution(status="FAILED"), emu.seed_execution(status="TIMED_OUT")
    assert _retry(emu, token, first["id"], _nonce(emu, token)).status == 200
    nonce = _nonce(emu, token)
    refused = _retry(emu, token, second["id"], nonce)
    assert refused.status == 429
    assert refused.body["error"]["message"] == (
        "Too many concurrent workflow executions: the project runs at most 2 at once"
    )
    after = emu.get_execution(second["id"])
    assert after is not None
    assert after["status"] == "TIMED_OUT"
    assert emu.retry_count(second["id"]) == 0
    # Once one ends there is room again, and the refused request's nonce was not used up.
    emu.fail_execution(first["id"])
    assert _retry(emu, token, second["id"], nonce).status == 200


def test_a_run_past_the_running_limit_gets_429(emu: CdfEmulator, token: str) -> None:
    emu.seed_execution("wf", "1", "RUNNING")
    emu.max_running_executions = 1
    reply = call(
        emu, "POST", "/workflows/wf/versions/1/run", {"authentication": {"nonce": _nonce(emu, token)}}, token=token
    )
    assert reply.status == 429
    assert emu.running_count == 1


def test_retry_unknown_execution_is_404(emu: CdfEmulator, client: CogniteClient) -> None:
    with pytest.raises(CogniteNotFoundError):
        client.workflows.executions.retry(str(uuid.uuid4()))


def test_nonce_single_use(emu: CdfEmulator, token: str) -> None:
    a = emu.seed_execution()
    b = emu.seed_execution()
    nonce = _nonce(emu, token)
    assert _retry(emu, token, a["id"], nonce).status == 200
    reply = _retry(emu, token, b["id"], nonce)
    assert reply.status == 400
    assert reply.body["error"]["message"] == "Nonce has already been used"
    assert emu.retry_count(b["id"]) == 0


def test_nonce_unknown_and_expired(emu: CdfEmulator, token: str) -> None:
    execution = emu.seed_execution()
    reply = _retry(emu, token, execution["id"], "made-up")
    assert reply.status == 400
    assert reply.body["error"]["message"] == "Invalid or expired nonce"
    emu.nonce_ttl = 0.05
    nonce = _nonce(emu, token)
    time.sleep(0.1)
    reply = _retry(emu, token, execution["id"], nonce)
    assert reply.status == 400
    assert reply.body["error"]["message"] == "Invalid or expired nonce"
    assert call(emu, "POST", f"/workflows/executions/{execution['id']}/retry", {}, token=token).status == 400
    assert emu.retry_count(execution["id"]) == 0


def test_fail_again_then_retry_again(emu: CdfEmulator, token: str) -> None:
    execution = emu.seed_execution()
    assert _retry(emu, token, execution["id"], _nonce(emu, token)).status == 200
    emu.fail_execution(execution["id"], reason="again", task_status="TIMED_OUT")
    after = emu.get_execution(execution["id"])
    assert after is not None
    assert after["status"] == "FAILED"
    assert after["reasonForIncompletion"] == "again"
    assert [t["status"] for t in after["executedTasks"]] == ["COMPLETED", "TIMED_OUT"]
    assert _retry(emu, token, execution["id"], _nonce(emu, token)).status == 200
    assert emu.retry_count(execution["id"]) == 2
    emu.complete_execution(execution["id"])
    done = emu.get_execution(execution["id"])
    assert done is not None
    assert done["status"] == "COMPLETED"
    assert "reasonForIncompletion" not in done
    with pytest.raises(ValueError, match="not RUNNING"):
        emu.fail_execution(execution["id"])
    with pytest.raises(KeyError):
        emu.retry_count("nope")


def test_auto_fail_after_retry(emu: CdfEmulator, token: str) -> None:
    emu.auto_fail_after_retry = True
    execution = emu.seed_execution(end_time=1)
    reply = _retry(emu, token, execution["id"], _nonce(emu, token))
    assert reply.status == 200
    assert reply.body["status"] == "RUNNING"
    after = emu.get_execution(execution["id"])
    assert after is not None
    assert after["status"] == "FAILED"
    assert after["endTime"] > 1
    assert emu.retry_count(execution["id"]) == 1
    # it can be retried again, each time counted
    assert _retry(emu, token, execution["id"], _nonce(emu, token)).status == 200
    assert emu.retry_count(execution["id"]) == 2


# --- cancel and run ---------------------------------------------------------------------------------


def test_cancel(emu: CdfEmulator, client: CogniteClient) -> None:
    running = emu.seed_execution(status="RUNNING")
    result = client.workflows.executions.cancel(running["id"], reason="stop it")
    assert result.status == "terminated"
    after = emu.get_execution(running["id"])
    assert after is not None
    assert after["status"] == "TERMINATED"
    assert after["reasonForIncompletion"] == "stop it"
    assert [t["status"] for t in after["executedTasks"]] == ["COMPLETED", "CANCELED"]
    with pytest.raises(CogniteAPIError) as info:
        client.workflows.executions.cancel(running["id"], reason=None)
    assert info.value.code == 400
    with pytest.raises(CogniteNotFoundError):
        client.workflows.executions.cancel(str(uuid.uuid4()), reason=None)
    # a cancelled execution can be retried
    assert client.workflows.executions.retry(running["id"]).status == "running"


def test_run(emu: CdfEmulator, client: CogniteClient) -> None:
    emu.seed_execution("wf", "7", "FAILED")
    result = client.workflows.executions.run("wf", "7", input={"x": 1}, metadata={"k": "v"})
    assert result.status == "running"
    assert result.workflow_external_id == "wf"
    assert result.version == "7"
    assert result.metadata == {"k": "v"}
    stored = emu.get_execution(result.id)
    assert stored is not None
    assert stored["input"] == {"x": 1}
    assert [t["status"] for t in stored["executedTasks"]] == ["IN_PROGRESS"]
    assert emu.requests_matching("POST", r"/workflows/wf/versions/7/run$")[-1].status == 202
    emu.fail_execution(result.id)
    assert client.workflows.executions.retry(result.id).status == "running"


def test_run_with_client_credentials(emu: CdfEmulator, client: CogniteClient) -> None:
    emu.add_workflow_version("odd/name", "v 1", [{"externalId": "t", "type": "function"}])
    result = client.workflows.executions.run(
        "odd/name", "v 1", client_credentials=ClientCredentials(ADMIN_ID, ADMIN_SECRET)
    )
    assert result.workflow_external_id == "odd/name"
    assert result.version == "v 1"
    stored = emu.get_execution(result.id)
    assert stored is not None
    assert stored["workflowDefinition"] == emu.get_workflow_version("odd/name", "v 1")["workflowDefinition"]  # type: ignore[index]


def test_run_refuses_an_unknown_workflow_or_version_and_keeps_the_nonce(emu: CdfEmulator, token: str) -> None:
    emu.seed_execution("wf", "1", "FAILED")
    nonce = _nonce(emu, token)
    for path in ("/workflows/never-seen/versions/1/run", "/workflows/wf/versions/2/run"):
        reply = call(emu, "POST", path, {"authentication": {"nonce": nonce}}, token=token)
        assert reply.status == 404
    ok = call(emu, "POST", "/workflows/wf/versions/1/run", {"authentication": {"nonce": nonce}}, token=token)
    assert ok.status == 202


def test_run_input_is_limited_to_100_kb(emu: CdfEmulator, token: str) -> None:
    emu.seed_execution("wf", "1", "FAILED")
    big = {"blob": "x" * (100 * 1024)}
    reply = call(
        emu,
        "POST",
        "/workflows/wf/versions/1/run",
        {"authentication": {"nonce": _nonce(emu, token)}, "input": big},
        token=token,
    )
    assert reply.status == 400
    assert "100 KB" in reply.body["error"]["message"]


def test_cancel_reason_is_at_most_500_characters(emu: CdfEmulator, client: CogniteClient, token: str) -> None:
    running = emu.seed_execution("wf", "1", "RUNNING")
    path = f"/workflows/executions/{running['id']}/cancel"
    assert call(emu, "POST", path, {"reason": "x" * 501}, token=token).status == 400
    assert call(emu, "POST", path, {"reason": "x" * 500}, token=token).status == 200


def test_list_status_filter_is_upper_case_as_the_api_enum(emu: CdfEmulator, token: str) -> None:
    emu.seed_execution("wf", "1", "FAILED")
    assert (
        call(emu, "POST", "/workflows/executions/list", {"filter": {"status": ["failed"]}}, token=token).status == 400
    )
    reply = call(emu, "POST", "/workflows/executions/list", {"filter": {"status": ["FAILED"]}}, token=token)
    assert len(reply.body["items"]) == 1


def test_run_validates_nonce_and_metadata(emu: CdfEmulator, token: str) -> None:
    emu.seed_execution("wf", "1", "FAILED")
    reply = call(emu, "POST", "/workflows/wf/versions/1/run", {"authentication": {"nonce": "x"}}, token=token)
    assert reply.status == 400
    too_many = {f"k{i}": "v" for i in range(11)}
    body = {"authentication": {"nonce": _nonce(emu, token)}, "metadata": too_many}
    assert call(emu, "POST", "/workflows/wf/versions/1/run", body, token=token).status == 400
