"""Sweep mode: find failed executions through the list endpoint and retry them under the policy.

CDF has no failure webhook, so a scheduled sweep is how most users find failures. One sweep:

1. lists the executions created in the window (``lookbackMinutes``) with the given statuses, page by
   page (the next page is fetched while the current one is checked), keeping only a bounded set of
   candidates in memory: memory stays flat however many executions the window holds;
2. screens each listed execution with the policy (workflow, age, reason patterns), reads the ledger
   records of those left, reports ``exhausted`` ones (announced once) and leaves ``deferred`` ones
   for a later sweep;
3. of the executions the policy would retry now, keeps the oldest failures (by ``endTime``) in a
   bounded heap, and retries them oldest first with bounded concurrency until ``maxRestarts`` have
   been restarted (CDF runs at most 50 executions at once per project); the rest wait for the next
   sweep;
4. stops listing early enough to leave a quarter of the deadline for retrying, and reports what it
   did not reach.

The report's ``results`` hold what the sweep acted on (retried, would retry, failed, newly exhausted);
``sweep`` summarises everything it saw.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from workflow_retry.cdf import CdfGateway
from workflow_retry.errors import CdfRequestError, LedgerError
from workflow_retry.ids import ExecutionId, InvalidExecutionId, parse_execution_id
from workflow_retry.ledger import AttemptRecord
from workflow_retry.models import (
    ErrorInfo,
    ExecutionResult,
    Outcome,
    RetryReport,
    RetryRequest,
    SweepRequest,
    SweepSummary,
)
from workflow_retry.policy import Action, WorkflowSelector, decide, failure_key, screen
from workflow_retry.service import RetryContext, give_up_exhausted, ledger_failure, retry_one
from workflow_retry.settings import Settings

logger = logging.getLogger(__name__)

SweepProgress = Callable[[str, int, int | None], None]
"""Called with (phase, done, total): ``("listing", seen, None)``, then ``("retrying", done, selected)``."""

MAX_LISTED_RESULTS = 500
"""Results kept from the listing phase (newly exhausted, ledger failures); beyond it they are counted only."""
CANDIDATE_SLACK = 2
"""Candidates kept per restart slot: executions found not retryable on closer reading (their tasks)
leave room for the next oldest instead of leaving the slot empty."""
LISTING_SHARE = 0.75
"""Share of the deadline that listing may use; the rest is kept for the retries."""


class _Candidate:
    """An execution the policy would retry now, ordered by when it failed (kept small: no JSON)."""

    __slots__ = ("execution_id", "failed_at")

    def __init__(self, execution_id: ExecutionId, failed_at: int) -> None:
        self.execution_id = execution_id
        self.failed_at = failed_at


def resolve_sweep(
    sweep: SweepRequest, settings: Settings, context: RetryContext, now_ms: int
) -> tuple[dict[str, Any], SweepSummary]:
    """The list filter and an empty summary, from the sweep request over the settings' defaults."""
    workflow_texts = sweep.workflows if sweep.workflows is not None else _split(settings.sweep_workflows)
    workflows = [WorkflowSelector.model_validate(text) for text in workflow_texts]
    statuses = sweep.statuses or tuple(s.upper() for s in _split(settings.sweep_statuses))
    lookback = sweep.lookback_minutes or settings.sweep_lookback_minutes
    start = now_ms - lookback * 60_000
    filter: dict[str, Any] = {"status": list(statuses), "createdTimeStart": start, "createdTimeEnd": now_ms}
    selectors = workflows or list(context.policy.include_workflows)
    if selectors:
        filter["workflowFilters"] = [s.as_filter() for s in selectors]
    summary = SweepSummary(
        window_start=start,
        window_end=now_ms,
        workflows=tuple(str(s) for s in selectors),
        statuses=tuple(statuses),
        max_restarts=sweep.max_restarts or settings.sweep_max_restarts,
    )
    return filter, summary


