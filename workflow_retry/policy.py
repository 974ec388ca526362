"""The retry policy and the pure decision it makes about one execution (no I/O here).

:class:`RetryPolicy` is one typed configuration, the same on every platform. It is built from three
layers, the first that sets a field wins: the call's data (``{"policy": {...}}`` in a payload), the
environment (``RETRY_*`` variables, see :data:`ENVIRONMENT_VARIABLES`), then the defaults below.
:func:`resolve_policy` merges them and raises :class:`ConfigurationError` for anything invalid, so
a bad setting is refused before any request to CDF. The environment with its defaults is the
operator's ceiling: the call's data may only tighten it (:func:`loosenings` gives the order of each
field), unless ``RETRY_ALLOW_PAYLOAD_LOOSENING`` is true; otherwise :class:`PolicyOverrideError`.

:func:`decide` turns an execution (as CDF reports it) and its attempt history (from the ledger) into
one :class:`Decision`. The checks run in a fixed order, and the first that applies decides:

1. status: only FAILED, TIMED_OUT and TERMINATED can be retried -> ``skip``
2. workflow: not in ``includeWorkflows`` (when set) or in ``excludeWorkflows`` -> ``skip``
3. age: ended longer ago than ``maxAgeHours`` -> ``skip``
4. reason: a ``reasonForIncompletion`` (of the execution or a failed task) matches one of
   ``skipReasonPatterns`` -> ``skip``, naming the pattern (matched by RE2 in linear time, whoever
   wrote the pattern: see :mod:`workflow_retry.patterns`)
5. terminal errors: every failed task is FAILED_WITH_TERMINAL_ERROR (and ``retryTerminalErrors`` is
   false) -> ``skip``
6. access: a failed task's (else the execution's) ``reasonForIncompletion`` is an access error
   (:data:`ACCESS_ERROR_PATTERNS`: an HTTP 403, Forbidden, missing capability, insufficient access
   or permissions, access or permission denied) and ``skipAccessErrors`` is true (the default) ->
   ``skip`` with ``announce``: told once, as a give-up is, naming the missing capability when the
   reason names one (a retry runs as this tool's principal, and would fail the same way)
7. in flight: the last retry was sent after this failure ended, moments ago (the read predates
   that retry: another invocation's, or a stale answer; or that retry's request was lost) -> ``defer``
   until the window has passed: never ``skip``, which would drop a delivery whose retry never ran
8. cap: already retried ``maxAttempts`` times -> ``exhausted``
9. cooldown: the last retry was less than the cooldown ago -> ``defer``
10. ``dryRun`` -> ``report_only``; otherwise ``retry``.

Checks 1-5 need only the execution as listed (:func:`screen`, used by sweeps before reading any
detail); 6 needs the failed tasks, so a sweep leaves it to the detailed read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from workflow_retry.errors import ConfigurationError, PolicyOverrideError
from workflow_retry.patterns import PatternError, compile_pattern

RETRYABLE_STATUSES = frozenset({"FAILED", "TIMED_OUT", "TERMINATED"})
"""The execution statuses CDF's retry endpoint accepts."""

FAILED_TASK_STATUSES = frozenset({"FAILED", "FAILED_WITH_TERMINAL_ERROR", "TIMED_OUT"})
"""Task statuses that count as a failure of the task (CANCELED tasks are collateral, not causes)."""

TERMINAL_TASK_STATUS = "FAILED_WITH_TERMINAL_ERROR"

_MS_PER_HOUR = 3_600_000
IN_FLIGHT_WINDOW_MS = 60_000
"""How long after a retry a read showing the failure from before it is taken as stale. Bounded, so
that a clock difference between CDF and this function can delay a decision but never block it."""


class Action(StrEnum):
    RETRY = "retry"
    SKIP = "skip"
    REPORT_ONLY = "report_only"
    DEFER = "defer"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True)
class Decision:
    """What to do with one execution, and why (the reason is shown to the user as is)."""

    action: Action
    reason: str
    attempt: int | None = None
    """For ``retry`` and ``report_only``: the number this attempt would have (1 = first retry)."""
    not_before_ms: int | None = None
    """For ``defer``: the earliest time (epoch ms) the next retry is allowed."""
    announce: bool = False
    """For ``skip``: a person must be told (an access error), once per execution, as a give-up is."""


