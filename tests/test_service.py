"""The attempt count around a retry that did not happen, end to end: ``handle`` against the emulator, RAW ledger.

An attempt is counted before the retry request goes out (a crash must still count it). When CDF
certainly did not act on it (no session, a 4xx refusal, throttled), the attempt is given back: what the
ledger holds afterwards, and what the next call decides from it, is what these tests look at.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}
RETRY_PATH = r"/workflows/executions/[^/]+/retry$"

pytestmark = pytest.mark.usefixtures("fast_env")


@pytest.fixture(autouse=True)
def _no_cooldown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_COOLDOWN_SECONDS", "0")
    monkeypatch.setenv("RETRY_COOLDOWN_MAX_SECONDS", "0")


def only(result: dict[str, Any]) -> dict[str, Any]:
    [item] = result["results"]
    return dict(item)


def ledger_row(emu: CdfEmulator, execution_id: str) -> dict[str, Any] | None:
    return emu.raw_rows("workflow_retry", "attempts").get(execution_id)


# (path, statuses, retryable); a Fault is built per test, as it consumes its statuses.
REFUSALS = [
    pytest.param(r"/sessions$", [403], False, id="session-refused"),
    pytest.param(r"/sessions$", [503] * 50, True, id="session-unavailable"),
    pytest.param(RETRY_PATH, [400], False, id="retry-refused"),
    pytest.param(RETRY_PATH, [429] * 50, True, id="retry-throttled"),
]


@pytest.mark.parametrize(("path", "statuses", "retryable"), REFUSALS)
def test_a_first_attempt_that_did_not_happen_is_given_back(
    emu: CdfEmulator, client: CogniteClient, path: str, statuses: list[int], retryable: bool
) -> None:
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.add_fault(Fault(method="POST", path_regex=path, statuses=list(statuses)))

    refused = only(handler.handle({"executionId": failed}, client, SECRETS))

    assert (refused["outcome"], refused["error"]["retryable"], refused["attempts"]) == ("failed", retryable, 0)
    assert ledger_row(emu, failed) is None
    assert emu.retry_count(failed) == 0
    emu.clear_faults()
    retried = only(handler.handle({"executionId": failed}, client, SECRETS))
    assert (retried["outcome"], retried["attempts"]) == ("retried", 1)
    assert "(attempt 1 of 3)" in retried["reason"]


@pytest.mark.parametrize(("path", "statuses", "retryable"), REFUSALS)
def test_a_later_attempt_that_did_not_happen_leaves_the_earlier_count(
    emu: CdfEmulator,
    client: CogniteClient,
    path: str,
    statuses: list[int],
    retryable: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RETRY_MAX_ATTEMPTS", "2")
    emu.auto_fail_after_retry = True  # the first retry fails again at once
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    first = only(handler.handle({"executionId": failed}, client, SECRETS))
    assert (first["outcome"], first["attempts"]) == ("retried", 1)
    row_after_first = ledger_row(emu, failed)
    time.sleep(0.002)  # the next failure ends after the first attempt's time
    emu.add_fault(Fault(method="POST", path_regex=path, statuses=list(statuses)))

    refused = only(handler.handle({"executionId": failed}, client, SECRETS))

    assert (refused["outcome"], refused["error"]["retryable"], refused["attempts"]) == ("failed", retryable, 1)
    assert ledger_row(emu, failed) == row_after_first
    emu.clear_faults()
    second = only(handler.handle({"executionId": failed}, client, SECRETS))
    assert (second["outcome"], second["attempts"]) == ("retried", 2)  # the cap still has room for it
    assert emu.retry_count(failed) == 2
