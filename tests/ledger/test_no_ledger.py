"""``RETRY_LEDGER=none``: an explicit choice to count nothing, told in every result."""

from __future__ import annotations

import asyncio

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry.ledger import AttemptRecord, NoLedger

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


def test_the_none_ledger_lists_nothing_prunes_nothing_and_cannot_remember_a_give_up() -> None:
    ledger = NoLedger()
    record = AttemptRecord("exec-1", "wf", 0, None, None, 0)

    recent = asyncio.run(ledger.list_recent(0, 1_000, 10))

    assert (recent.records, recent.complete) == ((), True)
    assert asyncio.run(ledger.prune(1_000, 1_000)) == 0
    # Nothing records that a give-up was told, so it is told each time (never silently dropped).
    assert asyncio.run(ledger.record_outcome(record, "gave_up", 1_000)) is True
    assert asyncio.run(ledger.record_outcome(record, "gave_up", 2_000)) is True
