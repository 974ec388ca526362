"""A pytest plugin that measures the suite's cost: ``-p tests.support.cpu_times`` with ``CPU_TIMES_DIR`` set.

Each process (each pytest-xdist worker) writes one JSON file into that folder: per test the wall time and
the CPU time of the process (its threads: the emulator's server threads run in the test's process) and of
the subprocesses it waited for, and the worker's start-up and collection cost. ``python -m
tests.support.cpu_times DIR`` sums them up. Off (and free) unless ``-p`` names it.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

_rows: list[dict[str, Any]] = []
_marks: dict[str, float] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pytest_configure(config: pytest.Config) -> None:
    _marks["configure_cpu"] = time.process_time()
    _marks["configure_wall"] = time.monotonic()


def pytest_collection_finish(session: pytest.Session) -> None:
    _marks["collected_cpu"] = time.process_time()
    _marks["collected_wall"] = time.monotonic()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    cpu, wall, children = time.process_time(), time.monotonic(), _children_cpu()
    try:
        return (yield)
    finally:
        _rows.append(
            {
                "test": item.nodeid,
                "wall": time.monotonic() - wall,
                "cpu": time.process_time() - cpu,
                "children_cpu": _children_cpu() - children,
            }
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    folder = os.environ.get("CPU_TIMES_DIR")
    if not folder:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    out = {
        "worker": worker,
        "startup_cpu": _marks.get("configure_cpu", 0.0),
        "collect_cpu": _marks.get("collected_cpu", 0.0) - _marks.get("configure_cpu", 0.0),
        "total_cpu": time.process_time(),
        "children_cpu": _children_cpu(),
        "tests": _rows,
    }
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"{worker}.json").write_text(json.dumps(out))


def _summary(folder: Path, top: int) -> None:
    by_file: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    tests = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        print(
            f"{data['worker']}: start-up {data['startup_cpu']:.1f} s CPU, collection {data['collect_cpu']:.1f} s,"
            f" total {data['total_cpu']:.1f} s, subprocesses {data['children_cpu']:.1f} s"
        )
        for row in data["tests"]:
            tests.append(row)
            acc = by_file[row["test"].split("::")[0]]
            acc[0] += row["wall"]
            acc[1] += row["cpu"]
            acc[2] += row["children_cpu"]
    cpu, children, wall = (sum(r[key] for r in tests) for key in ("cpu", "children_cpu", "wall"))
    print(f"\nall tests: CPU {cpu:.1f} s, subprocess CPU {children:.1f} s, wall {wall:.1f} s")
    print("\nfiles by CPU (wall, cpu, subprocess cpu):")
    for name, (wall, cpu, children) in sorted(by_file.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))[:top]:
        print(f"  {wall:7.1f} {cpu:7.1f} {children:7.1f}  {name}")
    print("\ntests by wall:")
    for row in sorted(tests, key=lambda r: -r["wall"])[:top]:
        print(f"  {row['wall']:7.1f} {row['cpu']:7.1f} {row['children_cpu']:7.1f}  {row['test']}")
    print("\ntests by CPU:")
    for row in sorted(tests, key=lambda r: -(r["cpu"] + r["children_cpu"]))[:top]:
        print(f"  {row['wall']:7.1f} {row['cpu']:7.1f} {row['children_cpu']:7.1f}  {row['test']}")


if __name__ == "__main__":
    _summary(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 30)
