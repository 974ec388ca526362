"""Run one fresh interpreter and measure it: wall time, peak RSS (``os.wait4``) and its JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.emulated import ROOT


class ChildError(RuntimeError):
    """A measured child process failed or ran out of time."""


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    """Wall time from spawning the process to reaping it."""
    cpu_seconds: float
    """User + system CPU time of the process: unlike wall time, barely affected by other load."""
    max_rss_mb: float
    """Peak resident set size of the process: ``VmHWM`` as the child reported it (``vm_hwm_kb``).

    ``ru_maxrss`` from ``wait4`` is only a fallback: Linux folds the parent's peak RSS into the
    child's at ``exec``, so a child of a big bench process would show the bench's size.
    """
    output: dict[str, Any]
    """The JSON the child printed last (empty when it printed none)."""


def run_python(args: list[str], env: dict[str, str], timeout: float = 120.0) -> ChildRun:
    """Run ``python ARGS`` in the repository root and measure it; :class:`ChildError` when it fails."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
    if process.returncode != 0:
        why = f"killed after {timeout:g} s" if seconds >= timeout else f"exit code {process.returncode}"
        raise ChildError(f"python {' '.join(args)}: {why}: {(err or out)[-1500:].strip()}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    output: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return ChildRun(
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        max_rss_mb=(output.get("vm_hwm_kb") or usage.ru_maxrss) / 1024,
        output=output,
    )