def _split_list(value: object) -> object:
    """Environment values: a JSON array, or a comma-separated list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                raise ValueError("is not a valid JSON array") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class WorkflowSelector(BaseModel):
    """A workflow, optionally one version of it: ``"wf"``, ``"wf:2"`` or ``{"externalId": "wf", "version": "2"}``.

    The string form splits on the last ``:``; use the object form for an external ID that contains one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    external_id: str = Field(min_length=1, max_length=255)
    version: str | None = Field(default=None, min_length=1, max_length=255)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: object) -> object:
        if isinstance(value, str):
            external_id, sep, version = value.rpartition(":")
            return {"externalId": external_id, "version": version} if sep else {"externalId": value}
        return value

    def matches(self, workflow_external_id: object, version: object) -> bool:
        if workflow_external_id != self.external_id:
            return False
        return self.version is None or str(version) == self.version

    def __str__(self) -> str:
        return self.external_id if self.version is None else f"{self.external_id}:{self.version}"

    def as_filter(self) -> dict[str, str]:
        """The ``workflowFilters`` item of the executions list endpoint."""
        return {"externalId": self.external_id} | ({"version": self.version} if self.version else {})


WorkflowList = Annotated[tuple[WorkflowSelector, ...], BeforeValidator(_split_list)]


def _pattern_list(value: object) -> object:
    """Environment values: a JSON array, or one pattern (a regular expression may hold commas)."""
    if isinstance(value, str) and not value.strip().startswith("["):
        return [value]
    return _split_list(value)


PatternList = Annotated[tuple[str, ...], BeforeValidator(_pattern_list)]


class RetryPolicy(BaseModel):
    """Which failed executions are retried, how often and how soon. Keys are camelCase in payloads."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    max_attempts: int = Field(
        default=3, ge=1, le=100, description="Retries of one execution; then its outcome is `exhausted`"
    )
    cooldown_seconds: float = Field(
        default=300.0, ge=0, le=7 * 86_400, description="Minimum time between the first and second retry"
    )
    cooldown_factor: float = Field(
        default=2.0, ge=1, le=10, description="Each further retry waits this many times longer than the one before"
    )
    cooldown_max_seconds: float = Field(
        default=3600.0, ge=0, le=7 * 86_400, description="The wait between two retries never exceeds this"
    )
    include_workflows: WorkflowList = Field(
        default=(), description="Only these workflows (`wf` or `wf:version`) are retried; empty: all"
    )
    exclude_workflows: WorkflowList = Field(default=(), description="These workflows are never retried")
    skip_reason_patterns: PatternList = Field(
        default=(),
        description="Regular expressions (RE2 syntax: linear time, no backreferences or lookarounds; "
        "case-insensitive, searched) on reasonForIncompletion of the execution and its failed tasks: a match "
        "means the failure is not worth retrying",
    )
    retry_terminal_errors: bool = Field(
        default=False, description="Retry executions whose failed tasks are all FAILED_WITH_TERMINAL_ERROR"
    )
    max_age_hours: float = Field(
        default=24.0, gt=0, le=24 * 90, description="Executions that ended longer ago than this are not retried"
    )
    skip_access_errors: bool = Field(
        default=True,
        description="Skip (and announce as a give-up) an execution whose failure is an access error (403, "
        "missing capability): a retry runs as this tool's principal and fails the same way",
    )

    @field_validator("skip_reason_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            if not pattern:
                raise ValueError("a skip reason pattern is empty (it would match every failure)")
            try:
                compile_pattern(pattern)
            except PatternError as exc:
                raise ValueError(f"pattern {pattern!r} is {exc}") from None
        return patterns

    @model_validator(mode="after")
    def _consistent(self) -> RetryPolicy:
        if self.cooldown_max_seconds < self.cooldown_seconds:
            raise ValueError("cooldownMaxSeconds must not be smaller than cooldownSeconds")
        overlap = {str(s) for s in self.include_workflows} & {str(s) for s in self.exclude_workflows}
        if overlap:
            raise ValueError(f"workflows both included and excluded: {sorted(overlap)}")
        return self

    def cooldown_after(self, attempts: int) -> float:
        """Seconds to wait after retry number ``attempts`` before the next one (0 before the first)."""
        if attempts <= 0:
            return 0.0
        return float(min(self.cooldown_seconds * self.cooldown_factor ** (attempts - 1), self.cooldown_max_seconds))

    def workflow_filters(self) -> list[dict[str, str]]:
        """``includeWorkflows`` as list-endpoint filters (empty: every workflow)."""
        return [selector.as_filter() for selector in self.include_workflows]


DEFAULT_POLICY = RetryPolicy()

ENVIRONMENT_VARIABLES: Mapping[str, str] = {
    "RETRY_MAX_ATTEMPTS": "max_attempts",
    "RETRY_COOLDOWN_SECONDS": "cooldown_seconds",
    "RETRY_COOLDOWN_FACTOR": "cooldown_factor",
    "RETRY_COOLDOWN_MAX_SECONDS": "cooldown_max_seconds",
    "RETRY_INCLUDE_WORKFLOWS": "include_workflows",
    "RETRY_EXCLUDE_WORKFLOWS": "exclude_workflows",
    "RETRY_SKIP_REASON_PATTERNS": "skip_reason_patterns",
    "RETRY_TERMINAL_ERRORS": "retry_terminal_errors",
    "RETRY_MAX_AGE_HOURS": "max_age_hours",
    "RETRY_SKIP_ACCESS_ERRORS": "skip_access_errors",
}
"""Environment variable -> policy field. Lists: a JSON array or comma-separated values."""


def policy_overrides(data: object) -> dict[str, Any]:
    """Validate the ``policy`` object of a call's data on its own; the fields it sets, by field name.

    Raises :class:`ConfigurationError` naming the bad key (unknown keys are refused: a typo must not
    silently leave a default in force).
    """
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigurationError("invalid policy: 'policy' must be an object")
    try:
        partial = RetryPolicy.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, "policy")) from None
    # In the fields' declared order, not the set's: a refusal names its fields in the same order every run.
    return {name: getattr(partial, name) for name in RetryPolicy.model_fields if name in partial.model_fields_set}


LOOSENING_VARIABLE = "RETRY_ALLOW_PAYLOAD_LOOSENING"
"""``true``: a call's ``policy`` and ``sweep`` may set any valid value. Unset or ``false``: they may only
tighten the environment's (its defaults included)."""

