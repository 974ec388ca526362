"""The emulator's rate limit: requests per second and requests at once, answered 429 with Retry-After."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from cognite.client import CogniteClient, global_config

from emulator import CdfEmulator, Fault
from tests.emulator.support import ADMIN_ID, Reply, call


@pytest.fixture
def token(emu: CdfEmulator) -> str:
    return emu.issue_token(ADMIN_ID)


def _list(emu: CdfEmulator, token: str) -> Reply:
    return call(emu, "POST", "/workflows/executions/list", {"limit": 1}, token=token)


def test_off_by_default_and_after_reset(emu: CdfEmulator, token: str) -> None:
    assert all(_list(emu, token).status == 200 for _ in range(20))
    emu.set_rate_limit(requests_per_second=0.01, burst=1)
    assert _list(emu, token).status == 200
    assert _list(emu, token).status == 429
    emu.reset()
    assert all(_list(emu, token).status == 200 for _ in range(20))
    assert emu.throttled_count == 0


def test_requests_over_the_rate_get_429_with_retry_after(emu: CdfEmulator, token: str) -> None:
    # A bucket of 3 that refills at one request every 10 s: three pass at once, the next ones wait.
    emu.set_rate_limit(requests_per_second=0.1, burst=3)
    replies = [_list(emu, token) for _ in range(5)]
    assert [r.status for r in replies] == [200, 200, 200, 429, 429]
    throttled = replies[3]
    assert throttled.headers["retry-after"] == "10"
    assert throttled.body["error"]["code"] == 429
    assert emu.throttled_count == 2
    assert [r.status for r in emu.requests_matching("POST", "/list$")] == [200, 200, 200, 429, 429]


def test_the_bucket_refills(emu: CdfEmulator, token: str) -> None:
    emu.set_rate_limit(requests_per_second=20, burst=1)
    assert _list(emu, token).status == 200
    time.sleep(0.1)  # two tokens' worth of refill, capped at the bucket's one
    assert _list(emu, token).status == 200


def test_a_throttled_request_changes_nothing(emu: CdfEmulator, token: str) -> None:
    execution = emu.seed_execution("wf", "1", "FAILED")
    nonce = call(emu, "POST", "/sessions", {"items": [{"tokenExchange": True}]}, token=token).body["items"][0]["nonce"]
    emu.set_rate_limit(requests_per_second=0.01, burst=1)
    assert _list(emu, token).status == 200  # uses the one token
    retry = call(
        emu, "POST", f"/workflows/executions/{execution['id']}/retry", {"authentication": {"nonce": nonce}}, token=token
    )
    assert retry.status == 429
    assert emu.retry_count(execution["id"]) == 0
    emu.set_rate_limit()  # off
    again = call(
        emu, "POST", f"/workflows/executions/{execution['id']}/retry", {"authentication": {"nonce": nonce}}, token=token
    )
    assert again.status == 200  # the nonce was not used up by the 429


def test_the_token_endpoint_is_not_limited(emu: CdfEmulator) -> None:
    emu.set_rate_limit(requests_per_second=0.01, burst=1)
    for _ in range(3):
        emu_token = call(
            emu,
            "POST",
            "/oauth2/token",
            raw=b"grant_type=client_credentials&client_id=emu-test-admin&client_secret=emu-test-admin-secret",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            project_path=False,
        )
        assert emu_token.status == 200


def test_requests_over_the_concurrency_limit_get_429(emu: CdfEmulator, token: str) -> None:
    emu.set_rate_limit(max_concurrent=2)
    emu.add_fault(Fault(path_regex=r"/list$", latency=2.0, times=2))  # the first two are held up 2 s
    held: list[Reply] = []
    threads = [threading.Thread(target=lambda: held.append(_list(emu, token))) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while emu.rate_limited_in_flight < 2:
        assert time.monotonic() < deadline, "the two held requests never arrived"
        time.sleep(0.01)
    third = call(emu, "GET", "/raw/dbs", token=token)
    assert third.status == 429
    assert third.headers["retry-after"] == "1"
    for thread in threads:
        thread.join(timeout=10)
    assert [r.status for r in held] == [200, 200]
    assert emu.rate_limited_in_flight == 0
    assert call(emu, "GET", "/raw/dbs", token=token).status == 200


@pytest.fixture
def patient_sdk() -> Iterator[None]:
    """SDK retries that back off for real (up to 1 s), so a throttled call waits for the bucket."""
    before = global_config.max_retry_backoff
    global_config.max_retry_backoff = 1
    yield
    global_config.max_retry_backoff = before


@pytest.mark.usefixtures("patient_sdk")
def test_the_sdk_retries_through_the_limit(emu: CdfEmulator, client: CogniteClient) -> None:
    ids = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(6)]
    emu.set_rate_limit(requests_per_second=10, burst=2)
    for execution_id in ids:
        assert client.workflows.executions.retrieve_detailed(execution_id) is not None
    assert emu.throttled_count > 0