async def sweep_executions(
    request: RetryRequest,
    gateway: CdfGateway,
    settings: Settings,
    context: RetryContext | None = None,
    progress: SweepProgress | None = None,
) -> RetryReport:
    """Run one sweep (``request.sweep`` must be set); see the module docstring."""
    if request.sweep is None:
        raise ValueError("sweep_executions needs a sweep request")
    ctx = context or RetryContext()
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + settings.deadline_seconds
    listing_deadline = started + settings.deadline_seconds * LISTING_SHARE
    now = ctx.clock()
    filter, summary = resolve_sweep(request.sweep, settings, ctx, now)
    keep = summary.max_restarts * CANDIDATE_SLACK

    outcomes: Counter[str] = Counter()
    listed_results: list[ExecutionResult] = []
    omitted = 0
    heap: list[tuple[int, int, _Candidate]] = []  # (-failed_at, -seq): the newest kept candidate on top
    sequence = itertools.count()
    state = {"pages": 0, "seen": 0, "eligible": 0, "complete": False}
    stopped_early: str | None = None
    listing_error: ErrorInfo | None = None

    def keep_result(result: ExecutionResult) -> None:
        nonlocal omitted
        outcomes[result.outcome.value] += 1
        if len(listed_results) < MAX_LISTED_RESULTS:
            listed_results.append(result)
        else:
            omitted += 1

    async def check_page(items: list[dict[str, Any]]) -> None:
        screened: list[tuple[ExecutionId, dict[str, Any]]] = []
        for item in items:
            state["seen"] += 1
            try:
                execution_id = parse_execution_id(item.get("id"))
            except InvalidExecutionId:
                outcomes[Outcome.INVALID.value] += 1  # CDF listed something that is no execution ID
                continue
            if screen(item, ctx.policy, now) is not None:
                outcomes[Outcome.SKIPPED.value] += 1
                continue
            screened.append((execution_id, item))
        slots = asyncio.Semaphore(settings.concurrency)

        async def read(execution_id: ExecutionId) -> AttemptRecord | LedgerError | None:
            async with slots:
                try:
                    return await ctx.ledger.get(execution_id, now)
                except LedgerError as exc:
                    return exc

        records = await asyncio.gather(*(read(execution_id) for execution_id, _ in screened))
        for (execution_id, item), record in zip(screened, records, strict=True):
            await place(execution_id, item, record)

    async def place(
        execution_id: ExecutionId, item: dict[str, Any], record: AttemptRecord | LedgerError | None
    ) -> None:
        if isinstance(record, LedgerError):
            keep_result(_failed(execution_id, ledger_failure(record), item))
            return
        decision = decide(
            item,
            dry_run=request.dry_run,
            policy=ctx.policy,
            attempts=record.attempts if record else 0,
            last_attempt_ms=record.last_attempt_at if record else None,
            now_ms=now,
        )
        if decision.action is Action.EXHAUSTED and record is not None:
            reason = await give_up_exhausted(item, record, decision, ctx, dry_run=request.dry_run)
            result = ExecutionResult(
                execution_id=execution_id,
                outcome=Outcome.EXHAUSTED,
                reason=reason,
                execution=item,
                attempts=record.attempts,
            )
            if reason.endswith("(announced)") or request.dry_run:
                keep_result(result)
            else:
                outcomes[Outcome.EXHAUSTED.value] += 1  # told before: counted, not listed again
            return
        if decision.action is Action.DEFER:
            outcomes[Outcome.DEFERRED.value] += 1
            return
        if decision.action is Action.SKIP:
            outcomes[Outcome.SKIPPED.value] += 1
            return
        state["eligible"] += 1
        entry = (-(failure_key(item) or 0), -next(sequence), _Candidate(execution_id, failure_key(item) or 0))
        if len(heap) < keep:
            heapq.heappush(heap, entry)
        elif entry > heap[0]:  # failed earlier than the newest kept candidate
            heapq.heapreplace(heap, entry)

    try:
        async with asyncio.timeout_at(listing_deadline):
            async for items in _pages(gateway, filter, settings.sweep_page_size):
                state["pages"] += 1
                await check_page(items)
                if progress is not None:
                    progress("listing", state["seen"], None)
            state["complete"] = True
    except TimeoutError:
        stopped_early = (
            f"listing stopped after {state['pages']} page(s) to keep time for retries; the rest was not read"
        )
    except CdfRequestError as exc:
        stopped_early = f"listing failed after {state['pages']} page(s): {exc.message}"
        listing_error = ErrorInfo(code=exc.code, message=exc.message, retryable=exc.retryable)

    selected = deque(candidate for _, _, candidate in sorted(heap, reverse=True))
    heap.clear()
    retried_results, not_reached, timed_out = await _retry_oldest_first(
        selected, gateway, request, summary.max_restarts, ctx, settings, deadline, progress
    )
    if timed_out:
        stopped_early = stopped_early or f"the deadline came with {not_reached} selected execution(s) not handled"
    for result in retried_results:
        outcomes[result.outcome.value] += 1

    handled = len(retried_results) + not_reached
    report = RetryReport(
        results=tuple(listed_results + retried_results),
        sweep=summary.model_copy(
            update={
                "pages_read": state["pages"],
                "executions_seen": state["seen"],
                "listing_complete": state["complete"],
                "eligible": state["eligible"],
                "left_for_next_sweep": max(0, state["eligible"] - handled),
                "not_reached": not_reached,
                "stopped_early": stopped_early,
                "listing_error": listing_error,
                "results_omitted": omitted,
                "outcomes": dict(sorted(outcomes.items())),
            }
        ),
    )
    if not ctx.ledger.enforces_cap:
        report = report.model_copy(
            update={"results": tuple(r.model_copy(update={"cap_enforced": False}) for r in report.results)}
        )
    logger.info(
        "sweep: %d execution(s) seen in %d page(s), %d eligible, %s; %s",
        state["seen"],
        state["pages"],
        state["eligible"],
        ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "nothing to do",
        stopped_early or "complete",
        extra={"sweep": report.sweep.model_dump(mode="json", by_alias=True) if report.sweep else None},
    )
    return report


