"""Comparisons 6 and 7: a batch five times bigger, and a batch over a big ledger, each in fresh interpreters.

6. Scale: ``handle`` on a batch of 1,000 failed executions against one of 200 (20 ms per request):
   the time per ID must stay flat (the time grows linearly) and the peak RSS must grow by at most
   10 MB (what the call keeps per ID).
7. Read-ahead memory: a batch of 200 against a RAW ledger holding 10,000 live rows, against the same
   batch on an empty ledger: the bulk read of the ledger must add at most 2 MB (it lists only the
   keys, one bounded page at a time, and bounds the executions read while it runs).

Each call runs in its own interpreter (``python -m bench.child batch PATH``), so its peak RSS is its
own; the emulator, holding every execution and row, stays in the bench's process.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench.emulated import LATENCY_SECONDS, EmulatedCdf
from bench.processes import ChildRun, run_python
from bench.stats import median, rounded
from bench.table import Row, at_most

LINEAR_TARGET = 1.2
"""Time per ID of the big batch / of the small one: 1.0 is linear (the big one fills its waves better)."""
SCALE_MEMORY_TARGET_MB = 10.0
READ_AHEAD_MEMORY_TARGET_MB = 2.0


def _batch(cdf: EmulatedCdf, ids: list[str], env: dict[str, str], timeout: float) -> ChildRun:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ids.json"
        path.write_text(json.dumps({"ids": ids}), encoding="utf-8")
        run = run_python(["-m", "bench.child", "batch", str(path)], env, timeout=timeout)
    retried = run.output.get("counts", {}).get("retried")
    if retried != len(ids):
        raise RuntimeError(f"a batch of {len(ids)} retried {retried}: {run.output.get('counts')}")
    return run


def _growth_mb(large: list[ChildRun], small: list[ChildRun]) -> float:
    return median([r.max_rss_mb for r in large]) - median([r.max_rss_mb for r in small])


def compare_scale(cdf: EmulatedCdf, small: int, large: int, runs: int) -> list[Row]:
    """A batch of ``large`` IDs against one of ``small``: time per ID and peak RSS."""
    cdf.emu.latency = LATENCY_SECONDS
    env = cdf.child_env()
    measured: dict[int, list[ChildRun]] = {small: [], large: []}
    requests: dict[int, list[int]] = {small: [], large: []}
    for i in range(runs):
        for n in (small, large) if i % 2 == 0 else (large, small):
            ids = cdf.seed_failed(n, f"bench-scale-{n}-{i}")
            cdf.start_counting()
            measured[n].append(_batch(cdf, ids, env, timeout=60 + n))
            requests[n].append(len(cdf.api_requests()))
    per_id = {n: median([r.output["seconds"] for r in runs_]) / n for n, runs_ in measured.items()}
    return [
        at_most(
            f"scale: batch of {large:,} vs {small:,}, time per ID (1.00x: linear)",
            per_id[large] / per_id[small],
            LINEAR_TARGET,
            runs=runs,
            small_seconds=rounded([r.output["seconds"] for r in measured[small]]),
            large_seconds=rounded([r.output["seconds"] for r in measured[large]]),
            small_ms_per_id=round(1000 * per_id[small], 2),
            large_ms_per_id=round(1000 * per_id[large], 2),
            small_requests_per_id=round(median(requests[small]) / small, 2),
            large_requests_per_id=round(median(requests[large]) / large, 2),
        ),
        at_most(
            f"scale: batch of {large:,} vs {small:,}, peak RSS growth",
            _growth_mb(measured[large], measured[small]),
            SCALE_MEMORY_TARGET_MB,
            unit=" MB",
            small_rss_mb=rounded([r.max_rss_mb for r in measured[small]], 1),
            large_rss_mb=rounded([r.max_rss_mb for r in measured[large]], 1),
        ),
    ]


def compare_read_ahead_memory(cdf: EmulatedCdf, batch: int, ledger_rows: int, runs: int) -> list[Row]:
    """A batch against a ledger of ``ledger_rows`` live rows, against the same batch on an empty ledger."""
    cdf.emu.latency = LATENCY_SECONDS
    now_ms = int(time.time() * 1000)
    columns = {"workflowExternalId": "bench-other", "attempts": 1, "lastAttemptAt": now_ms}
    columns |= {"lastOutcome": "retried", "expiresAt": now_ms // 1000 + 86_400}
    cdf.emu.seed_raw_rows("bench_ledger", "big", {f"other-{i:06d}": dict(columns) for i in range(ledger_rows)})
    sides = ("empty", "big")
    measured: dict[str, list[ChildRun]] = {side: [] for side in sides}
    for i in range(runs):
        for side in sides if i % 2 == 0 else sides[::-1]:
            table = "big" if side == "big" else f"empty-{i}"  # a new table each time: this batch's rows stay out
            env = cdf.child_env(RETRY_LEDGER_RAW_DATABASE="bench_ledger", RETRY_LEDGER_RAW_TABLE=table)
            ids = cdf.seed_failed(batch, f"bench-read-ahead-{side}-{i}")
            measured[side].append(_batch(cdf, ids, env, timeout=60 + batch))
    return [
        at_most(
            f"read-ahead memory: batch of {batch} over a ledger of {ledger_rows:,} rows vs an empty one, peak RSS",
            _growth_mb(measured["big"], measured["empty"]),
            READ_AHEAD_MEMORY_TARGET_MB,
            unit=" MB",
            runs=runs,
            empty_rss_mb=rounded([r.max_rss_mb for r in measured["empty"]], 1),
            big_rss_mb=rounded([r.max_rss_mb for r in measured["big"]], 1),
            empty_seconds=rounded([r.output["seconds"] for r in measured["empty"]]),
            big_seconds=rounded([r.output["seconds"] for r in measured["big"]]),
        )
    ]
