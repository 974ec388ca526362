"""Fault injection: status sequences, Retry-After, latency, dropped connections, apply-then-fail, chance."""

from __future__ import annotations

import http.client
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from cognite.client import CogniteClient
from cognite.client.exceptions import CogniteAPIError, CogniteConnectionError, CogniteRequestError

from emulator import CdfEmulator, Fault
from tests.emulator.support import ADMIN_ID, call

RETRY_PATH = r"/workflows/executions/[^/]+/retry$"


@pytest.fixture
def token(emu: CdfEmulator) -> str:
    return emu.issue_token(ADMIN_ID)


def _statuses(emu: CdfEmulator, path_regex: str) -> list[int]:
    return [r.status for r in emu.requests_matching(path_regex=path_regex)]


def test_429_with_retry_after_then_success(emu: CdfEmulator, client: CogniteClient, token: str) -> None:
    emu.seed_execution()
    fault = emu.add_fault(Fault(path_regex=r"/list$", statuses=[429, 429], retry_after=0.5))
    assert len(client.workflows.executions.list(statuses=["failed"])) == 1
    assert _statuses(emu, r"/list$") == [429, 429, 200]
    assert fault.applied == 2
    assert fault.exhausted
    emu.add_fault(Fault(path_regex=r"/list$", statuses=[429], retry_after=2))
    reply = call(emu, "POST", "/workflows/executions/list", {}, token=token)
    assert reply.status == 429
    assert reply.headers["retry-after"] == "2"
    assert reply.body["error"]["code"] == 429
    assert reply.headers["x-request-id"]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_transient_statuses_are_retried_by_the_sdk(emu: CdfEmulator, client: CogniteClient, status: int) -> None:
    execution = emu.seed_execution()
    emu.add_fault(Fault(method="GET", path_regex=r"/workflows/executions/", statuses=[status, status]))
    assert client.workflows.executions.retrieve_detailed(execution["id"]) is not None
    assert _statuses(emu, r"/workflows/executions/") == [status, status, 200]


def test_500_is_not_retried(emu: CdfEmulator, client: CogniteClient) -> None:
    execution = emu.seed_execution()
    emu.add_fault(Fault(path_regex=r"/workflows/executions/", statuses=[500]))
    with pytest.raises(CogniteAPIError) as info:
        client.workflows.executions.retrieve_detailed(execution["id"])
    assert info.value.code == 500
    assert info.value.x_request_id


def test_faulted_request_does_not_change_state(emu: CdfEmulator, client: CogniteClient) -> None:
    execution = emu.seed_execution()
    emu.add_fault(Fault(method="POST", path_regex=RETRY_PATH, statuses=[500]))
    with pytest.raises(CogniteAPIError):
        client.workflows.executions.retry(execution["id"])
    assert emu.retry_count(execution["id"]) == 0
    assert client.workflows.executions.retry(execution["id"]).status == "running"


def test_method_and_path_must_match(emu: CdfEmulator, token: str) -> None:
    fault = emu.add_fault(Fault(method="POST", path_regex=r"^/raw/dbs$", statuses=[503]))
    assert call(emu, "GET", "/raw/dbs", token=token).status == 200
    assert call(emu, "POST", "/raw/dbs/delete", {"items": [{"name": "x"}]}, token=token).status == 404
    assert fault.applied == 0
    assert call(emu, "POST", "/raw/dbs", {"items": [{"name": "x"}]}, token=token).status == 503
    assert call(emu, "POST", "/raw/dbs", {"items": [{"name": "x"}]}, token=token).status == 201


def test_global_latency_is_not_serialised(emu: CdfEmulator, token: str) -> None:
    emu.latency = 0.3
    start = time.monotonic()
    assert call(emu, "GET", "/raw/dbs", token=token).status == 200
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda _: call(emu, "GET", "/raw/dbs", token=token), range(10)))
    assert all(r.status == 200 for r in replies)
    assert time.monotonic() - start < 2.5  # ten requests in parallel, not 3 s one after another


def test_fault_latency_only_for_matching_requests(emu: CdfEmulator, token: str) -> None:
    fault = emu.add_fault(Fault(path_regex=r"/raw/dbs$", latency=0.3, times=2))
    start = time.monotonic()
    call(emu, "GET", "/workflows/executions/x", token=token)
    assert time.monotonic() - start < 0.3
    for _ in range(3):
        call(emu, "GET", "/raw/dbs", token=token)
    assert fault.applied == 2
    assert fault.exhausted


def test_dropped_connection_raw(emu: CdfEmulator, token: str) -> None:
    emu.add_fault(Fault(path_regex=r"/raw/dbs$", statuses=[0]))
    with pytest.raises(http.client.RemoteDisconnected):
        call(emu, "GET", "/raw/dbs", token=token)
    assert _statuses(emu, r"/raw/dbs$") == [0]
    assert call(emu, "GET", "/raw/dbs", token=token).status == 200


def test_dropped_connection_through_sdk(emu: CdfEmulator, client: CogniteClient) -> None:
    execution = emu.seed_execution()
    emu.add_fault(Fault(method="POST", path_regex=RETRY_PATH, statuses=[0]))
    # httpx reports a connection closed without an answer as RemoteProtocolError: the SDK does not retry it
    with pytest.raises(CogniteRequestError):
        client.workflows.executions.retry(execution["id"])
    assert _statuses(emu, RETRY_PATH) == [0]
    assert emu.retry_count(execution["id"]) == 0


