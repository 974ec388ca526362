"""``RETRY_LEDGER=none``: an explicit choice to count nothing, told in every result."""

from __future__ import annotations

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}


@pytest.mark.usefixtures("fast_env")
def test_without_a_ledger_every_failure_is_retried_as_attempt_one_and_no_cap_is_claimed(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_LEDGER", "none")
    monkeypatch.setenv("RETRY_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("RETRY_COOLDOWN_SECONDS", "0")
    failed = emu.seed_execution("wf-no-ledger", "1", "FAILED")

    outcomes = []
    for _ in range(3):  # the execution fails again after each retry: nothing counts it
        [result] = handler.handle({"executionId": failed["id"]}, client, SECRETS)["results"]
        outcomes.append((result["outcome"], result["attempts"], result["capEnforced"]))
        emu.fail_execution(failed["id"], "the same passing error")

    assert outcomes == [("retried", 1, False)] * 3
    assert len(emu.requests_matching("POST", rf"/workflows/executions/{failed['id']}/retry$")) == 3
    assert emu.requests_matching("POST", r"/raw/dbs/") == []
