"""The bench's result table: verdicts, the printed table and the JSON document (no timing here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import Plan
from bench.stats import paired_ratio
from bench.table import Row, Status, at_least, at_most, document, error, info, not_available, render, write_json

LATEST = Path(__file__).resolve().parents[2] / "bench" / "results" / "latest.json"
ROW_KEYS = {"comparison", "measured", "target", "status", "value", "limit", "details"}


def sample_rows() -> list[Row]:
    return [
        at_most("import time", 1.08, 1.10, handler_seconds=[0.9]),
        at_most("import memory", 1.2, 1.15),
        at_least("backlog speed-up", 12.0, 10.0),
        at_least("sweep speed-up", 9.9, 10.0),
        info("requests", "5 vs 2", 5.0),
        not_available("sweep memory", "<= 25 MB", "workflow_retry.sweep has not landed"),
        error("cold path", RuntimeError("the worker exited")),
    ]


def test_each_verdict_follows_its_target() -> None:
    statuses = [row.status for row in sample_rows()]

    assert statuses == [
        Status.PASS,
        Status.FAIL,
        Status.PASS,
        Status.FAIL,
        Status.INFO,
        Status.NOT_AVAILABLE,
        Status.ERROR,
    ]


@pytest.mark.parametrize(("value", "status"), [(2.0, Status.PASS), (2.01, Status.FAIL)])
def test_a_value_on_the_limit_passes(value: float, status: Status) -> None:
    assert at_most("x", value, 2.0).status is status


def test_the_printed_table_has_a_header_and_one_line_per_row() -> None:
    rows = sample_rows()
    lines = render(rows).splitlines()

    assert lines[0].split() == ["comparison", "measured", "target", "status"]
    assert set(lines[1]) <= {"-", " "}
    assert len(lines) == 2 + len(rows)
    assert lines[2].startswith("import time")
    assert lines[2].endswith("pass")
    assert lines[-1].startswith("cold path")
    assert lines[-1].endswith("error")


def test_the_json_document_holds_every_row_and_a_summary(tmp_path: Path) -> None:
    rows = sample_rows()
    path = tmp_path / "results" / "latest.json"

    write_json(path, document(rows, quick=True, seconds=12.34))
    doc = json.loads(path.read_text())

    assert doc["mode"] == "quick"
    assert doc["summary"] == {"pass": 2, "fail": 2, "info": 1, "not available yet": 1, "error": 1}
    assert [r["comparison"] for r in doc["rows"]] == [r.comparison for r in rows]
    assert all(set(r) == ROW_KEYS for r in doc["rows"])
    assert doc["rows"][0]["details"] == {"handler_seconds": [0.9]}
    assert doc["rows"][-1]["details"]["error"] == "RuntimeError: the worker exited"


def test_a_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    assert paired_ratio([2.0, 3.0, 40.0], [1.0, 1.0, 10.0]) == 3.0
    with pytest.raises(ValueError, match="same length"):
        paired_ratio([1.0], [1.0, 2.0])


def test_the_quick_plan_is_smaller_than_the_full_one_in_every_dimension() -> None:
    quick, full = Plan.quick(), Plan.full()

    assert quick.backlog_size < full.backlog_size
    assert quick.sweep_sizes[1] < full.sweep_sizes[1]
    assert quick.time_limit_seconds < full.time_limit_seconds
    assert quick.scale_sizes[1] < full.scale_sizes[1]
    assert quick.read_ahead[1] < full.read_ahead[1]
    assert full.backlog_size == 200
    assert full.slow_network == (200, 0.100)
    assert full.scale_sizes == (200, 1_000)
    assert full.read_ahead == (200, 10_000)
    assert full.sweep_sizes == (1_000, 50_000)


@pytest.mark.skipif(not LATEST.exists(), reason="no full run recorded yet")
def test_the_recorded_latest_run_has_the_documented_shape() -> None:
    doc = json.loads(LATEST.read_text())

    assert doc["mode"] == "full"
    assert {"schema", "generated_at", "seconds", "machine", "summary", "rows"} <= set(doc)
    assert doc["rows"]
    assert all(set(r) == ROW_KEYS for r in doc["rows"])
    assert {r["status"] for r in doc["rows"]} <= {s.value for s in Status}
