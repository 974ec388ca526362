"""The suite-wide secret scan (tests/conftest.py) fails a run whose logs hold a secret, in one process and
with pytest-xdist's workers (each scans its own logs; the controller reports and fails the run)."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import register_secret

_PLANT = "WORKFLOW_RETRY_TEST_PLANT_A_LEAK"
_REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.environ.get(_PLANT) != "1", reason="run only by the child pytest below")
def test_a_planted_leak() -> None:
    secret = secrets.token_urlsafe(24)
    register_secret(secret)
    logging.getLogger("workflow_retry.planted").warning("the secret is %s", secret)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_secret_in_a_log_record_fails_the_whole_run(workers: list[str]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers, f"{__file__}::test_a_planted_leak"],
        cwd=_REPO,
        env={**os.environ, _PLANT: "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "1 passed" in run.stdout, run.stdout + run.stderr
    assert "SECRET LEAK: 1 log record(s)" in run.stdout, run.stdout
    assert "<SECRET>" in run.stdout
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout
