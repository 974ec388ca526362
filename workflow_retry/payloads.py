"""The payloads a caller may send (a Cognite Function's ``data``, an event's body) -> :class:`RetryRequest`.

Accepted shapes, which may be combined in one payload (IDs are then taken in this order):

- ``{"executionId": "<uuid>"}``
- ``{"executionIds": ["<uuid>", ...]}``
- an execution object as the API returns it: ``{"id": "<uuid>", "workflowExternalId": "...", ...}``
- ``{"items": [<execution object>, ...]}`` (the shape of the executions list endpoint)

plus ``"dryRun": true`` and ``"fullExecution": true`` (each result then carries the whole execution
as read, not the compact one) on any of them. Other keys are ignored. A per-ID problem becomes an
``invalid`` result; a payload with no ID at all, or with a field of the wrong type, raises
:class:`PayloadError`.

Also accepted (docs/policy-and-sweeps.md):

- ``"policy": {"maxAttempts": 2, ...}`` on any payload: this call's retry policy over the
  environment's (an unknown or invalid key raises :class:`ConfigurationError`);
- ``{"sweep": {"workflows": ["wf-a", "wf-b:2"], "lookbackMinutes": 60, "statuses": ["FAILED"],
  "maxRestarts": 20}}`` (every key optional; ``{"sweep": {}}`` or ``{"sweep": true}`` uses the
  configured defaults): list failed executions and retry them, instead of a list of IDs.
  ``lookbackMinutes`` narrows the sweep to failures that ended that recently.

A payload's ``policy`` and ``sweep`` may tighten the operator's limits, never loosen them (unless
RETRY_ALLOW_PAYLOAD_LOOSENING is true): :func:`check_limits`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from workflow_retry.errors import ConfigurationError, PayloadError, PolicyOverrideError
from workflow_retry.ids import InvalidExecutionId, display_value, parse_execution_id
from workflow_retry.models import RequestedId, RetryRequest, SweepRequest
from workflow_retry.policy import (
    RETRYABLE_STATUSES,
    WorkflowSelector,
    environment_policy,
    loosening_allowed,
    loosenings,
    policy_overrides,
    refusal_message,
    resolve_policy,
    selector_covers,
)

if TYPE_CHECKING:
    from workflow_retry.settings import Settings

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
    full_execution: StrictBool = Field(default=False, alias="fullExecution")
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


def parse_payload(
    data: object, *, environment: Mapping[str, str] | None = None, settings: Settings | None = None
) -> RetryRequest:
    """Read a payload into one clean request, or raise :class:`PayloadError` saying what is wrong.

    Its ``policy`` and ``sweep`` are checked against the operator's limits (``environment``, default
    ``os.environ``; ``settings``, default the process's): one that loosens them raises
    :class:`PolicyOverrideError` (see :func:`check_limits`).
    """
    request = _parse(data)
    check_limits(request, os.environ if environment is None else environment, settings)
    return request


def _parse(data: object) -> RetryRequest:
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
        return RetryRequest(
            ids=(),
            dry_run=payload.dry_run,
            full_execution=payload.full_execution,
            policy=overrides,
            sweep=parse_sweep(payload.sweep),
        )
    if not payload.has_id_field():
        raise PayloadError(_NO_ID_MESSAGE)
    raw = list(payload.raw_ids())
    if len(raw) > MAX_IDS_PER_CALL:
        raise PayloadError(f"too many execution IDs: {len(raw)}, at most {MAX_IDS_PER_CALL} per call")
    if not raw:
        raise PayloadError("the payload lists no execution ID (the list is empty)")
    return RetryRequest(
        ids=tuple(distinct_ids(raw)),
        dry_run=payload.dry_run,
        full_execution=payload.full_execution,
        policy=overrides,
    )


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


def check_limits(request: RetryRequest, environment: Mapping[str, str], settings: Settings | None = None) -> None:
    """Refuse a request whose ``policy`` or ``sweep`` loosens the operator's limits (:class:`PolicyOverrideError`).

    Checked as the payload is read, so that a refused override costs nothing and an event carrying it
    is reported, not delivered again. When the environment itself is invalid, nothing is decided here:
    running the request reports that (and an event comes again once the operator fixed it).
    """
    try:
        allowed = loosening_allowed(environment)
        ceiling = environment_policy(environment)
        if request.sweep is not None and settings is None and not allowed:
            from workflow_retry.settings import cached_settings  # settings imports this module

            settings = cached_settings()
    except ConfigurationError:
        return
    problems: list[str] = []
    if not allowed and request.policy:
        problems += loosenings(request.policy, ceiling)
    if not allowed and request.sweep is not None and settings is not None:
        problems += sweep_loosenings(request.sweep, settings)
    if problems:
        raise PolicyOverrideError(refusal_message(problems))
    if request.policy:
        resolve_policy(request.policy, environment)  # the layers together (e.g. cooldownMaxSeconds >= cooldownSeconds)


def sweep_loosenings(sweep: SweepRequest, settings: Settings) -> list[str]:
    """What a sweep request loosens in the operator's sweep settings, one line each (empty: none).

    Tightening: ``maxRestarts`` no higher than RETRY_SWEEP_MAX_RESTARTS (or its default);
    ``lookbackMinutes`` no higher than RETRY_SWEEP_LOOKBACK_MINUTES when that is set (unset, the
    age limit, which a payload cannot raise, bounds the window); ``workflows`` only ones RETRY_SWEEP_WORKFLOWS
    covers (any, when it is empty); ``statuses`` only ones RETRY_SWEEP_STATUSES lists.
    """
    problems: list[str] = []
    if sweep.max_restarts is not None and sweep.max_restarts > settings.sweep_max_restarts:
        problems.append(
            f"sweep.maxRestarts {sweep.max_restarts} is above the operator's limit {settings.sweep_max_restarts} "
            "(RETRY_SWEEP_MAX_RESTARTS or its default)"
        )
    if (
        sweep.lookback_minutes is not None
        and settings.sweep_lookback_minutes is not None
        and sweep.lookback_minutes > settings.sweep_lookback_minutes
    ):
        problems.append(
            f"sweep.lookbackMinutes {sweep.lookback_minutes} is above the operator's limit "
            f"{settings.sweep_lookback_minutes} (RETRY_SWEEP_LOOKBACK_MINUTES)"
        )
    allowed = [WorkflowSelector.model_validate(text) for text in _split(settings.sweep_workflows)]
    if sweep.workflows is not None and allowed:
        asked = [WorkflowSelector.model_validate(text) for text in sweep.workflows]
        outside = [str(s) for s in asked if not any(selector_covers(mine, s) for mine in allowed)]
        if outside or not asked:
            what = f"reaches {outside}" if outside else "[] means every workflow"
            problems.append(
                f"sweep.workflows {what}, beyond the operator's {[str(s) for s in allowed]} (RETRY_SWEEP_WORKFLOWS)"
            )
    operator_statuses = {s.upper() for s in _split(settings.sweep_statuses)}
    if sweep.statuses is not None and not set(sweep.statuses) <= operator_statuses:
        problems.append(
            f"sweep.statuses {sorted(set(sweep.statuses) - operator_statuses)} are not among the operator's "
            f"{sorted(operator_statuses)} (RETRY_SWEEP_STATUSES or its default)"
        )
    return problems


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


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