_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off", ""})


def environment_policy(environment: Mapping[str, str]) -> RetryPolicy:
    """The operator's policy: the environment's ``RETRY_*`` fields over the defaults.

    It is the ceiling of every call's ``policy`` (see :func:`loosenings`). Raises
    :class:`ConfigurationError` naming the variable when a value is invalid.
    """
    from_environment: dict[str, Any] = {}
    for variable, field in ENVIRONMENT_VARIABLES.items():
        value = environment.get(variable)
        if value is not None and value.strip() != "":
            from_environment[field] = value.strip()
    try:
        return RetryPolicy.model_validate(from_environment)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, "policy from the environment", ENVIRONMENT_VARIABLES)) from None


def loosening_allowed(environment: Mapping[str, str]) -> bool:
    """Whether the operator lets a call's ``policy`` loosen the environment's (``RETRY_ALLOW_PAYLOAD_LOOSENING``)."""
    value = environment.get(LOOSENING_VARIABLE, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"invalid {LOOSENING_VARIABLE}: use true or false")


_VARIABLE_OF = {field: variable for variable, field in ENVIRONMENT_VARIABLES.items()}


def loosenings(call: Mapping[str, Any], ceiling: RetryPolicy) -> list[str]:
    """What a call's fields (by field name) loosen in the operator's policy, one line each (empty: none).

    Tightening, field by field (anything else loosens): ``maxAttempts`` and ``maxAgeHours`` no higher;
    ``cooldownSeconds``, ``cooldownFactor`` and ``cooldownMaxSeconds`` no lower (every wait at least as
    long); ``includeWorkflows`` only workflows the operator's list covers (any, when that list is
    empty; an empty list when the operator's is not would mean "all"); ``excludeWorkflows`` and
    ``skipReasonPatterns`` keep every entry of the operator's and may add more; ``retryTerminalErrors``
    true only when the operator's is; ``skipAccessErrors`` false only when the operator's is. The
    sweep's own limits: ``workflow_retry.payloads.sweep_loosenings``.
    """
    problems: list[str] = []

    def refuse(field: str, value: object, why: str) -> None:
        problems.append(f"{to_camel(field)} {_shown(value)} {why} ({_VARIABLE_OF[field]} or its default)")

    for field, value in call.items():
        limit = getattr(ceiling, field)
        if field in ("max_attempts", "max_age_hours") and value > limit:
            refuse(field, value, f"is above the operator's limit {limit:g}")
        elif field in ("cooldown_seconds", "cooldown_factor", "cooldown_max_seconds") and value < limit:
            refuse(field, value, f"is below the operator's {limit:g}")
        elif field == "retry_terminal_errors" and value and not limit:
            refuse(field, value, "retries what the operator does not (false)")
        elif field == "skip_access_errors" and not value and limit:
            refuse(field, value, "retries what the operator skips (true)")
        elif field == "include_workflows" and limit:
            outside = [s for s in value if not any(selector_covers(mine, s) for mine in limit)]
            if not value or outside:
                what = f"reaches {_shown([str(s) for s in outside])}" if outside else "means every workflow"
                operators = _shown([str(s) for s in limit])
                refuse(field, [str(s) for s in value], f"{what}, beyond the operator's {operators}")
        elif field == "exclude_workflows":
            dropped = [str(mine) for mine in limit if not any(selector_covers(s, mine) for s in value)]
            if dropped:
                refuse(field, [str(s) for s in value], f"leaves out {_shown(dropped)}, which the operator excludes")
        elif field == "skip_reason_patterns":
            dropped = [pattern for pattern in limit if pattern not in value]
            if dropped:
                refuse(field, list(value), f"leaves out {_shown(dropped)}, which the operator skips on")
    return problems


