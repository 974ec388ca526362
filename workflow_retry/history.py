"""An execution's retry history: what goes into the ledger's ``history``, and what it says now (no I/O here).

The ledger keeps, per execution, its recent attempts and the give-up (:class:`AttemptEntry`), at most
``maxAttempts`` + :data:`EXTRA_ENTRIES` of them, newest last. The entries ride on the writes that
happen anyway, so a retry costs no extra request:

- taking an attempt (before the retry request) adds an entry ``retried`` with the time and the failure
  it answers (:func:`with_attempt`);
- what came of an attempt is known only when the execution is seen again: the next attempt, or the
  give-up, first settles the open entry (:func:`settled`) as ``failed_again``, with the
  ``engineExecutionId`` of the run that attempt started (the failed execution as read now carries it);
- the give-up adds an entry ``gave_up`` with why (:func:`with_give_up`);
- an execution that recovered is never read again by a retry or a sweep: ``status`` and ``history``,
  which read it from CDF, show its open entry as ``recovered`` (or ``running``) without writing it.

:func:`execution_state` sums one execution up for ``history``: recovered after N attempts, gave up,
cooling down, in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from workflow_retry.ledger import (
    HISTORY_REASON_CHARS,
    OUTCOME_GAVE_UP,
    AttemptEntry,
    AttemptRecord,
    History,
)
from workflow_retry.policy import RETRYABLE_STATUSES, Action, RetryPolicy, decide, failed_tasks, failure_key

EXTRA_ENTRIES = 3
"""Entries kept beyond ``maxAttempts``: the give-up, and attempts counted under an earlier, higher cap."""

ENTRY_RETRIED = "retried"
"""The retry was counted and sent; what came of it was not seen yet."""
ENTRY_FAILED_AGAIN = "failed_again"
"""The run the attempt started failed (seen by the next attempt or the give-up)."""
ENTRY_RECOVERED = "recovered"
"""Shown only: the execution completed after the attempt (read from CDF by ``status`` or ``history``)."""
ENTRY_RUNNING = "running"
"""Shown only: the execution is running after the attempt."""
ENTRY_GAVE_UP = OUTCOME_GAVE_UP


def failure_reason(execution: Mapping[str, Any]) -> str | None:
    """The failure an attempt answers: the execution's ``reasonForIncompletion``, else its first failed task's."""
    reason = execution.get("reasonForIncompletion")
    if isinstance(reason, str) and reason:
        return _cut(reason)
    for task in failed_tasks(execution):
        task_reason = task.get("reasonForIncompletion")
        if isinstance(task_reason, str) and task_reason:
            return _cut(f"task '{task.get('externalId')}': {task_reason}")
    return None


def _cut(text: str) -> str:
    return text if len(text) <= HISTORY_REASON_CHARS else text[: HISTORY_REASON_CHARS - 3] + "..."


def settled(history: History, execution: Mapping[str, Any]) -> History:
    """The history with its open attempt settled by the execution as read now, where the read tells.

    A failure that ended after the attempt makes it ``failed_again``; a read from before the attempt (a
    stale one) or a running execution tells nothing yet. Only what is certain is stored: ``recovered``
    is never written (a completed execution is not written about again).
    """
    if not history or history[-1].outcome != ENTRY_RETRIED:
        return history
    shown = shown_outcome(history[-1], execution)
    if shown.outcome != ENTRY_FAILED_AGAIN:
        return history
    return (*history[:-1], shown)


def shown_outcome(entry: AttemptEntry, execution: Mapping[str, Any] | None) -> AttemptEntry:
    """An open attempt entry as the execution read now shows it (``failed_again``, ``recovered``, ``running``)."""
    if entry.outcome != ENTRY_RETRIED or execution is None:
        return entry
    status = str(execution.get("status", "")).upper()
    engine = execution.get("engineExecutionId")
    engine = engine if isinstance(engine, str) else entry.engine_execution_id
    if status == "RUNNING":
        return replace(entry, outcome=ENTRY_RUNNING, engine_execution_id=engine)
    if status == "COMPLETED":
        return replace(entry, outcome=ENTRY_RECOVERED, engine_execution_id=engine)
    ended = failure_key(execution)
    if status in RETRYABLE_STATUSES and ended is not None and ended > entry.at:
        return replace(entry, outcome=ENTRY_FAILED_AGAIN, engine_execution_id=engine)
    return entry


def with_attempt(record: AttemptRecord | None, execution: Mapping[str, Any], now_ms: int, max_attempts: int) -> History:
    """The history once the attempt being taken now is added (its earlier one settled first)."""
    history = settled(record.history, execution) if record else ()
    entry = AttemptEntry(at=now_ms, outcome=ENTRY_RETRIED, reason=failure_reason(execution))
    return _bounded((*history, entry), max_attempts)


def with_give_up(
    record: AttemptRecord, execution: Mapping[str, Any], now_ms: int, why: str, max_attempts: int
) -> AttemptRecord:
    """The record with its open attempt settled and the give-up added (``why``: the decision's reason)."""
    history = (*settled(record.history, execution), AttemptEntry(at=now_ms, outcome=ENTRY_GAVE_UP, reason=_cut(why)))
    return replace(record, history=_bounded(history, max_attempts))


def _bounded(history: History, max_attempts: int) -> History:
    keep = max_attempts + EXTRA_ENTRIES
    return history[-keep:]


STATES = ("recovered", "gave_up", "exhausted", "cooling_down", "due", "in_flight", "not_retried", "unknown")
"""Every :attr:`ExecutionState.state`, in the order ``history`` counts them."""


@dataclass(frozen=True)
class ExecutionState:
    """One execution in ``history``: ``state`` is a word for machines, ``summary`` the words for people."""

    state: str
    summary: str


def execution_state(
    record: AttemptRecord,
    execution: Mapping[str, Any] | None,
    policy: RetryPolicy,
    now_ms: int,
    read_error: str | None = None,
) -> ExecutionState:
    """Where an execution stands (one of :data:`STATES`): ``gave_up``, ``recovered``, ``in_flight``,
    ``cooling_down``, ``due``, ``exhausted`` (the give-up is announced when it is next seen),
    ``not_retried`` or ``unknown`` (the execution could not be read: ``read_error``).
    """
    n = record.attempts
    if record.last_outcome == OUTCOME_GAVE_UP:
        if n == 0:  # given up on at first sight (an access error): the give-up entry says why
            why = next((e.reason for e in reversed(record.history) if e.outcome == ENTRY_GAVE_UP), None)
            return ExecutionState("gave_up", f"gave up without a retry: {why or 'see its status'}")
        return ExecutionState("gave_up", f"gave up after {n} attempt(s)")
    if execution is None:
        why = read_error or "no answer"
        return ExecutionState("unknown", f"{n} attempt(s); the execution could not be read: {why}")
    status = str(execution.get("status", "")).upper()
    if status == "COMPLETED":
        return ExecutionState("recovered", f"recovered after {n} attempt(s)")
    if status == "RUNNING":
        return ExecutionState("in_flight", f"running after attempt {n}")
    decision = decide(
        execution,
        dry_run=True,
        policy=policy,
        attempts=n,
        last_attempt_ms=record.last_attempt_at,
        now_ms=now_ms,
    )
    if decision.action is Action.DEFER:
        return ExecutionState("cooling_down", f"{status.lower()} after attempt {n}; {decision.reason}")
    if decision.action is Action.EXHAUSTED:
        return ExecutionState("exhausted", f"{decision.reason}; gives up when next seen")
    if decision.action is Action.SKIP:
        return ExecutionState("not_retried", f"{n} attempt(s); {decision.reason}")
    return ExecutionState("due", f"{status.lower()} after attempt {n}; attempt {n + 1} is due")
