"""The RAW ledger's race across processes (containers), which one process cannot close.

RAW has no conditional write: containers that read an execution's record before another container's
attempt lands can each send a retry. Within a container an execution is handled by one task at a time
(tests/aws/test_same_execution_in_one_batch.py), so each container adds at most one retry per race,
however many records of its batch name the execution. This test runs real processes, each a Lambda
container handling an SQS batch of 10 records of the same execution, all released at once against one
emulator whose executions fail again right after each retry (the worst case: CDF's "a RUNNING
execution is not retried" never helps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import CdfEmulator, Fault
from tests.conftest import FUNCTION_CLIENT_ID, FUNCTION_CLIENT_SECRET
from tests.ledger.race_child import PROTOCOL

ROOT = Path(__file__).resolve().parents[2]
LEDGER = ("workflow_retry", "attempts")
MAX_ATTEMPTS = 3
CONTAINERS = 3
RECORDS = 10


class Container:
    """A child process running tests/ledger/race_child.py."""

    def __init__(self, execution_id: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.ledger.race_child", execution_id],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        """The child's next protocol line (its container's log lines, also on stdout, are passed over)."""
        assert self.process.stdout is not None
        while True:
            text = self.process.stdout.readline()
            assert text, f"the child ended early (exit code {self.process.poll()})"
            if text.startswith(PROTOCOL):
                return text[len(PROTOCOL) :].strip()

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def answer(self) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self.line())
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def child_env(emu: CdfEmulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRY_", "IDEMPOTENCY", "WEBHOOK"))}
    env.update(
        {
            "CDF_PROJECT": emu.project,
            "CDF_URL": emu.base_url,
            "IDP_CLIENT_ID": FUNCTION_CLIENT_ID,
            "IDP_CLIENT_SECRET": FUNCTION_CLIENT_SECRET,
            "IDP_TOKEN_URL": emu.token_url,
            "RETRY_LEDGER": "raw",
            "RETRY_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "RETRY_COOLDOWN_SECONDS": "0",
            "RETRY_SDK_MAX_BACKOFF_SECONDS": "0",
            "RETRY_REQUEST_TIMEOUT_SECONDS": "10",
            "RETRY_DEADLINE_SECONDS": "30",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


@pytest.fixture
def containers(emu: CdfEmulator) -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.close()


def race_once(emu: CdfEmulator, containers: list[Container], execution_id: str) -> tuple[int, int, list[str]]:
    """Release every container at once on its batch; the retries CDF applied, the ledger's attempts, and
    the outcome of every record."""
    before = emu.retry_count(execution_id)
    for container in containers:
        container.go()
    answers = [c.answer() for c in containers]
    applied = emu.retry_count(execution_id) - before
    attempts = int(emu.raw_rows(*LEDGER)[execution_id]["attempts"])
    # No record failed: each retried, took a retry's result, or was deferred (it read the ledger after
    # another container's attempt and the execution before that retry: it comes back later). At most
    # one retry per container: its records of one execution wait for one task.
    outcomes = [outcome for answer in answers for outcome in answer["outcomes"]]
    assert len(outcomes) == CONTAINERS * RECORDS
    assert set(outcomes) <= {"retried", "skipped", "deferred", "exhausted"}, outcomes
    comes_back = sum(len(answer["answer"]["batchItemFailures"]) for answer in answers)
    assert comes_back == outcomes.count("deferred")
    assert outcomes.count("retried") == applied
    return applied, attempts, outcomes


@pytest.mark.slow
def test_containers_racing_on_one_execution_add_at_most_one_retry_each_per_attempt(
    emu: CdfEmulator, containers: list[Container]
) -> None:
    """Three containers, each given a batch of 10 records of the same execution at the same moment, four
    times over (no cooldown, the execution failing again at once): each round restarts the execution at
    most once per container, the ledger advances by at least one attempt a round, and nothing runs past
    the cap.

    Within each container the in-process guard keeps its 10 records to one retry; without it a round
    could apply up to 30. What remains is the race across containers that RAW cannot close: up to
    ``CONTAINERS - 1`` retries per attempt beyond what the ledger counts (docs/reliability.md)."""
    execution_id = emu.seed_execution("wf", "1", "FAILED")["id"]
    emu.auto_fail_after_retry = True
    # The retry request takes a while, so the containers' reads and writes overlap as they would in a race.
    emu.add_fault(Fault(method="POST", path_regex=r"/retry$", latency=0.2))
    containers.extend(Container(execution_id, child_env(emu)) for _ in range(CONTAINERS))
    assert [c.line() for c in containers] == ["ready"] * CONTAINERS

    per_round: list[tuple[int, int]] = []
    attempts = 0
    while attempts < MAX_ATTEMPTS:
        assert len(per_round) < MAX_ATTEMPTS, per_round  # every round counts at least one attempt
        applied, attempts, _ = race_once(emu, containers, execution_id)
        per_round.append((applied, attempts))
        # A round counts at least one attempt. It may count two when a container reads the execution
        # after another container's retry has run and failed again (a real new failure: a loaded
        # machine makes that ordering likelier, it is not a fault). It never passes the cap.
        assert attempts >= min(len(per_round), MAX_ATTEMPTS), per_round
        assert attempts <= MAX_ATTEMPTS, per_round
        assert applied <= CONTAINERS, per_round
    applied, attempts, _ = race_once(emu, containers, execution_id)
    per_round.append((applied, attempts))

    # The round after the cap applies nothing: the race can add retries to an attempt, never attempts.
    assert per_round[-1][0] == 0, per_round
    assert emu.retry_count(execution_id) <= CONTAINERS * MAX_ATTEMPTS
    # One session per retry request: the duplicates within a container made none.
    assert len(emu.requests_matching("POST", r"/sessions$")) == len(emu.requests_matching("POST", r"/retry$"))
