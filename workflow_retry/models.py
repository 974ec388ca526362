"""The request the core works on and the report it gives back (pydantic models, camelCase on the wire).

A result carries the execution in its compact form by default (:func:`compact_execution`: what a
caller acts on, with ``status`` and ``engineExecutionId``); the whole execution as read (its
``workflowDefinition``, ``executedTasks`` and ``input``) only when the request asks for it
(``fullExecution``). How an answer is kept within a platform's size limit is in
:mod:`workflow_retry.answer_size`; the shape is described in docs/payloads-and-results.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from workflow_retry.ids import ExecutionId


class Outcome(StrEnum):
    """What happened to one execution ID."""

    RETRIED = "retried"
    SKIPPED = "skipped"
    DRY_RUN = "dry_run"
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    FAILED = "failed"
    EXHAUSTED = "exhausted"
    """Retried ``maxAttempts`` times already: not retried again (the give-up is announced once)."""
    DEFERRED = "deferred"
    """Still cooling down after its last retry: to be retried later (SQS: a batch item failure)."""


COMPACT_EXECUTION_FIELDS = (
    "id",
    "workflowExternalId",
    "version",
    "status",
    "engineExecutionId",
    "createdTime",
    "startTime",
    "endTime",
    "reasonForIncompletion",
    "metadata",
)
"""The fields of an execution a result carries by default, in this order (those CDF sent)."""
MAX_REASON_CHARS = 1000
"""``reasonForIncompletion`` of a compact execution is cut to this many characters (CDF's can hold a
whole stack trace): the full execution has it whole."""


def compact_execution(execution: Mapping[str, Any]) -> dict[str, Any]:
    """The compact form of an execution as CDF returns it: :data:`COMPACT_EXECUTION_FIELDS`, the reason cut."""
    compact = {key: execution[key] for key in COMPACT_EXECUTION_FIELDS if key in execution}
    reason = compact.get("reasonForIncompletion")
    if isinstance(reason, str) and len(reason) > MAX_REASON_CHARS:
        compact["reasonForIncompletion"] = shorten(reason, MAX_REASON_CHARS)
    return compact


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, saying how long it was."""
    if len(text) <= max_chars:
        return text
    note = f"... ({len(text)} characters)"
    return text[: max(0, max_chars - len(note))] + note


class _WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class RequestedId(_WireModel):
    """One distinct ID from the caller: valid (``execution_id`` set) or not (``problem`` set)."""

    shown: str = Field(description="The ID as reported back: the normalised ID, or the caller's value")
    execution_id: ExecutionId | None = None
    problem: str | None = None


class SweepRequest(_WireModel):
    """A sweep: list failed executions and retry them under the policy. Unset fields come from settings."""

    workflows: tuple[str, ...] | None = None
    lookback_minutes: int | None = Field(default=None, ge=1, le=90 * 24 * 60)
    statuses: tuple[str, ...] | None = None
    max_restarts: int | None = Field(default=None, ge=1, le=1000)


class RetryRequest(_WireModel):
    """What the core needs to know, whatever the entrypoint: distinct IDs in input order, and the mode.

    ``policy`` holds the call's own policy fields (validated, by field name) over the environment's;
    ``sweep`` is set (and ``ids`` empty) for a sweep; ``full_execution`` asks for the whole execution
    in each result instead of the compact one.
    """

    ids: tuple[RequestedId, ...]
    dry_run: bool = False
    full_execution: bool = False
    policy: dict[str, Any] | None = None
    sweep: SweepRequest | None = None


class ErrorInfo(_WireModel):
    """Why an ID failed: the HTTP status (None when no response came), a message, and whether it may pass.

    ``identityProvider`` is present (``true``) only when no token for CDF could be had: nothing was sent.
    """

    code: int | None
    message: str
    retryable: bool
    identity_provider: bool = Field(
        default=False,
        exclude_if=lambda value: not value,
        description="The identity provider refused, failed or did not answer: CDF was not reached",
    )


class ExecutionResult(_WireModel):
    """The result for one distinct ID."""

    execution_id: str
    outcome: Outcome
    reason: str
    execution: dict[str, Any] | None = Field(
        default=None, description="The execution as CDF reported it: compact unless the whole one was asked for"
    )
    error: ErrorInfo | None = None
    attempts: int | None = Field(default=None, description="Retries counted by the ledger so far, this one included")
    cap_enforced: bool = Field(
        default=True, description="False when the ledger is 'none': maxAttempts and the cooldown are not enforced"
    )

    def with_compact_execution(self) -> ExecutionResult:
        """This result with its execution in the compact form."""
        if self.execution is None:
            return self
        return self.model_copy(update={"execution": compact_execution(self.execution)})

    @property
    def wants_redelivery(self) -> bool:
        """Whether the event should come back later: a transient failure, or a retry still cooling down."""
        return self.outcome is Outcome.DEFERRED or (self.error is not None and self.error.retryable)


class SweepSummary(_WireModel):
    """What a sweep saw and did, including what it did not reach (``results`` hold only what it acted on).

    ``outcomes`` counts every execution the sweep looked at, by outcome (``skipped`` includes those the
    policy filtered out of the list without reading them in detail).
    """

    window_start: int = Field(description="createdTime lower bound of the listing (epoch ms)")
    window_end: int
    ended_after: int | None = Field(
        default=None, description="The sweep looked at failures that ended after this (epoch ms): its age limit"
    )
    workflows: tuple[str, ...]
    statuses: tuple[str, ...]
    max_restarts: int
    pages_read: int = 0
    executions_seen: int = 0
    listing_complete: bool = False
    eligible: int = Field(default=0, description="Executions the policy would retry now")
    left_for_next_sweep: int = Field(default=0, description="Eligible, but beyond maxRestarts (newest first left)")
    not_reached: int = Field(default=0, description="Selected but not handled before the deadline")
    stopped_early: str | None = Field(default=None, description="Why the sweep stopped before the end, if it did")
    listing_error: ErrorInfo | None = Field(default=None, description="Why listing failed, if it did")
    results_omitted: int = Field(default=0, description="Results counted in outcomes but not listed")
    outcomes: dict[str, int] = Field(default_factory=dict)


class RetryReport(_WireModel):
    """One result per distinct input ID, in input order, and how many of each outcome."""

    results: tuple[ExecutionResult, ...]
    sweep: SweepSummary | None = None
    gave_up: tuple[str, ...] = Field(
        default=(), description="Executions given up on (and announced) by this call; not part of ``to_dict``"
    )

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((o.value for o in Outcome), 0)
        for result in self.results:
            counts[result.outcome.value] += 1
        return counts

    @property
    def needs_redelivery(self) -> bool:
        """Whether the event should come back: a result failed retryably or is deferred (cooling down).

        Never for a sweep: what it did not finish is the next scheduled sweep's work, and a platform's
        redelivery of the sweep would only run it again sooner.
        """
        return self.sweep is None and any(r.wants_redelivery for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready result: ``{"results": [...], "counts": {...}}``."""
        out: dict[str, Any] = {
            "results": [r.model_dump(mode="json", by_alias=True) for r in self.results],
            "counts": self.counts,
        }
        if self.sweep is not None:
            out["sweep"] = self.sweep.model_dump(mode="json", by_alias=True)
        return out