def _fields(policy: RetryPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in RetryPolicy.model_fields}


def selector_covers(wide: WorkflowSelector, narrow: WorkflowSelector) -> bool:
    """Whether every execution ``narrow`` matches is matched by ``wide``."""
    return wide.external_id == narrow.external_id and (wide.version is None or wide.version == narrow.version)


def _shown(value: object, limit: int = 120) -> str:
    """A value as a message shows it (cut short: a payload's list may be long)."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, str | list):
        text = repr(value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def refusal_message(problems: list[str]) -> str:
    """The message of a :class:`PolicyOverrideError`: every refused field, and how to allow it."""
    return (
        "override refused: " + "; ".join(problems) + ". A payload may tighten the operator's limits, never "
        f"loosen them (set {LOOSENING_VARIABLE}=true to allow that)"
    )


def resolve_policy(call: Mapping[str, Any] | None, environment: Mapping[str, str]) -> RetryPolicy:
    """The policy in force: the call's fields over the environment's over the defaults.

    ``call`` holds field names (from :func:`policy_overrides`); ``environment`` is passed in (e.g.
    ``os.environ``) so that this stays free of I/O. The environment's policy (defaults included) is
    the ceiling: a call that loosens it raises :class:`PolicyOverrideError` naming each field, unless
    the operator set ``RETRY_ALLOW_PAYLOAD_LOOSENING=true``. An invalid environment raises
    :class:`ConfigurationError`.
    """
    ceiling = environment_policy(environment)
    if call and not loosening_allowed(environment):
        problems = loosenings(call, ceiling)
        if problems:
            raise PolicyOverrideError(refusal_message(problems))
    try:
        return RetryPolicy.model_validate({**_fields(ceiling), **(call or {})})
    except ValidationError as exc:
        raise PolicyOverrideError(_describe(exc, "policy")) from None


def _describe(exc: ValidationError, what: str, variables: Mapping[str, str] | None = None) -> str:
    by_field = {field: variable for variable, field in (variables or {}).items()}
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:5]:
        location = [str(part) for part in error["loc"]]
        if location and location[0] in by_field:
            location[0] = by_field[location[0]]
        elif location and location[0] in RetryPolicy.model_fields:
            location[0] = to_camel(location[0])
        parts.append(f"{'.'.join(location) or what}: {error['msg']}")
    return f"invalid {what}: " + "; ".join(parts)


# -- decisions --------------------------------------------------------------------------------------


def screen(execution: Mapping[str, Any], policy: RetryPolicy, now_ms: int) -> str | None:
    """The checks that need only the execution (1-5): why it must not be retried, or None.

    Works on a list item too (no ``executedTasks``): the task checks then pass, and run again later
    on the detailed execution.
    """
    status = str(execution.get("status", "")).upper()
    if status not in RETRYABLE_STATUSES:
        return f"status is {status or 'unknown'}; only FAILED, TIMED_OUT and TERMINATED are retried"
    workflow, version = execution.get("workflowExternalId"), execution.get("version")
    shown = f"{workflow}:{version}" if version is not None else str(workflow)
    if policy.include_workflows and not any(s.matches(workflow, version) for s in policy.include_workflows):
        return f"workflow {shown} is not in includeWorkflows"
    excluded = next((s for s in policy.exclude_workflows if s.matches(workflow, version)), None)
    if excluded is not None:
        return f"workflow {shown} is excluded (excludeWorkflows '{excluded}')"
    ended = _int(execution.get("endTime")) or _int(execution.get("createdTime"))
    if ended is not None and now_ms - ended > policy.max_age_hours * _MS_PER_HOUR:
        hours = (now_ms - ended) / _MS_PER_HOUR
        return f"ended {hours:.1f} h ago, longer ago than maxAgeHours ({policy.max_age_hours:g} h)"
    for source, reason in _failure_reasons(execution):
        for pattern in policy.skip_reason_patterns:
            if compile_pattern(pattern).search(reason):
                return f"reasonForIncompletion of {source} matches skip pattern '{pattern}'"
    failed = failed_tasks(execution)
    if failed and not policy.retry_terminal_errors and all(t.get("status") == TERMINAL_TASK_STATUS for t in failed):
        names = ", ".join(str(t.get("externalId")) for t in failed[:5])
        return f"every failed task ended FAILED_WITH_TERMINAL_ERROR ({names}); set retryTerminalErrors to retry them"
    return None


def decide(
    execution: Mapping[str, Any],
    *,
    dry_run: bool,
    policy: RetryPolicy = DEFAULT_POLICY,
    attempts: int = 0,
    last_attempt_ms: int | None = None,
    now_ms: int | None = None,
) -> Decision:
    """What to do with an execution, given its state in CDF and its attempts so far (from the ledger)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    problem = screen(execution, policy, now)
    if problem is not None:
        return Decision(Action.SKIP, problem)
    access = access_error(execution) if policy.skip_access_errors else None
    if access is not None:
        return Decision(Action.SKIP, access, announce=True)
    status = str(execution.get("status", "")).upper()
    ended = failure_key(execution)
    if (
        last_attempt_ms is not None
        and ended is not None
        and ended < last_attempt_ms
        and now - last_attempt_ms < IN_FLIGHT_WINDOW_MS
    ):
        # Deferred, not skipped: when that retry's request was lost (a 5xx, a timeout) the execution
        # never restarts, and a skip would drop the redelivery that is its only way back.
        not_before = last_attempt_ms + IN_FLIGHT_WINDOW_MS
        return Decision(
            Action.DEFER,
            f"retry {attempts} was sent at {format_time(last_attempt_ms)}, after this failure: it may still be "
            f"starting; to be looked at again from {format_time(not_before)}",
            not_before_ms=not_before,
        )
    if attempts >= policy.max_attempts:
        when = f"; last at {format_time(last_attempt_ms)}" if last_attempt_ms else ""
        return Decision(Action.EXHAUSTED, f"retried {attempts} time(s), maxAttempts is {policy.max_attempts}{when}")
    wait_ms = int(policy.cooldown_after(attempts) * 1000)
    if last_attempt_ms is not None and wait_ms > 0 and now < last_attempt_ms + wait_ms:
        not_before = last_attempt_ms + wait_ms
        return Decision(
            Action.DEFER,
            f"cooling down: retry {attempts + 1} of {policy.max_attempts} is allowed from "
            f"{format_time(not_before)} (in {_duration(not_before - now)})",
            not_before_ms=not_before,
        )
    attempt = attempts + 1
    if dry_run:
        return Decision(
            Action.REPORT_ONLY, f"would retry: status is {status} (attempt {attempt} of {policy.max_attempts})", attempt
        )
    return Decision(Action.RETRY, f"retried from the point of failure (status was {status})", attempt)


