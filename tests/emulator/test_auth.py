"""Token endpoint, bearer tokens, project access and capability checks."""

from __future__ import annotations

import urllib.parse

import pytest
from cognite.client import CogniteClient
from cognite.client.exceptions import CogniteAPIError, CogniteOAuthError, CogniteProjectAccessError

from emulator import SESSIONS_CREATE, WORKFLOW_READ, WORKFLOW_WRITE, CdfEmulator
from tests.emulator.support import ADMIN_ID, ADMIN_SECRET, READER_ID, call, make_client, make_token_client


def _token_request(emu: CdfEmulator, client_id: str, secret: str, grant_type: str = "client_credentials"):
    form = urllib.parse.urlencode(
        {"grant_type": grant_type, "client_id": client_id, "client_secret": secret, "scope": "x/.default"}
    ).encode()
    return call(
        emu,
        "POST",
        "/oauth2/token",
        raw=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        project_path=False,
    )


def test_token_endpoint_issues_bearer_tokens(emu: CdfEmulator) -> None:
    reply = _token_request(emu, ADMIN_ID, ADMIN_SECRET)
    assert reply.status == 200
    assert reply.body["token_type"] == "Bearer"
    assert reply.body["expires_in"] == 3600
    assert reply.body["access_token"] in emu.issued_tokens
    assert "x-request-id" in reply.headers
    recorded = emu.requests_matching("POST", r"^/oauth2/token$")[-1]
    assert recorded.body["client_id"] == ADMIN_ID
    assert recorded.body["grant_type"] == "client_credentials"


def test_token_endpoint_rejects_bad_credentials(emu: CdfEmulator) -> None:
    assert _token_request(emu, ADMIN_ID, "wrong").status == 401
    reply = _token_request(emu, "nobody", "x")
    assert reply.status == 401
    assert reply.body["error"] == "invalid_client"
    assert _token_request(emu, ADMIN_ID, ADMIN_SECRET, grant_type="password").status == 400


def test_sdk_client_credentials_flow(emu: CdfEmulator, client: CogniteClient) -> None:
    inspection = client.iam.token.inspect()
    assert inspection.subject == ADMIN_ID
    assert [p.url_name for p in inspection.projects] == [emu.project]
    token_calls = emu.requests_matching("POST", "/oauth2/token")
    assert len(token_calls) == 1
    api_calls = emu.requests_matching("GET", "/token/inspect$")
    assert api_calls[-1].headers["authorization"].startswith("Bearer ")
    assert api_calls[-1].client_id == ADMIN_ID


def test_sdk_bad_secret_raises_oauth_error(emu: CdfEmulator) -> None:
    client = make_client(emu, ADMIN_ID, "not-the-secret")
    with pytest.raises(CogniteOAuthError, match="invalid_client"):
        client.workflows.executions.retrieve_detailed("00000000-0000-4000-8000-000000000000")


def test_missing_and_invalid_tokens_get_401(emu: CdfEmulator) -> None:
    reply = call(emu, "GET", "/workflows/executions/abc")
    assert reply.status == 401
    assert reply.body["error"]["code"] == 401
    assert call(emu, "GET", "/workflows/executions/abc", token="forged").status == 401
    assert call(emu, "GET", "/api/v1/token/inspect", token="forged", project_path=False).status == 401


def test_invalid_token_through_sdk_is_project_access_error(emu: CdfEmulator) -> None:
    client = make_token_client(emu, "not-a-valid-token")
    with pytest.raises(CogniteProjectAccessError):
        client.workflows.executions.retrieve_detailed("00000000-0000-4000-8000-000000000000")
    # the SDK asks token/inspect after a 401, and the emulator answers that one with 401 too
    assert [r.status for r in emu.requests_matching("GET", "/token/inspect$")] == [401]


def test_wrong_project_is_403(emu: CdfEmulator) -> None:
    token = emu.issue_token(ADMIN_ID)
    client = make_token_client(emu, token, project="other-project")
    with pytest.raises(CogniteAPIError) as info:
        client.workflows.executions.retrieve_detailed("00000000-0000-4000-8000-000000000000")
    assert info.value.code == 403


def test_missing_capability_is_403_naming_it(emu: CdfEmulator) -> None:
    execution = emu.seed_execution()
    reader = make_token_client(emu, emu.issue_token(READER_ID))
    assert reader.workflows.executions.retrieve_detailed(execution["id"]) is not None  # READ is enough here
    with pytest.raises(CogniteAPIError) as info:
        reader.workflows.executions.cancel(execution["id"], reason="x")
    assert info.value.code == 403
    assert WORKFLOW_WRITE in info.value.message
    with pytest.raises(CogniteAPIError) as info:
        reader.iam.sessions.create(session_type="TOKEN_EXCHANGE")
    assert info.value.code == 403
    assert SESSIONS_CREATE in info.value.message
    with pytest.raises(CogniteAPIError) as info:
        reader.raw.databases.list(limit=None)
    assert info.value.code == 403
    assert "rawACL:READ" in info.value.message


def test_write_without_read_cannot_get(emu: CdfEmulator) -> None:
    emu.add_client("writer-only", "w-secret", [WORKFLOW_WRITE])
    execution = emu.seed_execution()
    reply = call(emu, "GET", f"/workflows/executions/{execution['id']}", token=emu.issue_token("writer-only"))
    assert reply.status == 403
    assert WORKFLOW_READ in reply.body["error"]["message"]


def test_token_inspect_lists_capabilities(emu: CdfEmulator) -> None:
    reply = call(emu, "GET", "/api/v1/token/inspect", token=emu.issue_token(READER_ID), project_path=False)
    assert reply.status == 200
    assert reply.body["subject"] == READER_ID
    assert reply.body["projects"] == [{"projectUrlName": emu.project, "groups": []}]
    acls = {key for cap in reply.body["capabilities"] for key in cap if key != "projectScope"}
    assert acls == {"workflowOrchestrationAcl"}


def test_replacing_a_client_changes_capabilities_of_its_tokens(emu: CdfEmulator) -> None:
    emu.add_client("changing", "secret", [WORKFLOW_READ])
    token = emu.issue_token("changing")
    execution = emu.seed_execution()
    assert call(emu, "GET", f"/workflows/executions/{execution['id']}", token=token).status == 200
    emu.add_client("changing", "secret", [])
    assert call(emu, "GET", f"/workflows/executions/{execution['id']}", token=token).status == 403


def test_issue_token_for_unknown_client_raises(emu: CdfEmulator) -> None:
    with pytest.raises(KeyError):
        emu.issue_token("nobody")
    with pytest.raises(ValueError, match="capability"):
        emu.add_client("bad", "x", ["no-colon"])
