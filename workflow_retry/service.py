"""Orchestration: every requested ID gets exactly one result, within a deadline, with bounded concurrency.

``retry_executions`` is the core: it takes one :class:`RetryRequest`, asks ``policy`` what to do with
each execution and acts through a :class:`CdfGateway`. It does not know which platform called it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from workflow_retry.cdf import CdfGateway
from workflow_retry.errors import CdfRequestError, ExecutionNotFoundError
from workflow_retry.ids import ExecutionId
from workflow_retry.models import ErrorInfo, ExecutionResult, Outcome, RequestedId, RetryReport, RetryRequest
from workflow_retry.policy import Action, decide, retry_was_applied
from workflow_retry.settings import Settings

logger = logging.getLogger(__name__)

DEADLINE_MESSAGE = "not reached before the call's deadline"


async def retry_executions(request: RetryRequest, gateway: CdfGateway, settings: Settings) -> RetryReport:
    """Handle every ID of the request; the report has one result per ID, in request order."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.deadline_seconds
    slots = asyncio.Semaphore(settings.concurrency)

    async def handle_one(requested: RequestedId) -> ExecutionResult:
        if requested.execution_id is None:
            return _result(requested.shown, Outcome.INVALID, requested.problem or "invalid")
        try:
            async with asyncio.timeout_at(deadline), slots:
                return await retry_one(requested.execution_id, gateway, dry_run=request.dry_run)
        except TimeoutError:
            return _failed(requested.shown, CdfRequestError(None, DEADLINE_MESSAGE, retryable=True))

    results = await asyncio.gather(*(handle_one(r) for r in request.ids))
    report = RetryReport(results=tuple(results))
    for result in report.results:
        _log_result(result)
    return report


async def retry_one(execution_id: ExecutionId, gateway: CdfGateway, *, dry_run: bool) -> ExecutionResult:
    """Read the execution, decide, and retry it with a fresh session when it should be retried."""
    try:
        execution = await gateway.get_execution(execution_id)
    except ExecutionNotFoundError as exc:
        return _result(execution_id, Outcome.NOT_FOUND, f"CDF does not know this execution ({exc.code})")
    except CdfRequestError as exc:
        return _failed(execution_id, exc, "reading the execution failed")

    decision = decide(execution, dry_run=dry_run)
    if decision.action is Action.SKIP:
        return _result(execution_id, Outcome.SKIPPED, decision.reason, execution)
    if decision.action is Action.REPORT_ONLY:
        return _result(execution_id, Outcome.DRY_RUN, decision.reason, execution)

    try:
        nonce = await gateway.create_nonce()
    except CdfRequestError as exc:
        return _failed(execution_id, exc, "", execution)
    try:
        updated = await gateway.retry_execution(execution_id, nonce)
    except CdfRequestError as exc:
        return await _after_failed_retry(execution_id, gateway, exc, execution)
    return _result(execution_id, Outcome.RETRIED, decision.reason, updated)


async def _after_failed_retry(
    execution_id: ExecutionId, gateway: CdfGateway, error: CdfRequestError, before: dict[str, Any]
) -> ExecutionResult:
    """A retry request failed: find out whether the execution runs again before calling it a failure.

    A 5xx or timeout may come after CDF restarted the execution (the answer was lost); the SDK then
    repeats the POST, which CDF refuses (the nonce was used, the execution is RUNNING). Reading the
    execution again tells these apart from a real failure, so an ID that runs again is never reported
    as failed, and so never retried a second time by whoever acts on the report.
    """
    try:
        after = await gateway.get_execution(execution_id)
    except CdfRequestError:
        after = None
    if after is not None and retry_was_applied(after):
        reason = (
            f"retried: the execution is RUNNING again, though CDF's answer to the retry request was: {error.message}"
        )
        return _result(execution_id, Outcome.RETRIED, reason, after)
    return _failed(execution_id, error, "the retry request failed", after or before)


def _result(
    execution_id: str, outcome: Outcome, reason: str, execution: dict[str, Any] | None = None
) -> ExecutionResult:
    return ExecutionResult(execution_id=execution_id, outcome=outcome, reason=reason, execution=execution)


def _failed(
    execution_id: str, error: CdfRequestError, context: str = "", execution: dict[str, Any] | None = None
) -> ExecutionResult:
    reason = f"{context}: {error.message}" if context else error.message
    return ExecutionResult(
        execution_id=execution_id,
        outcome=Outcome.FAILED,
        reason=reason,
        execution=execution,
        error=ErrorInfo(code=error.code, message=error.message, retryable=error.retryable),
    )


def _log_result(result: ExecutionResult) -> None:
    level = logging.WARNING if result.outcome is Outcome.FAILED else logging.INFO
    logger.log(
        level,
        "execution %s: %s (%s)",
        result.execution_id,
        result.outcome.value,
        result.reason,
        extra={
            "execution_id": result.execution_id,
            "outcome": result.outcome.value,
            "retryable": result.error.retryable if result.error else None,
        },
    )
