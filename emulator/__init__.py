"""A CDF API emulator: a real HTTP server on loopback that the real cognite-sdk talks to.

It serves the OAuth token endpoint, token inspection (capabilities granted or revoked at runtime),
sessions, workflow versions (upsert, retrieve, byids, list), workflow executions (get, list, retry,
cancel, run), RAW, and extraction pipelines with their runs, in CDF's JSON shapes; it records every
request and injects faults.  One module per API resource: ``workflows``, ``executions``,
``sessions``, ``raw``, ``extpipes`` (``state`` composes them).  What it enforces, and its sources:
docs/emulator-fidelity.md ::

    from emulator import CdfEmulator, Fault

    with CdfEmulator(project="test-project") as emu:
        emu.add_client("my-client", "my-secret")
        execution = emu.seed_execution("wf", "1", "FAILED")
        emu.add_fault(Fault(path_regex=r"/retry$", statuses=[503]))
        ...  # a CogniteClient with base_url=emu.base_url and token_url=emu.token_url
"""

from emulator.auth import (
    DEFAULT_CAPABILITIES,
    EXTPIPES_READ,
    EXTPIPES_WRITE,
    EXTRACTION_RUNS_READ,
    EXTRACTION_RUNS_WRITE,
    RAW_READ,
    RAW_WRITE,
    SESSIONS_CREATE,
    WORKFLOW_READ,
    WORKFLOW_WRITE,
)
from emulator.faults import Fault
from emulator.server import CdfEmulator, RecordedRequest
from emulator.workflows import TASK_CAPABILITIES

__all__ = [
    "DEFAULT_CAPABILITIES",
    "EXTPIPES_READ",
    "EXTPIPES_WRITE",
    "EXTRACTION_RUNS_READ",
    "EXTRACTION_RUNS_WRITE",
    "RAW_READ",
    "RAW_WRITE",
    "SESSIONS_CREATE",
    "TASK_CAPABILITIES",
    "WORKFLOW_READ",
    "WORKFLOW_WRITE",
    "CdfEmulator",
    "Fault",
    "RecordedRequest",
]