async def _retry_oldest_first(
    selected: deque[_Candidate],
    gateway: CdfGateway,
    request: RetryRequest,
    max_restarts: int,
    ctx: RetryContext,
    settings: Settings,
    deadline: float,
    progress: SweepProgress | None,
) -> tuple[list[ExecutionResult], int, bool]:
    """Retry the oldest candidates until ``max_restarts`` restarted; (results, not reached, timed out)."""
    results: list[ExecutionResult] = []
    restarted = 0
    in_flight = 0
    total = min(len(selected), max_restarts)

    async def worker() -> None:
        nonlocal restarted, in_flight
        while selected and restarted + in_flight < max_restarts:
            candidate = selected.popleft()
            in_flight += 1
            try:
                result = await retry_one(candidate.execution_id, gateway, dry_run=request.dry_run, context=ctx)
            finally:
                in_flight -= 1
            results.append(result)
            if result.outcome in (Outcome.RETRIED, Outcome.DRY_RUN):
                restarted += 1
            if progress is not None:
                progress("retrying", len(results), total)

    workers = min(settings.concurrency, max_restarts)
    try:
        async with asyncio.timeout_at(deadline):
            await asyncio.gather(*(worker() for _ in range(workers)))
    except TimeoutError:
        # Work in flight was cancelled; whatever was left in the queue was never started.
        not_reached = min(len(selected) + in_flight, max(0, max_restarts - restarted))
        return results, not_reached, True
    return results, 0, False


async def _pages(gateway: CdfGateway, filter: dict[str, Any], page_size: int) -> AsyncIterator[list[dict[str, Any]]]:
    """Pages of the list endpoint; the next page is requested while the caller works on the current one."""
    pending = asyncio.ensure_future(gateway.list_executions(filter, page_size, None))
    try:
        while True:
            items, cursor = await pending
            if cursor:
                pending = asyncio.ensure_future(gateway.list_executions(filter, page_size, cursor))
            yield items
            if not cursor:
                return
    finally:
        if not pending.done():
            pending.cancel()


def _failed(execution_id: str, error: CdfRequestError, execution: dict[str, Any]) -> ExecutionResult:
    return ExecutionResult(
        execution_id=execution_id,
        outcome=Outcome.FAILED,
        reason=error.message,
        execution=execution,
        error=ErrorInfo(code=error.code, message=error.message, retryable=error.retryable),
    )


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())
