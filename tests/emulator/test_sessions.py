"""Sessions: client credentials, token exchange and one-shot token exchange nonces."""

from __future__ import annotations

import pytest
from cognite.client import CogniteClient
from cognite.client.data_classes import ClientCredentials
from cognite.client.exceptions import CogniteAPIError

from emulator import CdfEmulator
from tests.emulator.support import ADMIN_ID, ADMIN_SECRET, READER_ID, READER_SECRET, call, make_token_client


def test_client_credentials_session(emu: CdfEmulator, client: CogniteClient) -> None:
    session = client.iam.sessions.create(session_type="CLIENT_CREDENTIALS")
    dumped = session.dump()
    assert dumped["type"] == "CLIENT_CREDENTIALS"
    assert dumped["status"] == "READY"
    assert dumped["clientId"] == ADMIN_ID
    assert isinstance(dumped["id"], int)
    assert dumped["nonce"] in emu.issued_nonces
    assert emu.requests[-1].body == {"items": [{"clientId": ADMIN_ID, "clientSecret": ADMIN_SECRET}]}


def test_session_for_other_client_credentials(emu: CdfEmulator, client: CogniteClient) -> None:
    session = client.iam.sessions.create(ClientCredentials(READER_ID, READER_SECRET))
    assert session.dump()["clientId"] == READER_ID


@pytest.mark.parametrize(
    ("session_type", "item"),
    [("TOKEN_EXCHANGE", {"tokenExchange": True}), ("ONESHOT_TOKEN_EXCHANGE", {"oneshotTokenExchange": True})],
)
def test_token_exchange_sessions(emu: CdfEmulator, session_type: str, item: dict[str, bool]) -> None:
    function_client = make_token_client(emu, emu.issue_token(ADMIN_ID))
    session = function_client.iam.sessions.create(session_type=session_type)  # type: ignore[arg-type]
    dumped = session.dump()
    assert dumped["type"] == session_type
    assert "clientId" not in dumped
    assert emu.requests[-1].body == {"items": [item]}
    assert emu.requests[-1].client_id == ADMIN_ID


def test_token_client_retry_uses_token_exchange(emu: CdfEmulator) -> None:
    execution = emu.seed_execution()
    function_client = make_token_client(emu, emu.issue_token(ADMIN_ID))
    assert function_client.workflows.executions.retry(execution["id"]).status == "running"
    assert emu.requests_matching("POST", "/sessions$")[-1].body == {"items": [{"tokenExchange": True}]}


def test_nonces_are_unique(emu: CdfEmulator) -> None:
    token = emu.issue_token(ADMIN_ID)
    items = []
    for _ in range(5):
        reply = call(emu, "POST", "/sessions", {"items": [{"tokenExchange": True}]}, token=token)
        assert reply.status == 200
        items += reply.body["items"]
    assert len({item["nonce"] for item in items}) == 5
    assert len({item["id"] for item in items}) == 5


@pytest.mark.parametrize("count", [0, 2, 1000])
def test_sessions_create_takes_exactly_one_item(emu: CdfEmulator, count: int) -> None:
    # The API reference of "Create sessions": items, "Required array length: 1 element".
    token = emu.issue_token(ADMIN_ID)
    before = len(emu.issued_nonces)
    reply = call(emu, "POST", "/sessions", {"items": [{"tokenExchange": True}] * count}, token=token)
    assert reply.status == 400
    assert "exactly one" in reply.body["error"]["message"]
    assert len(emu.issued_nonces) == before


@pytest.mark.parametrize(
    "body",
    [
        {"items": [{"clientId": ADMIN_ID, "clientSecret": "wrong"}]},
        {"items": [{"clientId": "nobody", "clientSecret": "x"}]},
        {"items": [{"clientId": ADMIN_ID}]},
        {"items": [{"tokenExchange": False}]},
        {"items": [{}]},
        {"items": []},
        {"items": "x"},
        {},
    ],
)
def test_bad_session_requests_are_400(emu: CdfEmulator, body: dict[str, object]) -> None:
    reply = call(emu, "POST", "/sessions", body, token=emu.issue_token(ADMIN_ID))
    assert reply.status == 400
    assert reply.body["error"]["code"] == 400


def test_bad_client_credentials_through_sdk(emu: CdfEmulator, client: CogniteClient) -> None:
    with pytest.raises(CogniteAPIError) as info:
        client.iam.sessions.create(ClientCredentials(ADMIN_ID, "wrong"))
    assert info.value.code == 400
    assert "invalid client credentials" in info.value.message


# --- chained sessions: a token issued for a session cannot exchange itself again ------------------


@pytest.mark.parametrize("session_type", ["TOKEN_EXCHANGE", "ONESHOT_TOKEN_EXCHANGE"])
def test_session_token_cannot_create_token_exchange_session(emu: CdfEmulator, session_type: str) -> None:
    function_client = make_token_client(emu, emu.issue_session_token(ADMIN_ID))
    with pytest.raises(CogniteAPIError) as raised:
        function_client.iam.sessions.create(session_type=session_type)  # type: ignore[arg-type]
    assert raised.value.code == 403
    assert "chained sessions are limited to one level" in raised.value.message
    assert emu.requests_matching("POST", "/sessions$")[-1].status == 403


def test_session_token_still_makes_client_credentials_sessions(emu: CdfEmulator) -> None:
    function_client = make_token_client(emu, emu.issue_session_token(ADMIN_ID))
    session = function_client.iam.sessions.create(ClientCredentials(READER_ID, READER_SECRET))
    assert session.dump()["type"] == "CLIENT_CREDENTIALS"
    assert function_client.iam.token.inspect().subject == ADMIN_ID  # the token itself works elsewhere
