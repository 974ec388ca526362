"""Extraction pipelines and their runs, through cognite-sdk's ``client.extraction_pipelines``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cognite.client import CogniteClient
from cognite.client.data_classes import ExtractionPipelineRunWrite, ExtractionPipelineWrite
from cognite.client.exceptions import CogniteAPIError, CogniteDuplicatedError, CogniteNotFoundError

from emulator import EXTRACTION_RUNS_WRITE, SESSIONS_CREATE, CdfEmulator
from tests.emulator.support import ADMIN_ID, ADMIN_SECRET, call, make_client

RUNNER_ID = "emu-test-runner"
RUNNER_SECRET = "emu-test-runner-secret"


@pytest.fixture
def runner(emu: CdfEmulator) -> CogniteClient:
    """A client that may report runs and nothing else about pipelines."""
    emu.add_client(RUNNER_ID, RUNNER_SECRET, [EXTRACTION_RUNS_WRITE, SESSIONS_CREATE])
    return make_client(emu, RUNNER_ID, RUNNER_SECRET)


def _admin_with_extpipes(emu: CdfEmulator) -> None:
    emu.grant_capabilities(
        ADMIN_ID,
        [
            "extractionPipelinesAcl:READ",
            "extractionPipelinesAcl:WRITE",
            "extractionRunsAcl:READ",
            "extractionRunsAcl:WRITE",
        ],
    )


@pytest.fixture
def admin(emu: CdfEmulator, client: CogniteClient) -> Iterator[CogniteClient]:
    """The all-capabilities client, with the extraction pipeline capabilities too (taken back after)."""
    _admin_with_extpipes(emu)
    yield client
    emu.add_client(ADMIN_ID, ADMIN_SECRET)


def test_create_and_retrieve_a_pipeline(emu: CdfEmulator, admin: CogniteClient) -> None:
    created = admin.extraction_pipelines.create(
        ExtractionPipelineWrite(
            external_id="workflow-retry",
            name="Workflow retry",
            data_set_id=42,
            schedule="*/15 * * * *",
            contacts=[],
        )
    )
    assert created.external_id == "workflow-retry"
    assert created.data_set_id == 42
    assert isinstance(created.id, int)
    got = admin.extraction_pipelines.retrieve(external_id="workflow-retry")
    assert got is not None
    assert got.schedule == "*/15 * * * *"
    assert admin.extraction_pipelines.retrieve(external_id="nope") is None
    with pytest.raises(CogniteDuplicatedError):
        admin.extraction_pipelines.create(ExtractionPipelineWrite("workflow-retry", "again", data_set_id=1))


def test_pipeline_fields_are_validated(emu: CdfEmulator, admin: CogniteClient) -> None:
    token = emu.issue_token(ADMIN_ID)
    for item in (
        {"externalId": "p", "name": "p"},  # no dataSetId
        {"externalId": "p", "name": "x" * 141, "dataSetId": 1},
        {"externalId": "x" * 256, "name": "p", "dataSetId": 1},
        {"externalId": "p", "name": "p", "dataSetId": 1, "surprise": True},
    ):
        assert call(emu, "POST", "/extpipes", {"items": [item]}, token=token).status == 400


def test_report_and_list_runs(emu: CdfEmulator, admin: CogniteClient, runner: CogniteClient) -> None:
    emu.add_extraction_pipeline("workflow-retry")
    runner.extraction_pipelines.runs.create(
        ExtractionPipelineRunWrite(extpipe_external_id="workflow-retry", status="success", message="retried 3")
    )
    runner.extraction_pipelines.runs.create(
        ExtractionPipelineRunWrite(extpipe_external_id="workflow-retry", status="failure", message="gave up on 1")
    )
    runner.extraction_pipelines.runs.create(
        ExtractionPipelineRunWrite(extpipe_external_id="workflow-retry", status="seen")
    )

    runs = admin.extraction_pipelines.runs.list(external_id="workflow-retry", limit=None)  # GET
    assert [r.status for r in runs] == ["seen", "failure", "success"]  # newest first
    failures = admin.extraction_pipelines.runs.list(external_id="workflow-retry", statuses=["failure"])  # POST list
    assert [r.message for r in failures] == ["gave up on 1"]
    found = admin.extraction_pipelines.runs.list(external_id="workflow-retry", message_substring="retried")
    assert [r.status for r in found] == ["success"]
    assert [r["status"] for r in emu.extraction_pipeline_runs("workflow-retry")] == ["success", "failure", "seen"]

    pipeline = admin.extraction_pipelines.retrieve(external_id="workflow-retry")
    assert pipeline is not None
    assert pipeline.last_failure is not None
    assert pipeline.last_seen is not None
    assert pipeline.last_message == "gave up on 1"


def test_runs_list_pages_with_cursor(emu: CdfEmulator, admin: CogniteClient) -> None:
    emu.add_extraction_pipeline("p")
    token = emu.issue_token(ADMIN_ID)
    for i in range(5):
        run = {"items": [{"externalId": "p", "status": "seen", "createdTime": 1000 + i}]}
        assert call(emu, "POST", "/extpipes/runs", run, token=token).status == 201
    times: list[int] = []
    body: dict[str, object] = {"filter": {"externalId": "p"}, "limit": 2}
    while True:
        reply = call(emu, "POST", "/extpipes/runs/list", body, token=token)
        times += [r["createdTime"] for r in reply.body["items"]]
        if "nextCursor" not in reply.body:
            break
        body = {**body, "cursor": reply.body["nextCursor"]}
    assert times == [1004, 1003, 1002, 1001, 1000]
    assert (
        call(emu, "POST", "/extpipes/runs/list", {"filter": {"externalId": "p"}, "limit": 1001}, token=token).status
        == 400
    )


@pytest.mark.parametrize(
    "item",
    [
        {"externalId": "p", "status": "ok"},
        {"externalId": "p", "status": "success", "message": "x" * 1001},
        {"externalId": "p", "status": "success", "createdTime": -1},
        {"status": "success"},
        {"extpipeExternalId": "p", "status": "success"},  # the SDK's attribute name, not the wire field
    ],
)
def test_bad_runs_are_refused(emu: CdfEmulator, admin: CogniteClient, item: dict[str, object]) -> None:
    emu.add_extraction_pipeline("p")
    token = emu.issue_token(ADMIN_ID)
    assert call(emu, "POST", "/extpipes/runs", {"items": [item]}, token=token).status == 400
    assert emu.extraction_pipeline_runs("p") == []


def test_a_message_of_1000_characters_is_accepted(emu: CdfEmulator, runner: CogniteClient) -> None:
    emu.add_extraction_pipeline("p")
    runner.extraction_pipelines.runs.create(
        ExtractionPipelineRunWrite(extpipe_external_id="p", status="failure", message="x" * 1000)
    )
    assert len(emu.extraction_pipeline_runs("p")[0]["message"]) == 1000


def test_run_for_an_unknown_pipeline_is_refused(emu: CdfEmulator, runner: CogniteClient) -> None:
    with pytest.raises(CogniteNotFoundError) as raised:
        runner.extraction_pipelines.runs.create(
            ExtractionPipelineRunWrite(extpipe_external_id="ghost", status="success")
        )
    assert raised.value.not_found == [{"externalId": "ghost"}]


def test_runs_need_extraction_runs_write(emu: CdfEmulator, admin: CogniteClient) -> None:
    emu.add_extraction_pipeline("p")
    emu.revoke_capabilities(ADMIN_ID, ["extractionRunsAcl:WRITE"])
    with pytest.raises(CogniteAPIError) as raised:
        admin.extraction_pipelines.runs.create(ExtractionPipelineRunWrite(extpipe_external_id="p", status="success"))
    assert raised.value.code == 403
    assert "extractionRunsAcl:WRITE" in raised.value.message