ACCESS_ERROR_PATTERNS: tuple[str, ...] = (
    # 403 as an HTTP status ("status 403", "status code: 403", "HTTP 403", "HTTP/1.1 403", "error 403",
    # '"code": 403'), not any 403 ("loaded 403 rows").
    r"\b(?:status|code|http|error|response)[^a-z0-9]{0,3}(?:code[^a-z0-9]{0,3})?403\b",
    r"\bhttp/\d(?:\.\d)?\s+403\b",
    r"\bforbidden\b",
    r"\bmissing\s+capabilit(?:y|ies)\b",
    r"\binsufficient\s+(?:access|permissions?|privileges?|rights)\b",
    r"\baccess\s+denied\b",
    r"\bpermission\s+denied\b",
)
"""What makes a ``reasonForIncompletion`` an access error (case-insensitive searches, RE2). A 401 is
not one: it is an expired or refused token, which a retry's fresh session may well not meet again."""

_ANY_ACCESS_ERROR = "|".join(f"(?:{pattern})" for pattern in ACCESS_ERROR_PATTERNS)
"""The patterns as one alternation: one search per reason instead of one per pattern (it runs for every ID)."""

_CAPABILITY = r"\b([a-z][a-z0-9]*acl(?::[a-z_]+)?)\b"
"""A capability as CDF names it: ``functionsAcl:WRITE``, ``timeSeriesAcl``."""
_MAX_CAPABILITIES_SHOWN = 5


