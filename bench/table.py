"""The result table: one row per measured comparison, printed as text and written as JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


class Status(StrEnum):
    """How a row compares with its target."""

    PASS = "pass"
    FAIL = "fail"
    INFO = "info"
    """Measured and shown, with no target (the issue sets none)."""
    NOT_AVAILABLE = "not available yet"
    """The feature it measures has not landed yet."""
    ERROR = "error"
    """The comparison crashed: the bench command then exits non-zero."""


@dataclass(frozen=True)
class Row:
    """One line of the table: what was compared, the measured value, the target and the verdict.

    ``value`` and ``limit`` are the numbers behind ``measured`` and ``target`` (None when there is
    none); ``details`` holds the raw measurements the verdict was made from.
    """

    comparison: str
    measured: str
    target: str
    status: Status
    value: float | None = None
    limit: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "comparison": self.comparison,
            "measured": self.measured,
            "target": self.target,
            "status": self.status.value,
            "value": self.value,
            "limit": self.limit,
            "details": self.details,
        }


def at_most(comparison: str, value: float, limit: float, unit: str = "x", **details: Any) -> Row:
    """A row whose target is ``value <= limit``."""
    status = Status.PASS if value <= limit else Status.FAIL
    return Row(comparison, f"{value:.2f}{unit}", f"<= {limit:g}{unit}", status, value, limit, details)


def at_least(comparison: str, value: float, limit: float, unit: str = "x", **details: Any) -> Row:
    """A row whose target is ``value >= limit``."""
    status = Status.PASS if value >= limit else Status.FAIL
    return Row(comparison, f"{value:.1f}{unit}", f">= {limit:g}{unit}", status, value, limit, details)


def info(comparison: str, measured: str, value: float | None = None, **details: Any) -> Row:
    """A row shown for information: the issue sets no target for it."""
    return Row(comparison, measured, "-", Status.INFO, value, None, details)


def not_available(comparison: str, target: str, why: str) -> Row:
    """A row for a comparison whose feature has not landed yet."""
    return Row(comparison, "-", target, Status.NOT_AVAILABLE, details={"why": why})


def error(comparison: str, exc: BaseException) -> Row:
    """A row for a comparison that crashed."""
    return Row(comparison, "crashed", "-", Status.ERROR, details={"error": f"{type(exc).__name__}: {exc}"})


def render(rows: list[Row]) -> str:
    """The table as aligned text (comparison, measured, target, status)."""
    header = ("comparison", "measured", "target", "status")
    lines = [header] + [(r.comparison, r.measured, r.target, r.status.value) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines[1:])])


def calibration_seconds() -> float:
    """The best of three runs of a fixed pure-Python loop: how fast this machine runs Python right now.

    CPU per request and the CPU-bound rows scale with it; it tells one machine's run from another's.
    """
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        sum(range(10_000_000))
        best = min(best, time.perf_counter() - started)
    return best


def document(
    rows: list[Row], *, quick: bool, seconds: float, load_at_start: tuple[float, float, float] | None = None
) -> dict[str, Any]:
    """The JSON document written by ``python -m bench``."""
    return {
        "schema": SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "seconds": round(seconds, 1),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "load_average_at_start": [round(x, 2) for x in load_at_start] if load_at_start else None,
            "calibration_seconds": round(calibration_seconds(), 3),
        },
        "summary": {status.value: sum(1 for r in rows if r.status is status) for status in Status},
        "rows": [row.to_json() for row in rows],
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
