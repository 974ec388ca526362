"""The CDF emulator the benchmarks run against, and how other processes reach it.

The emulator runs in the bench's own process; the measured code runs in child processes (a
worker, or one fresh interpreter per cold start), so the emulator's threads never compete with
it for the GIL: as with the real CDF, the server's work is not the client's.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from emulator import CdfEmulator, RecordedRequest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "bench-project"
CLIENT_ID = "bench-client"
LATENCY_SECONDS = 0.020
"""Latency added to every emulator request in the time comparisons (the issue's 20 ms)."""

# Variables of the parent's environment a child must not inherit: they would change what is measured.
_CLEARED_PREFIXES = ("RETRY_", "CDF_", "IDP_", "WEBHOOK", "IDEMPOTENCY_", "GIVE_UP_", "SNS_", "AWS_", "PYTHON")


@dataclass
class EmulatedCdf:
    """A started emulator with one registered client (all capabilities)."""

    emu: CdfEmulator
    client_secret: str

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[EmulatedCdf]:
        secret = secrets.token_urlsafe(24)
        with CdfEmulator(project=PROJECT) as emu:
            emu.add_client(CLIENT_ID, secret)
            yield cls(emu, secret)

    def child_env(self, **extra: str) -> dict[str, str]:
        """A clean environment for a child process: the Toolkit connection variables point at the emulator."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED_PREFIXES)}
        env.update(
            CDF_PROJECT=PROJECT,
            CDF_URL=self.emu.base_url,
            IDP_CLIENT_ID=CLIENT_ID,
            IDP_CLIENT_SECRET=self.client_secret,
            IDP_TOKEN_URL=self.emu.token_url,
            IDP_SCOPES=f"{self.emu.base_url}/.default",
            AWS_DEFAULT_REGION="eu-west-1",  # the Lambda path may build boto3 clients; none is called
        )
        env.update(extra)
        return env

    def seed_failed(self, n: int, workflow: str) -> list[str]:
        """``n`` FAILED executions of ``workflow`` version 1, created just now."""
        return self.emu.seed_many(n, workflow_external_id=workflow, version="1", status="FAILED")

    def start_counting(self) -> None:
        """Forget recorded requests and the in-flight high-water mark."""
        self.emu.clear_requests()
        self.emu.max_in_flight = 0

    def api_requests(self) -> list[RecordedRequest]:
        """Requests recorded since ``start_counting``, without the OAuth token requests."""
        return [r for r in self.emu.requests if not r.path.endswith("/oauth2/token")]
