"""Comparison 5: memory of a dry sweep over a small and a large window of failed executions.

Each sweep runs in a fresh interpreter (``python -m bench.child sweep WORKFLOW``) so its peak RSS
is its own; the emulator, holding every execution, stays in the bench's process. The growth from
the small window to the large one is what the sweep keeps per execution: it should stream pages,
not collect them.
"""

from __future__ import annotations

from bench.emulated import EmulatedCdf
from bench.processes import ChildRun, run_python
from bench.stats import median, rounded
from bench.table import Row, at_most, not_available

TARGET_MB = 25.0


def _label(small: int, large: int) -> str:
    return f"sweep memory: dry sweep of {large:,} vs {small:,} failed executions, peak RSS growth"


def compare_sweep_memory(cdf: EmulatedCdf, small: int, large: int, runs: int, *, available: bool) -> list[Row]:
    if not available:
        return [not_available(_label(small, large), f"<= {TARGET_MB:g} MB", "workflow_retry.sweep has not landed")]
    cdf.emu.latency = 0.0
    workflows = {small: "bench-sweep-small", large: "bench-sweep-large"}
    for n, workflow in workflows.items():
        cdf.seed_failed(n, workflow)
    env = cdf.child_env(RETRY_DEADLINE_SECONDS="600", RETRY_REQUEST_TIMEOUT_SECONDS="60")
    measured: dict[int, list[ChildRun]] = {small: [], large: []}
    for _ in range(runs):
        for n, workflow in workflows.items():
            measured[n].append(run_python(["-m", "bench.child", "sweep", workflow], env, timeout=240))
    growth = median([r.max_rss_mb for r in measured[large]]) - median([r.max_rss_mb for r in measured[small]])
    seen = {n: (runs_[-1].output.get("sweep") or {}).get("executionsSeen") for n, runs_ in measured.items()}
    for n, count in seen.items():
        if count is not None and count < n:
            raise RuntimeError(f"the sweep over {n} executions saw only {count}: {measured[n][-1].output}")
    return [
        at_most(
            _label(small, large),
            growth,
            TARGET_MB,
            unit=" MB",
            runs=runs,
            small_rss_mb=rounded([r.max_rss_mb for r in measured[small]], 1),
            large_rss_mb=rounded([r.max_rss_mb for r in measured[large]], 1),
            small_seconds=rounded([r.seconds for r in measured[small]], 2),
            large_seconds=rounded([r.seconds for r in measured[large]], 2),
            executions_seen=seen,
            large_sweep_summary=measured[large][-1].output.get("sweep"),
        )
    ]
