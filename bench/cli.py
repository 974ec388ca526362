"""``python -m bench [--quick] [--json PATH]``: start the emulator, run every comparison, print one table.

Exits 0 when every comparison ran, whatever the verdicts (a missed target is a finding, not a crash);
1 when a comparison crashed; 3 when the whole run overran its time limit.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import features
from bench.backlog import compare_backlog, compare_rate_limited, compare_rate_limiter
from bench.cold_start import compare_cold_paths, compare_imports
from bench.emulated import ROOT, EmulatedCdf
from bench.retry_one import compare_one_retry
from bench.scale import compare_read_ahead_memory, compare_scale
from bench.sweep_memory import compare_sweep_memory
from bench.table import Row, Status, document, error, render, write_json

DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"


@dataclass(frozen=True)
class Plan:
    """How much of each comparison to run."""

    import_runs: int
    cold_path_runs: int
    one_retry_rounds: int
    backlog_size: int
    backlog_rounds: int
    throttled_size: int
    loop_under_throttling: bool
    sweep_sizes: tuple[int, int]
    sweep_runs: int
    time_limit_seconds: float
    wait_for_deferred: bool
    """Wait out the policy's in-flight window (a minute) for IDs deferred under rate limits."""
    slow_network: tuple[int, float] | None
    """The backlog at a cloud-like latency (IDs, seconds per request), where CPU does not bound it."""
    rate_limiter: tuple[float, int]
    """The emulator's rate-based limiter: requests per second and requests at once."""
    scale_sizes: tuple[int, int]
    scale_runs: int
    read_ahead: tuple[int, int]
    """A batch (IDs) over a ledger of that many live rows."""

    @classmethod
    def full(cls) -> Plan:
        """The issue's sizes, with medians of several rounds: a few minutes."""
        return cls(
            import_runs=15,
            cold_path_runs=5,
            one_retry_rounds=15,
            backlog_size=200,
            backlog_rounds=5,
            throttled_size=200,
            loop_under_throttling=True,
            sweep_sizes=(1_000, 50_000),
            sweep_runs=1,
            time_limit_seconds=1200.0,  # 5-6 minutes at a load of 3-7; twice that at 10 on 2 cores
            wait_for_deferred=True,
            slow_network=(200, 0.100),
            rate_limiter=RATE_LIMITER,
            scale_sizes=(200, 1_000),
            scale_runs=2,
            read_ahead=(200, 10_000),
        )

    @classmethod
    def quick(cls) -> Plan:
        """Everything once, at small sizes: proves the bench still runs; its verdicts mean little."""
        return cls(
            import_runs=1,
            cold_path_runs=1,
            one_retry_rounds=2,
            backlog_size=20,
            backlog_rounds=1,
            throttled_size=10,
            loop_under_throttling=False,
            sweep_sizes=(100, 1_000),
            sweep_runs=1,
            time_limit_seconds=90.0,
            wait_for_deferred=False,
            slow_network=None,
            rate_limiter=RATE_LIMITER,
            scale_sizes=(10, 50),
            scale_runs=1,
            read_ahead=(20, 500),
        )


Step = Callable[[EmulatedCdf], list[Row]]

RATE_LIMITER = (100.0, 40)
"""Requests per second and at once: the default concurrency's requests at once (the executions in flight,
a shared ledger insert, the ledger's listing) fit under 40; 100 per second is less than half what it
sends at 20 ms per request, even on a machine where it is CPU-bound, so the rate limit answers 429s."""

STEP_NAMES = (
    "imports",
    "cold-path",
    "one-retry",
    "backlog",
    "rate-limits",
    "rate-limiter",
    "scale",
    "read-ahead-memory",
    "sweep-memory",
)


def steps(plan: Plan) -> list[tuple[str, Step]]:
    """Every comparison, by name, in the order they run."""
    with_lambda, with_sweep = features.has_lambda_handler(), features.has_sweep()
    concurrency = features.default_concurrency()
    return [
        ("imports", lambda cdf: compare_imports(cdf, plan.import_runs, warm_up=plan.import_runs > 1)),
        ("cold-path", lambda cdf: compare_cold_paths(cdf, plan.cold_path_runs, with_lambda=with_lambda)),
        ("one-retry", lambda cdf: compare_one_retry(cdf, plan.one_retry_rounds)),
        (
            "backlog",
            lambda cdf: compare_backlog(
                cdf,
                plan.backlog_size,
                plan.backlog_rounds,
                concurrency,
                with_sweep=with_sweep,
                slow_network=plan.slow_network,
            ),
        ),
        (
            "rate-limits",
            lambda cdf: compare_rate_limited(
                cdf, plan.throttled_size, with_loop=plan.loop_under_throttling, wait_for_deferred=plan.wait_for_deferred
            ),
        ),
        (
            "rate-limiter",
            lambda cdf: compare_rate_limiter(
                cdf, plan.throttled_size, concurrency, plan.rate_limiter, wait_for_deferred=plan.wait_for_deferred
            ),
        ),
        ("scale", lambda cdf: compare_scale(cdf, *plan.scale_sizes, plan.scale_runs)),
        ("read-ahead-memory", lambda cdf: compare_read_ahead_memory(cdf, *plan.read_ahead, plan.scale_runs)),
        (
            "sweep-memory",
            lambda cdf: compare_sweep_memory(cdf, *plan.sweep_sizes, plan.sweep_runs, available=with_sweep),
        ),
    ]


def _watchdog(seconds: float) -> threading.Timer:
    def overrun() -> None:
        print(f"bench: time limit of {seconds:g} s reached, stopping", file=sys.stderr, flush=True)
        os._exit(3)

    timer = threading.Timer(seconds, overrun)
    timer.daemon = True
    timer.start()
    return timer


def run(plan: Plan, only: set[str] | None = None) -> list[Row]:
    rows: list[Row] = []
    with EmulatedCdf.running() as cdf:
        for name, step in steps(plan):
            if only and name not in only:
                continue
            started = time.perf_counter()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            try:
                rows.extend(step(cdf))
            except Exception as exc:
                traceback.print_exc()
                rows.append(error(name, exc))
            finally:
                cdf.emu.reset()  # latency, faults, executions and RAW rows back to empty; clients kept
            print(f"bench: {name} took {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small run (seconds) that proves the bench still runs")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH", help=f"default: {DEFAULT_JSON}")
    parser.add_argument(
        "--only", action="append", choices=STEP_NAMES, metavar="NAME", help=f"run only these: {', '.join(STEP_NAMES)}"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    plan = Plan.quick() if args.quick else Plan.full()
    watchdog = _watchdog(plan.time_limit_seconds)
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    rows = run(plan, set(args.only or ()))
    watchdog.cancel()
    seconds = time.perf_counter() - started
    print(render(rows))
    doc = document(rows, quick=args.quick, seconds=seconds, load_at_start=load_at_start)
    write_json(args.json, doc)
    machine = doc["machine"]
    print(
        f"\n{len(rows)} rows in {seconds:.0f} s ({'quick' if args.quick else 'full'} run); written to {args.json}"
        f"\nload average {' '.join(f'{x:.2f}' for x in load_at_start)} at the start, "
        f"{' '.join(f'{x:.2f}' for x in machine['load_average'])} at the end; "
        f"calibration {machine['calibration_seconds']:.3f} s (sum(range(10**7)), best of 3)"
    )
    return 1 if any(row.status is Status.ERROR for row in rows) else 0