def access_error(execution: Mapping[str, Any]) -> str | None:
    """Why the execution's failure is an access error (naming missing capabilities found), or None.

    The failed tasks' reasons are looked at first (they name what was refused), then the execution's.
    """
    tasks_first = sorted(_failure_reasons(execution), key=lambda item: item[0] == "the execution")
    for source, reason in tasks_first:
        if compile_pattern(_ANY_ACCESS_ERROR).search(reason):
            found = missing_capabilities(reason)
            named = f" (missing capability {', '.join(found)})" if found else ""
            return (
                f"reasonForIncompletion of {source} is an access error{named}: a retry runs as this tool's "
                "principal and would fail the same way; not retried (give the principal the access, then retry "
                "by ID; RETRY_SKIP_ACCESS_ERRORS=false turns this check off)"
            )
    return None


def missing_capabilities(reason: str) -> list[str]:
    """The capabilities a reason names (``functionsAcl:WRITE``), in order, at most a few."""
    found: list[str] = []
    for capability in compile_pattern(_CAPABILITY).find_all(reason):
        if capability not in found:
            found.append(capability)
        if len(found) == _MAX_CAPABILITIES_SHOWN:
            break
    return found


def retry_was_applied(execution_after: Mapping[str, Any]) -> bool:
    """After a retry request that failed, whether CDF shows the execution restarted anyway.

    An execution that was FAILED, TIMED_OUT or TERMINATED when we read it and is RUNNING now has been
    restarted (by our request whose answer was lost, or by a concurrent caller): it must not be
    restarted again.
    """
    return str(execution_after.get("status", "")).upper() == "RUNNING"


def failed_tasks(execution: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The executed tasks that failed (empty when the execution holds no ``executedTasks``)."""
    tasks = execution.get("executedTasks")
    if not isinstance(tasks, list):
        return []
    return [t for t in tasks if isinstance(t, Mapping) and t.get("status") in FAILED_TASK_STATUSES]


def failure_key(execution: Mapping[str, Any]) -> int | None:
    """When the execution failed (epoch ms; ``endTime``, else ``createdTime``): oldest first in sweeps."""
    return _int(execution.get("endTime")) or _int(execution.get("createdTime"))


def _failure_reasons(execution: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    reason = execution.get("reasonForIncompletion")
    if isinstance(reason, str) and reason:
        yield "the execution", reason
    for task in failed_tasks(execution):
        task_reason = task.get("reasonForIncompletion")
        if isinstance(task_reason, str) and task_reason:
            yield f"task '{task.get('externalId')}'", task_reason


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def format_time(epoch_ms: int | None) -> str:
    """An epoch-ms time as ISO 8601 UTC to the second (``-`` for None)."""
    if epoch_ms is None:
        return "-"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(ms: int) -> str:
    seconds = max(0, round(ms / 1000))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
