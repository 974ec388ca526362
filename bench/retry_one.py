"""Comparison 2: ``handle`` on one failed ID against the script a user would write, 20 ms per request.

The user's script::

    from cognite.client import CogniteClient
    client = CogniteClient(...)  # client credentials
    client.workflows.executions.retry(execution_id)

Both run warm in the same worker process with the same client (token fetched, connection open):
this measures the per-retry overhead; the cold path is comparison 1.
"""

from __future__ import annotations

import re
from typing import Any

from bench.emulated import LATENCY_SECONDS, EmulatedCdf
from bench.stats import median, paired_ratio, rounded
from bench.table import Row, at_most, info
from bench.worker import Worker

TARGET = 2.0
_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PROJECT_RE = re.compile(r"^/api/v1/projects/[^/]+")


def request_shape(method: str, path: str) -> str:
    """``POST /workflows/executions/{id}/retry``: a recorded request without project and ID."""
    return f"{method} {_ID_RE.sub('{id}', _PROJECT_RE.sub('', path))}"


def warm_up(cdf: EmulatedCdf, worker: Worker) -> None:
    """One call of each side before anything is timed (imports, RAW table creation, SDK semaphores).

    ``handle`` first: its first request is the worker's first, as in a fresh Function container.
    """
    first, second = cdf.seed_failed(2, "bench-warm-up")
    worker.call("handle", payload={"executionId": first})
    worker.call("script", ids=[second])


def compare_one_retry(cdf: EmulatedCdf, rounds: int) -> list[Row]:
    cdf.emu.latency = LATENCY_SECONDS
    seconds: dict[str, list[float]] = {"script": [], "handle": []}
    shapes: dict[str, list[str]] = {}
    answers: list[dict[str, Any]] = []
    with Worker(cdf.child_env()) as worker:
        warm_up(cdf, worker)
        for i in range(rounds):
            for side in ("script", "handle") if i % 2 == 0 else ("handle", "script"):
                execution_id = cdf.seed_failed(1, f"bench-one-{side}")[0]
                cdf.start_counting()
                if side == "script":
                    answer = worker.call("script", ids=[execution_id])
                    if answer["errors"]:
                        raise RuntimeError(f"the script failed: {answer['first_errors']}")
                else:
                    answer = worker.call("handle", payload={"executionId": execution_id})
                    if answer["counts"] != {"retried": 1}:
                        raise RuntimeError(f"handle did not retry the execution: {answer}")
                    answers.append(answer)
                seconds[side].append(answer["seconds"])
                shapes[side] = [request_shape(r.method, r.path) for r in cdf.api_requests()]
    ledger_on = all(a["cap_enforced"] for a in answers)
    ratio = paired_ratio(seconds["handle"], seconds["script"])
    label = "ledger on" if ledger_on else "no ledger: RETRY_LEDGER is none or the ledger has not landed"
    return [
        at_most(
            f"one retry: handle / the SDK script, 20 ms latency ({label})",
            ratio,
            TARGET,
            rounds=rounds,
            handle_seconds=rounded(seconds["handle"]),
            script_seconds=rounded(seconds["script"]),
            handle_median_seconds=round(median(seconds["handle"]), 4),
            script_median_seconds=round(median(seconds["script"]), 4),
            ledger_on=ledger_on,
        ),
        info(
            "one retry: HTTP requests, handle vs script",
            f"{len(shapes['handle'])} vs {len(shapes['script'])}",
            float(len(shapes["handle"])),
            handle_requests=shapes["handle"],
            script_requests=shapes["script"],
        ),
    ]
