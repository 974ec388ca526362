"""Pure decisions about one execution: retry it, skip it, or only report it (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

RETRYABLE_STATUSES = frozenset({"FAILED", "TIMED_OUT", "TERMINATED"})
"""The execution statuses CDF's retry endpoint accepts."""


class Action(StrEnum):
    RETRY = "retry"
    SKIP = "skip"
    REPORT_ONLY = "report_only"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(execution: dict[str, Any], *, dry_run: bool) -> Decision:
    """What to do with an execution, given its current state as CDF reports it."""
    status = str(execution.get("status", "")).upper()
    if status not in RETRYABLE_STATUSES:
        return Decision(
            Action.SKIP, f"status is {status or 'unknown'}; only FAILED, TIMED_OUT and TERMINATED are retried"
        )
    if dry_run:
        return Decision(Action.REPORT_ONLY, f"would retry: status is {status}")
    return Decision(Action.RETRY, f"retried from the point of failure (status was {status})")


def retry_was_applied(execution_after: dict[str, Any]) -> bool:
    """After a retry request whose answer was lost or refused, whether CDF shows it applied.

    An execution that was FAILED, TIMED_OUT or TERMINATED when we read it and is RUNNING now has
    been restarted: a second request must not restart it again.
    """
    return str(execution_after.get("status", "")).upper() == "RUNNING"
