"""Comparison 1: cold start, ``import handler`` against ``import cognite.client`` (the floor: the SDK is required),
and the full cold path (import, client, first retry) of each entrypoint against the user's script."""

from __future__ import annotations

from collections.abc import Callable

from bench.emulated import LATENCY_SECONDS, EmulatedCdf
from bench.processes import ChildRun, run_python
from bench.stats import median, paired_ratio, rounded
from bench.table import Row, Status, at_most, info

IMPORT_TIME_TARGET = 1.10
IMPORT_MEMORY_TARGET = 1.15
COLD_PATH_TARGET = 1.15
"""``handle``'s cold path (import, client, first retry) / the script's, in time. The Lambda path has none."""
AWS_MODULES = ("boto3", "botocore", "aws_lambda_powertools")
"""Modules a Cognite Function must never load (the Lambda path's alone)."""

_PROBE = (
    "import json, sys; import {module}; "
    "print(json.dumps({{'loaded': sorted(m for m in {watched!r} if m in sys.modules), "
    "'vm_hwm_kb': int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))}}))"
)
"""The measured import, then one line of JSON: the watched modules it loaded and its own peak RSS."""


def _alternating(runs: int, sides: list[str], measure: Callable[[str], ChildRun]) -> dict[str, list[ChildRun]]:
    """``runs`` rounds of every side, in a rotating order so no side always runs first."""
    out: dict[str, list[ChildRun]] = {side: [] for side in sides}
    for i in range(runs):
        for side in sides[i % len(sides) :] + sides[: i % len(sides)]:
            out[side].append(measure(side))
    return out


def compare_imports(cdf: EmulatedCdf, runs: int, *, warm_up: bool = True) -> list[Row]:
    """``python -c "import handler"`` vs ``python -c "import cognite.client"``, fresh interpreters."""
    env = cdf.child_env()
    watched = (*AWS_MODULES, "pydantic_settings", "pydantic")
    modules = {"handler": "handler", "sdk": "cognite.client"}

    def measure(side: str) -> ChildRun:
        return run_python(["-c", _PROBE.format(module=modules[side], watched=watched)], env, timeout=60)

    if warm_up:
        _alternating(1, list(modules), measure)  # warm the page cache; not counted
    runs_by_side = _alternating(runs, list(modules), measure)
    handler, sdk = runs_by_side["handler"], runs_by_side["sdk"]
    time_ratio = paired_ratio([r.seconds for r in handler], [r.seconds for r in sdk])
    cpu_ratio = paired_ratio([r.cpu_seconds for r in handler], [r.cpu_seconds for r in sdk])
    memory_ratio = paired_ratio([r.max_rss_mb for r in handler], [r.max_rss_mb for r in sdk])
    details = {
        "runs": runs,
        "handler_seconds": rounded([r.seconds for r in handler]),
        "sdk_seconds": rounded([r.seconds for r in sdk]),
        "handler_median_seconds": round(median([r.seconds for r in handler]), 4),
        "sdk_median_seconds": round(median([r.seconds for r in sdk]), 4),
        "handler_median_cpu_seconds": round(median([r.cpu_seconds for r in handler]), 4),
        "sdk_median_cpu_seconds": round(median([r.cpu_seconds for r in sdk]), 4),
        "handler_median_rss_mb": round(median([r.max_rss_mb for r in handler]), 1),
        "sdk_median_rss_mb": round(median([r.max_rss_mb for r in sdk]), 1),
        "modules_loaded_by_import_handler": handler[0].output.get("loaded", []),
    }
    return [
        at_most("cold start: import handler / import cognite.client, time", time_ratio, IMPORT_TIME_TARGET, **details),
        info(
            "cold start: import handler / import cognite.client, CPU time (steadier under load)",
            f"{cpu_ratio:.2f}x",
            cpu_ratio,
        ),
        at_most("cold start: import handler / import cognite.client, peak RSS", memory_ratio, IMPORT_MEMORY_TARGET),
    ]


def compare_cold_paths(cdf: EmulatedCdf, runs: int, *, with_lambda: bool) -> list[Row]:
    """Import + client + first retry, per entrypoint, against the user's script (20 ms latency)."""
    cdf.emu.latency = LATENCY_SECONDS
    env = cdf.child_env()
    entries = ["script", "handle"] + (["lambda"] if with_lambda else [])
    requests: dict[str, int] = {}

    def measure(entry: str) -> ChildRun:
        execution_id = cdf.seed_failed(1, f"bench-cold-{entry}")[0]
        cdf.start_counting()
        run = run_python(["-m", "bench.child", "cold-path", entry, execution_id], env, timeout=120)
        requests[entry] = len(cdf.emu.requests)
        if run.output.get("outcome", "").lower() not in ("retried", "running"):
            raise RuntimeError(f"cold path {entry} did not retry the execution: {run.output}")
        return run

    measured = _alternating(runs, entries, measure)
    script = measured["script"]
    rows = []
    for entry in entries[1:]:
        runs_ = measured[entry]
        time_ratio = paired_ratio([r.seconds for r in runs_], [r.seconds for r in script])
        memory_ratio = paired_ratio([r.max_rss_mb for r in runs_], [r.max_rss_mb for r in script])
        phases = {
            phase: round(median([r.output[phase] for r in runs_]), 4) for phase in ("import", "client", "first_retry")
        }
        script_phases = {
            phase: round(median([r.output[phase] for r in script]), 4) for phase in ("import", "client", "first_retry")
        }
        target = COLD_PATH_TARGET if entry == "handle" else None
        status = Status.INFO if target is None else Status.PASS if time_ratio <= target else Status.FAIL
        rows.append(
            Row(
                f"cold path ({entry}): import + client + first retry / the script's",
                f"{time_ratio:.2f}x time, {memory_ratio:.2f}x RSS, {requests[entry]} vs {requests['script']} requests",
                "-" if target is None else f"<= {target:g}x time",
                status,
                time_ratio,
                target,
                dict(
                    runs=runs,
                    seconds=rounded([r.seconds for r in runs_]),
                    script_seconds=rounded([r.seconds for r in script]),
                    median_rss_mb=round(median([r.max_rss_mb for r in runs_]), 1),
                    script_median_rss_mb=round(median([r.max_rss_mb for r in script]), 1),
                    phases_median_seconds=phases,
                    script_phases_median_seconds=script_phases,
                    requests_including_token=requests[entry],
                    script_requests_including_token=requests["script"],
                ),
            )
        )
    loaded = sorted({m for r in measured["handle"] for m in r.output.get("loaded", []) if m in AWS_MODULES})
    rows.append(
        Row(
            "cold path (handle): AWS modules loaded (boto3, botocore, Powertools)",
            ", ".join(loaded) or "none",
            "none",
            Status.FAIL if loaded else Status.PASS,
            float(len(loaded)),
            0.0,
        )
    )
    return rows
