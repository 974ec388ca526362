"""Bulk seeding, large lists and many concurrent requests stay fast (generous sanity bounds only)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from cognite.client import CogniteClient

from emulator import CdfEmulator
from tests.emulator.support import ADMIN_ID, call


def test_seed_50k_and_list_one_page(emu: CdfEmulator, client: CogniteClient) -> None:
    start = time.monotonic()
    ids = emu.seed_many(50_000, workflow_external_id="bulk")
    assert len(set(ids)) == 50_000
    assert emu.execution_count == 50_000
    page = client.workflows.executions.list(workflow_version_ids=[("bulk", "1")], statuses=["failed"], limit=1000)
    assert len(page) == 1000
    assert page[0].id == ids[-1]
    # the last page of a filter that matches only one old execution is also quick
    oldest = emu.get_execution(ids[0])
    assert oldest is not None
    only = client.workflows.executions.list(created_time_end=oldest["createdTime"], limit=10)
    assert [e.id for e in only] == [ids[0]]
    assert time.monotonic() - start < 30


def test_many_concurrent_requests(emu: CdfEmulator) -> None:
    ids = emu.seed_many(100)
    token = emu.issue_token(ADMIN_ID)

    def get(i: int) -> int:
        return call(emu, "GET", f"/workflows/executions/{ids[i % 100]}", token=token).status

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(get, range(250)))
    assert statuses == [200] * 250
    assert len(emu.requests) == 250


def test_max_in_flight_shows_concurrency(emu: CdfEmulator) -> None:
    token = emu.issue_token(ADMIN_ID)
    emu.latency = 0.2
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: call(emu, "GET", "/raw/dbs", token=token).status, range(8)))
    assert statuses == [200] * 8
    assert emu.max_in_flight >= 2
    emu.reset()
    assert emu.max_in_flight == 0
