"""The request the core works on and the report it gives back (pydantic models, camelCase on the wire)."""

from __future__ import annotations

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


class _WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class RequestedId(_WireModel):
    """One distinct ID from the caller: valid (``execution_id`` set) or not (``problem`` set)."""

    shown: str = Field(description="The ID as reported back: the normalised ID, or the caller's value")
    execution_id: ExecutionId | None = None
    problem: str | None = None


class RetryRequest(_WireModel):
    """What the core needs to know, whatever the entrypoint: distinct IDs in input order, and the mode."""

    ids: tuple[RequestedId, ...]
    dry_run: bool = False


class ErrorInfo(_WireModel):
    """Why an ID failed: the HTTP status (None when no response came), a message, and whether it may pass."""

    code: int | None
    message: str
    retryable: bool


class ExecutionResult(_WireModel):
    """The result for one distinct ID."""

    execution_id: str
    outcome: Outcome
    reason: str
    execution: dict[str, Any] | None = None
    error: ErrorInfo | None = None


class RetryReport(_WireModel):
    """One result per distinct input ID, in input order, and how many of each outcome."""

    results: tuple[ExecutionResult, ...]

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((o.value for o in Outcome), 0)
        for result in self.results:
            counts[result.outcome.value] += 1
        return counts

    @property
    def has_transient_failures(self) -> bool:
        return any(r.error is not None and r.error.retryable for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready result: ``{"results": [...], "counts": {...}}``."""
        return {
            "results": [r.model_dump(mode="json", by_alias=True) for r in self.results],
            "counts": self.counts,
        }
