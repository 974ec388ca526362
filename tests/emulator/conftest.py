"""Fixtures for the emulator's own tests: one emulator for the session, emptied before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cognite.client import CogniteClient, global_config

from emulator import WORKFLOW_READ, CdfEmulator
from tests.emulator.support import ADMIN_ID, ADMIN_SECRET, READER_ID, READER_SECRET, make_client

global_config.disable_pypi_version_check = True


@pytest.fixture(scope="session")
def emulator() -> Iterator[CdfEmulator]:
    """The emulator shared by the session, with an all-capabilities client and a read-only one."""
    with CdfEmulator(project="test-project") as emu:
        emu.add_client(ADMIN_ID, ADMIN_SECRET)
        emu.add_client(READER_ID, READER_SECRET, [WORKFLOW_READ])
        yield emu


@pytest.fixture
def emu(emulator: CdfEmulator) -> Iterator[CdfEmulator]:
    """The session's emulator, reset before and after each test (clients are kept)."""
    emulator.reset()
    yield emulator
    emulator.reset()


@pytest.fixture(autouse=True)
def fast_sdk_retries() -> Iterator[None]:
    """SDK retries wait about 0.1 s instead of up to a minute."""
    before = global_config.max_retry_backoff
    global_config.max_retry_backoff = 0
    yield
    global_config.max_retry_backoff = before


@pytest.fixture
def client(emu: CdfEmulator) -> CogniteClient:
    """A CogniteClient with every capability, authenticated by client credentials."""
    return make_client(emu, ADMIN_ID, ADMIN_SECRET)
