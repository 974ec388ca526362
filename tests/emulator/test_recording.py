"""Request recording: what was received, in order, and what was answered."""

from __future__ import annotations

import http.client
import threading
import time

from cognite.client import CogniteClient

from emulator import CdfEmulator, RecordedRequest
from tests.emulator.support import ADMIN_ID, call


def test_records_every_request_in_order(emu: CdfEmulator, client: CogniteClient) -> None:
    start = time.monotonic()
    execution = emu.seed_execution()
    client.workflows.executions.retrieve_detailed(execution["id"])
    client.workflows.executions.retry(execution["id"])
    recorded = emu.requests
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in recorded] == [
        ("POST", "token"),
        ("GET", execution["id"]),
        ("POST", "sessions"),
        ("POST", "retry"),
    ]
    assert all(isinstance(r, RecordedRequest) for r in recorded)
    assert [r.status for r in recorded] == [200, 200, 200, 200]
    times = [r.time for r in recorded]
    assert times == sorted(times)
    assert times[0] >= start
    get = recorded[1]
    assert get.body is None
    assert get.query == {}
    assert get.headers["cdf-version"]
    assert "x-cdp-sdk" in get.headers
    assert all(k == k.lower() for k in get.headers)
    assert get.client_id == ADMIN_ID
    assert recorded[0].client_id == ADMIN_ID


def test_requests_matching_and_clear(emu: CdfEmulator) -> None:
    token = emu.issue_token(ADMIN_ID)
    call(emu, "GET", "/raw/dbs?limit=5", token=token)
    call(emu, "POST", "/raw/dbs", {"items": [{"name": "d"}]}, token=token)
    call(emu, "GET", "/workflows/executions/x", token=token)
    assert [r.status for r in emu.requests_matching("GET")] == [200, 404]
    assert [r.method for r in emu.requests_matching(path_regex=r"/raw/dbs$")] == ["GET", "POST"]
    assert emu.requests_matching("post", r"/raw/")[0].body == {"items": [{"name": "d"}]}
    assert emu.requests_matching("GET", r"/raw/dbs$")[0].query == {"limit": ["5"]}
    snapshot = emu.requests
    emu.clear_requests()
    assert emu.requests == []
    assert len(snapshot) == 3


def test_reset_keeps_clients_and_tokens(emu: CdfEmulator) -> None:
    token = emu.issue_token(ADMIN_ID)
    emu.seed_execution()
    emu.latency = 0.5
    emu.reset()
    assert emu.latency == 0.0
    assert emu.requests == []
    assert emu.execution_count == 0
    reply = call(emu, "POST", "/workflows/executions/list", {}, token=token)
    assert reply.status == 200
    assert reply.body["items"] == []


def test_a_request_in_flight_across_a_reset_is_neither_applied_nor_recorded(emu: CdfEmulator) -> None:
    """A slow request of an earlier test must not land in the next test's state or records."""
    token = emu.issue_token(ADMIN_ID)
    emu.latency = 0.5
    outcome: list[object] = []

    def insert_slowly() -> None:
        try:
            outcome.append(
                call(
                    emu,
                    "POST",
                    "/raw/dbs/db/tables/t/rows?ensureParent=true",
                    {"items": [{"key": "k", "columns": {"from": "the earlier test"}}]},
                    token=token,
                ).status
            )
        except (ConnectionError, http.client.HTTPException) as exc:
            outcome.append(type(exc).__name__)

    sender = threading.Thread(target=insert_slowly)
    sender.start()
    time.sleep(0.2)  # the request has arrived and sleeps its latency
    emu.reset()
    sender.join(timeout=10)

    assert outcome
    assert outcome[0] != 201  # dropped, not answered as if applied
    assert emu.requests == []
    assert call(emu, "GET", "/raw/dbs", token=token).body["items"] == []