def test_apply_then_fail_leaves_the_retry_applied(emu: CdfEmulator, client: CogniteClient) -> None:
    execution = emu.seed_execution()
    emu.add_fault(Fault(method="POST", path_regex=RETRY_PATH, statuses=[503], apply_then_fail=True))
    # the SDK retries the 503 with the same nonce, which the first (applied) request used up
    with pytest.raises(CogniteAPIError) as info:
        client.workflows.executions.retry(execution["id"])
    assert info.value.code == 400
    assert info.value.message == "Nonce has already been used"
    assert emu.retry_count(execution["id"]) == 1
    assert _statuses(emu, RETRY_PATH) == [503, 400]
    stored = emu.get_execution(execution["id"])
    assert stored is not None
    assert stored["status"] == "RUNNING"


def test_apply_then_fail_then_nonce_reuse(emu: CdfEmulator, client: CogniteClient) -> None:
    emu.auto_fail_after_retry = True
    execution = emu.seed_execution()
    emu.add_fault(Fault(method="POST", path_regex=RETRY_PATH, statuses=[503], apply_then_fail=True))
    with pytest.raises(CogniteAPIError) as info:
        client.workflows.executions.retry(execution["id"])
    assert info.value.message == "Nonce has already been used"
    assert emu.retry_count(execution["id"]) == 1


def test_apply_then_fail_with_dropped_answer(emu: CdfEmulator, client: CogniteClient) -> None:
    execution = emu.seed_execution()
    nonces_before = len(emu.issued_nonces)
    emu.add_fault(Fault(method="POST", path_regex=RETRY_PATH, statuses=[0], apply_then_fail=True))
    with pytest.raises(CogniteRequestError):
        client.workflows.executions.retry(execution["id"])
    assert emu.retry_count(execution["id"]) == 1
    assert len(emu.issued_nonces) == nonces_before + 1


def test_probability_is_seeded(emu: CdfEmulator, token: str) -> None:
    def pattern() -> list[int]:
        emu.clear_faults()
        emu.add_fault(Fault(path_regex=r"/raw/dbs$", statuses=[503], probability=0.5, seed=42))
        return [call(emu, "GET", "/raw/dbs", token=token).status for _ in range(40)]

    first = pattern()
    assert set(first) == {200, 503}
    assert 5 < first.count(503) < 35
    assert pattern() == first


def test_probability_with_times_limit(emu: CdfEmulator, token: str) -> None:
    fault = emu.add_fault(Fault(path_regex=r"/raw/dbs$", statuses=[502], probability=1.0, times=3))
    statuses = [call(emu, "GET", "/raw/dbs", token=token).status for _ in range(5)]
    assert statuses == [502, 502, 502, 200, 200]
    assert fault.exhausted


def test_first_matching_fault_with_something_left_wins(emu: CdfEmulator, token: str) -> None:
    emu.add_fault(Fault(path_regex=r"/raw/dbs$", statuses=[503]))
    emu.add_fault(Fault(statuses=[429, 504]))  # any path
    statuses = [call(emu, "GET", "/raw/dbs", token=token).status for _ in range(4)]
    assert statuses == [503, 429, 504, 200]


def test_low_status_entries_let_requests_through(emu: CdfEmulator, token: str) -> None:
    emu.add_fault(Fault(path_regex=r"/raw/dbs$", statuses=[503, 200, 503]))
    statuses = [call(emu, "GET", "/raw/dbs", token=token).status for _ in range(4)]
    assert statuses == [503, 200, 503, 200]


def test_fault_on_sessions_and_token_endpoint(emu: CdfEmulator, client: CogniteClient, token: str) -> None:
    emu.add_fault(Fault(path_regex=r"^/sessions$", statuses=[503]))
    assert call(emu, "POST", "/sessions", {"items": [{"tokenExchange": True}]}, token=token).status == 503
    emu.add_fault(Fault(path_regex=r"^/oauth2/token$", statuses=[503]))
    assert call(emu, "POST", "/oauth2/token", raw=b"grant_type=x", project_path=False).status == 503


def test_clear_faults(emu: CdfEmulator, token: str) -> None:
    emu.add_fault(Fault(statuses=[503] * 10))
    emu.clear_faults()
    assert call(emu, "GET", "/raw/dbs", token=token).status == 200


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="status"):
        Fault(statuses=[42])
    with pytest.raises(ValueError, match="probability"):
        Fault(probability=1.5, statuses=[503])
    with pytest.raises(ValueError, match="statuses"):
        Fault(probability=0.5)
    assert Fault().exhausted  # nothing to apply
    assert not Fault(latency=0.1).exhausted


def test_reset_connection_is_retried_by_the_sdk(emu: CdfEmulator, client: CogniteClient) -> None:
    execution = emu.seed_execution()
    emu.add_fault(Fault(method="GET", path_regex=r"/workflows/executions/", statuses=[0, 0], reset=True))
    assert client.workflows.executions.retrieve_detailed(execution["id"]) is not None
    assert _statuses(emu, r"/workflows/executions/") == [0, 0, 200]


def test_reset_connections_exhaust_connect_retries(emu: CdfEmulator, client: CogniteClient) -> None:
    execution = emu.seed_execution()
    emu.add_fault(Fault(method="GET", path_regex=r"/workflows/executions/", statuses=[0] * 10, reset=True))
    with pytest.raises(CogniteConnectionError):
        client.workflows.executions.retrieve_detailed(execution["id"])
    assert _statuses(emu, r"/workflows/executions/") == [0] * 4  # the first try and max_retries_connect=3


def test_reset_raw(emu: CdfEmulator, token: str) -> None:
    emu.add_fault(Fault(path_regex=r"/raw/dbs$", statuses=[0], reset=True))
    with pytest.raises(ConnectionResetError):
        call(emu, "GET", "/raw/dbs", token=token)
