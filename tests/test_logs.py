"""The log of a Cognite Function call: what ``handle`` prints on stdout, read back as JSON lines.

Each test calls ``handler.handle`` against the CDF emulator and parses every stdout line (pytest's
``capfd``: the file descriptor the runtime keeps as the call's log). The suite runs the package's
loggers at DEBUG, so the secret checks here see the most talkative log there is.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import pytest
from cognite.client import CogniteClient

import handler
from emulator import CdfEmulator
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from workflow_retry.logs import JsonStdoutHandler

SECRETS = {"client-id": FUNCTION_CLIENT_ID, "client-secret": FUNCTION_CLIENT_SECRET}

pytestmark = pytest.mark.usefixtures("fast_env", "_only_the_function_handler")


@pytest.fixture
def _only_the_function_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Cognite Function's process: no Powertools handler from an in-process Lambda test run earlier."""
    package = logging.getLogger("workflow_retry")
    monkeypatch.setattr(package, "handlers", [h for h in package.handlers if isinstance(h, JsonStdoutHandler)])


def json_lines(out: str) -> list[dict[str, Any]]:
    """Every stdout line as JSON (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def events(lines: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == event]


def test_each_result_is_one_json_line_with_the_call_and_execution_fields(
    emu: CdfEmulator, client: CogniteClient, capfd: pytest.CaptureFixture[str]
) -> None:
    failed = emu.seed_execution("wf-nightly", "3", "FAILED")
    capfd.readouterr()

    handler.handle({"executionIds": [failed["id"], "not an id"]}, client, SECRETS, {"call_id": "call-42"})

    lines = json_lines(capfd.readouterr().out)
    assert lines, "the call logged nothing on stdout"
    assert all(line["call_id"] == "call-42" for line in lines)
    assert all({"timestamp", "level", "logger", "message"} <= line.keys() for line in lines)
    retried, invalid = events(lines, "execution")
    assert retried["level"] == "INFO"
    assert retried["execution_id"] == failed["id"]
    assert (retried["workflow"], retried["version"]) == ("wf-nightly", "3")
    assert (retried["outcome"], retried["attempt"]) == ("retried", 1)
    assert retried["reason"].startswith("retried from the point of failure")
    assert retried["timestamp"].endswith("+00:00")
    assert (invalid["execution_id"], invalid["outcome"]) == ("not an id", "invalid")


def test_a_give_up_is_its_own_warning_line(
    emu: CdfEmulator, client: CogniteClient, capfd: pytest.CaptureFixture[str]
) -> None:
    emu.auto_fail_after_retry = True
    failed = emu.seed_execution("wf-night", "4", "FAILED")["id"]
    data = {"executionId": failed, "policy": {"maxAttempts": 1}}
    handler.handle(data, client, SECRETS, {"call_id": "call-1"})
    time.sleep(0.002)
    capfd.readouterr()

    handler.handle(data, client, SECRETS, {"call_id": "call-2"})

    lines = json_lines(capfd.readouterr().out)
    [give_up] = events(lines, "gave_up")
    assert give_up["level"] == "WARNING"
    assert give_up["call_id"] == "call-2"
    assert (give_up["execution_id"], give_up["workflow"], give_up["version"]) == (failed, "wf-night", "4")
    assert (give_up["outcome"], give_up["attempt"], give_up["max_attempts"]) == ("exhausted", 1, 1)
    assert give_up["last_reason"] == "task failed again after retry"
    [result] = events(lines, "execution")
    assert (result["outcome"], result["call_id"]) == ("exhausted", "call-2")


def test_warm_calls_log_each_event_once_with_their_own_call_id(
    emu: CdfEmulator, client: CogniteClient, capfd: pytest.CaptureFixture[str]
) -> None:
    first, second = (emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(2))
    capfd.readouterr()

    handler.handle({"executionId": first}, client, SECRETS, {"call_id": "warm-1"})
    handler.handle({"executionId": second}, client, SECRETS, {"call_id": "warm-2"})

    lines = events(json_lines(capfd.readouterr().out), "execution")
    assert [(line["execution_id"], line["call_id"]) for line in lines] == [(first, "warm-1"), (second, "warm-2")]
    package = logging.getLogger("workflow_retry")
    assert sum(isinstance(h, JsonStdoutHandler) for h in package.handlers) == 1


def test_calls_at_the_same_time_each_carry_their_own_call_id(
    emu: CdfEmulator, client: CogniteClient, capfd: pytest.CaptureFixture[str]
) -> None:
    ids = [emu.seed_execution("wf", "1", "FAILED")["id"] for _ in range(4)]
    capfd.readouterr()

    threads = [
        threading.Thread(target=handler.handle, args=({"executionId": i}, client, SECRETS, {"call_id": f"c-{i}"}))
        for i in ids
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = events(json_lines(capfd.readouterr().out), "execution")
    assert sorted((line["execution_id"], line["call_id"]) for line in lines) == sorted((i, f"c-{i}") for i in ids)


def test_no_secret_reaches_stdout_at_debug(
    emu: CdfEmulator, client: CogniteClient, capfd: pytest.CaptureFixture[str]
) -> None:
    assert logging.getLogger("workflow_retry").getEffectiveLevel() == logging.DEBUG  # set by tests/conftest.py
    failed = emu.seed_execution("wf", "1", "FAILED")["id"]
    capfd.readouterr()

    handler.handle({"executionIds": [failed, "bad"]}, client, SECRETS, {"call_id": "c"})

    out = capfd.readouterr().out
    json_lines(out)
    secrets = [FUNCTION_CLIENT_SECRET, *emu.issued_tokens, *emu.issued_nonces]
    assert len(secrets) >= 3  # a token and a nonce were issued for this call
    assert not [s for s in secrets if s in out]


def test_a_refused_call_logs_its_reason_as_a_json_error_line(
    emu: CdfEmulator, client: CogniteClient, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()

    with pytest.raises(Exception, match="no execution ID"):
        handler.handle({"hello": "world"}, client, SECRETS, {"call_id": "c-refused"})

    [line] = [line for line in json_lines(capfd.readouterr().out) if line["level"] == "ERROR"]
    assert line["call_id"] == "c-refused"
    assert "refused" in line["message"]
