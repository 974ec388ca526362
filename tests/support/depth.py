"""How deep the generated (property) runs go: ``TEST_DEPTH=deep`` (``make test-deep``) for the full counts.

``make test`` and ``make unit`` run each property test at a tenth of its full example count: enough to
exercise every generator branch on every run, at a cost that keeps the whole suite within minutes.
The full counts (10,000 hostile inputs per entrypoint, 3,000 generated execution IDs) stay one command
away, for a change to parsing or validation and before a release (docs/testing.md). The runs are
derandomized, so each depth sends the same inputs every time.
"""

from __future__ import annotations

import os

DEEP = os.environ.get("TEST_DEPTH", "").strip().lower() == "deep"


def examples(full: int) -> int:
    """``full`` under ``TEST_DEPTH=deep``, a tenth of it otherwise."""
    return full if DEEP else max(1, full // 10)
