"""Secrets never leave: no token, client secret or nonce in logs, results or exception messages."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from tests.support.leaks import CapturingHandler, find_leaks
from workflow_retry.cdf import ClientCredentials, Nonce

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}


def test_nonces_and_client_secrets_do_not_show_in_reprs() -> None:
    assert "abc123nonce" not in repr(Nonce("abc123nonce"))
    assert "abc123nonce" not in str(Nonce("abc123nonce"))
    assert "hunter2-secret" not in repr(ClientCredentials("id", "hunter2-secret"))


@pytest.mark.usefixtures("fast_env")
def test_no_secret_in_logs_results_or_errors_across_outcomes_and_faults(
    emu: CdfEmulator, client: CogniteClient, function_client: CogniteClient
) -> None:
    capture = CapturingHandler()
    root = logging.getLogger()
    root.addHandler(capture)
    outputs: list[str] = []
    try:
        ok = emu.seed_many(3, status="FAILED")
        running = emu.seed_execution("wf", "1", "RUNNING")["id"]
        payloads = [
            {"executionIds": [*ok, running, str(uuid.uuid4()), "bad-id"]},
            {"executionId": emu.seed_execution("wf", "1", "FAILED")["id"], "dryRun": True},
        ]
        for payload in payloads:
            outputs.append(json.dumps(handler.handle(payload, client, SECRETS)))
        outputs.append(json.dumps(handler.handle({"executionIds": emu.seed_many(2)}, function_client)))

        emu.add_fault(Fault(method="POST", path_regex=r"/retry$", statuses=[503], apply_then_fail=True))
        emu.add_fault(Fault(method="POST", path_regex=r"/sessions$", statuses=[400, 500, 0, 0, 0, 0]))
        outputs.append(json.dumps(handler.handle({"executionIds": emu.seed_many(3)}, client, SECRETS)))

        emu.add_client("no-rights", "no-rights-secret-0123", capabilities=[])
        for bad_secrets in ({"client-id": FUNCTION_CLIENT_ID}, {"client-id": "no-rights", "client-secret": "x" * 20}):
            try:
                handler.handle({"executionId": ok[0]}, client, bad_secrets)
            except Exception as exc:
                outputs.append(f"{exc!r} {exc}")
            else:
                outputs.append("no error")
    finally:
        root.removeHandler(capture)

    assert emu.issued_nonces, "the scenario must have issued nonces to look for"
    secrets_to_find = [FUNCTION_CLIENT_SECRET, "no-rights-secret-0123", *emu.issued_tokens, *emu.issued_nonces]
    assert find_leaks([*capture.texts, *outputs], secrets_to_find) == []
    assert len(capture.texts) > 10, "the scan must have seen the logs"
