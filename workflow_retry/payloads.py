"""The payloads a caller may send (a Cognite Function's ``data``, an event's body) -> :class:`RetryRequest`.

Accepted shapes, which may be combined in one payload (IDs are then taken in this order):

- ``{"executionId": "<uuid>"}``
- ``{"executionIds": ["<uuid>", ...]}``
- an execution object as the API returns it: ``{"id": "<uuid>", "workflowExternalId": "...", ...}``
- ``{"items": [<execution object>, ...]}`` (the shape of the executions list endpoint)

plus ``"dryRun": true`` on any of them. Other keys are ignored. A per-ID problem becomes an
``invalid`` result; a payload with no ID at all, or with a field of the wrong type, raises
:class:`PayloadError`.

Also accepted (docs/policy-and-sweeps.md):

- ``"policy": {"maxAttempts": 5, ...}`` on any payload: this call's retry policy over the
  environment's (an unknown or invalid key raises :class:`ConfigurationError`);
- ``{"sweep": {"workflows": ["wf-a", "wf-b:2"], "lookbackMinutes": 60, "statuses": ["FAILED"],
  "maxRestarts": 20}}`` (every key optional; ``{"sweep": {}}`` or ``{"sweep": true}`` uses the
  configured defaults): list failed executions and retry them, instead of a list of IDs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from workflow_retry.errors import PayloadError
from workflow_retry.ids import InvalidExecutionId, display_value, parse_execution_id
from workflow_retry.models import RequestedId, RetryRequest, SweepRequest
from workflow_retry.policy import RETRYABLE_STATUSES, WorkflowSelector, policy_overrides

MAX_IDS_PER_CALL = 1000
_NO_ID_MESSAGE = (
    "no execution ID found in the payload: send {'executionId': '<uuid>'}, {'executionIds': [...]}, "
    "an execution object ({'id': ..., 'workflowExternalId': ...}) or {'items': [<execution>, ...]}"
)
_MISSING = object()


class CognitePayload(BaseModel):
    """The keys of a payload that matter here; the values of ID fields are checked one by one later."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    execution_id: Any = Field(default=_MISSING, alias="executionId")
    execution_ids: list[Any] | None = Field(default=None, alias="executionIds")
    id: Any = Field(default=_MISSING)
    workflow_external_id: Any = Field(default=_MISSING, alias="workflowExternalId")
    items: list[Any] | None = None
    dry_run: StrictBool = Field(default=False, alias="dryRun")
    policy: Any = None
    sweep: Any = None

    def raw_ids(self) -> Iterator[tuple[object, str | None]]:
        """Every ID value in payload order, with a problem found before validation (or None)."""
        if self.execution_id is not _MISSING:
            yield self.execution_id, None
        for value in self.execution_ids or ():
            yield value, None
        if self.id is not _MISSING and self.workflow_external_id is not _MISSING:
            yield self.id, None
        for position, item in enumerate(self.items or ()):
            if isinstance(item, dict) and "id" in item:
                yield item["id"], None
            else:
                yield item, f"items[{position}] is not an execution object with an 'id'"

    def has_id_field(self) -> bool:
        return (
            self.execution_id is not _MISSING
            or self.execution_ids is not None
            or (self.id is not _MISSING and self.workflow_external_id is not _MISSING)
            or self.items is not None
        )


def parse_payload(data: object) -> RetryRequest:
    """Read a payload into one clean request, or raise :class:`PayloadError` saying what is wrong."""
    if not isinstance(data, dict):
        raise PayloadError(f"the payload must be a JSON object, got {type(data).__name__}")
    try:
        payload = CognitePayload.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(describe_validation_error(exc)) from None
    overrides = policy_overrides(payload.policy) or None
    if payload.sweep is not None and payload.sweep is not False:
        if payload.has_id_field():
            raise PayloadError("a sweep payload lists no execution IDs: send 'sweep' or IDs, not both")
        return RetryRequest(ids=(), dry_run=payload.dry_run, policy=overrides, sweep=parse_sweep(payload.sweep))
    if not payload.has_id_field():
        raise PayloadError(_NO_ID_MESSAGE)
    raw = list(payload.raw_ids())
    if len(raw) > MAX_IDS_PER_CALL:
        raise PayloadError(f"too many execution IDs: {len(raw)}, at most {MAX_IDS_PER_CALL} per call")
    if not raw:
        raise PayloadError("the payload lists no execution ID (the list is empty)")
    return RetryRequest(ids=tuple(distinct_ids(raw)), dry_run=payload.dry_run, policy=overrides)


class SweepPayload(BaseModel):
    """The ``sweep`` object of a payload; statuses must be ones CDF can retry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workflows: list[WorkflowSelector] | None = Field(default=None, max_length=100)
    lookback_minutes: int | None = Field(default=None, alias="lookbackMinutes", ge=1, le=90 * 24 * 60)
    statuses: list[str] | None = Field(default=None, min_length=1)
    max_restarts: int | None = Field(default=None, alias="maxRestarts", ge=1, le=1000)


def parse_sweep(value: object) -> SweepRequest:
    """The ``sweep`` value (an object, or ``true`` for the configured defaults) as a request."""
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise PayloadError("'sweep' must be an object (or true for the configured defaults)")
    try:
        sweep = SweepPayload.model_validate(value)
    except ValidationError as exc:
        raise PayloadError(describe_validation_error(exc, "sweep")) from None
    statuses = None if sweep.statuses is None else tuple(s.upper() for s in sweep.statuses)
    if statuses is not None and not set(statuses) <= RETRYABLE_STATUSES:
        wrong = sorted(set(statuses) - RETRYABLE_STATUSES)
        raise PayloadError(f"invalid sweep: statuses {wrong} cannot be retried (use FAILED, TIMED_OUT, TERMINATED)")
    return SweepRequest(
        workflows=None if sweep.workflows is None else tuple(str(w) for w in sweep.workflows),
        lookback_minutes=sweep.lookback_minutes,
        statuses=statuses,
        max_restarts=sweep.max_restarts,
    )


def distinct_ids(raw: list[tuple[object, str | None]]) -> Iterator[RequestedId]:
    """Validate each value; keep the first of each distinct ID (valid or not), in input order."""
    seen: set[str] = set()
    for value, problem in raw:
        requested = _requested_id(value, problem)
        key = requested.execution_id or f"invalid:{requested.shown}"
        if key not in seen:
            seen.add(key)
            yield requested


def _requested_id(value: object, problem: str | None) -> RequestedId:
    if problem is not None:
        return RequestedId(shown=display_value(value), problem=problem)
    try:
        execution_id = parse_execution_id(value)
    except InvalidExecutionId as exc:
        return RequestedId(shown=display_value(value), problem=f"invalid execution ID: {exc}")
    return RequestedId(shown=execution_id, execution_id=execution_id)


def describe_validation_error(exc: ValidationError, what: str = "payload") -> str:
    """A pydantic error as one line, without echoing the caller's values."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:5]:
        location = ".".join(str(part) for part in error["loc"]) or what
        parts.append(f"{location}: {error['msg']}")
    return f"invalid {what}: " + "; ".join(parts)
