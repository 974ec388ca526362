"""Sweep mode: find failed executions through the list endpoint and retry them under the policy.

CDF has no failure webhook, so a scheduled sweep is how most users find failures. One sweep:

1. lists, with the given statuses, every execution that can have *ended* within the policy's age
   limit (``maxAgeHours``, or a narrower ``lookbackMinutes``): the list endpoint filters by creation
   time only, so it asks for those created up to :data:`LONGEST_RUN_HOURS` (CDF's longest run)
   before the age limit began, and the age check then goes by ``endTime``. A workflow that runs for
   hours is found when it fails, and again after each retry that fails, until the cap or the age
   limit ends it. Page by page (the next page is fetched while the current one is screened); memory
   stays flat however many executions the window holds: only a bounded heap of candidates is kept;
2. screens each listed execution with the checks that need no detail (status, workflow, age, the
   execution's reason) and keeps the ``maxRestarts x CANDIDATE_SLACK`` oldest failures;
3. handles those oldest first with bounded concurrency, each exactly as a single retry is handled
   (detail, ledger record, full policy: ``exhausted`` is announced once, ``deferred`` waits), until
   ``maxRestarts`` have been restarted (CDF runs at most 50 executions at once per project); the rest
   wait for the next sweep. When every candidate kept was handled with fewer restarts than that, none
   of them failed (the oldest were given up on before, or end in terminal errors) and newer ones were
   left out, it lists again for the next oldest after them, within the listing's share of the
   deadline: failures found not retryable by every sweep never hold newer ones back;
4. stops listing early enough to leave a quarter of the deadline for retrying, and reports what it
   did not reach;
5. with the time left, deletes up to :data:`PRUNE_ROWS_PER_SWEEP` ledger records past their expiry
   plus the retention (:meth:`AttemptLedger.prune`; not in a dry run), so the ledger does not grow
   without bound.

The report's ``results`` hold what a person acts on (retried, would retry, failed, newly exhausted);
``sweep`` counts everything the sweep saw.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from workflow_retry.cdf import CdfGateway
from workflow_retry.errors import CdfRequestError, IdentityProviderError, LedgerError
from workflow_retry.ids import ExecutionId, InvalidExecutionId, parse_execution_id
from workflow_retry.models import (
    ErrorInfo,
    ExecutionResult,
    Outcome,
    RetryReport,
    RetryRequest,
    SweepRequest,
    SweepSummary,
)
from workflow_retry.policy import RetryPolicy, WorkflowSelector, failure_key, screen
from workflow_retry.service import (
    RetryContext,
    counting_running,
    error_info,
    log_result,
    reading_ahead,
    retry_one,
    shared_slots,
)
from workflow_retry.settings import Settings

logger = logging.getLogger(__name__)

SweepProgress = Callable[[str, int, int | None], None]
"""Called with (phase, done, total): ``("listing", seen, None)``, then ``("retrying", done, selected)``."""

CANDIDATE_SLACK = 10
"""Candidates kept per restart slot: those found not retryable on closer reading (exhausted, cooling
down, terminal errors in their tasks) leave their slot to the next oldest."""
LONGEST_RUN_HOURS = 24
"""CDF's longest workflow execution (its documented maximum duration): an execution that ended in
the sweep's window was created at most this long before the window began."""
_MS_PER_HOUR = 3_600_000
LISTING_SHARE = 0.75
"""Share of the deadline that listing may use; the rest is kept for the retries."""
PRUNE_ROWS_PER_SWEEP = 1000
"""Old ledger records a sweep deletes at most (one delete request in RAW)."""


class _Candidate:
    """An execution the policy would retry now, ordered by when it failed (kept small: no JSON)."""

    __slots__ = ("execution_id", "failed_at")

    def __init__(self, execution_id: ExecutionId, failed_at: int) -> None:
        self.execution_id = execution_id
        self.failed_at = failed_at


def resolve_sweep(
    sweep: SweepRequest, settings: Settings, context: RetryContext, now_ms: int
) -> tuple[dict[str, Any], SweepSummary, RetryContext]:
    """The list filter, an empty summary and the sweep's context, from the request over the settings.

    The sweep looks at failures that ended within its age limit: ``maxAgeHours``, narrowed by
    ``lookbackMinutes`` when the request or RETRY_SWEEP_LOOKBACK_MINUTES sets it (the context's policy
    carries that limit, so every check of the sweep applies it). The list endpoint filters by
    creation time only, so it is asked for executions created up to :data:`LONGEST_RUN_HOURS` before
    that: every execution that can have ended in the window.
    """
    workflow_texts = sweep.workflows if sweep.workflows is not None else _split(settings.sweep_workflows)
    workflows = [WorkflowSelector.model_validate(text) for text in workflow_texts]
    statuses = sweep.statuses or tuple(s.upper() for s in _split(settings.sweep_statuses))
    lookback = sweep.lookback_minutes or settings.sweep_lookback_minutes
    policy = context.policy
    if lookback is not None and lookback / 60 < policy.max_age_hours:
        policy = policy.model_copy(update={"max_age_hours": lookback / 60})
        context = replace(context, policy=policy)
    ended_after = now_ms - int(policy.max_age_hours * _MS_PER_HOUR)
    start = ended_after - LONGEST_RUN_HOURS * _MS_PER_HOUR
    filter: dict[str, Any] = {"status": list(statuses), "createdTimeStart": start, "createdTimeEnd": now_ms}
    selectors = workflows or list(policy.include_workflows)
    if selectors:
        filter["workflowFilters"] = [s.as_filter() for s in selectors]
    summary = SweepSummary(
        window_start=start,
        window_end=now_ms,
        ended_after=ended_after,
        workflows=tuple(str(s) for s in selectors),
        statuses=tuple(statuses),
        max_restarts=sweep.max_restarts or settings.sweep_max_restarts,
    )
    return filter, summary, context


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
    with counting_running(context or RetryContext(), gateway, settings, dry_run=request.dry_run) as ctx:
        return await _sweep(request, request.sweep, gateway, settings, ctx, progress)


async def _sweep(
    request: RetryRequest,
    sweep: SweepRequest,
    gateway: CdfGateway,
    settings: Settings,
    ctx: RetryContext,
    progress: SweepProgress | None,
) -> RetryReport:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + settings.deadline_seconds
    listing_deadline = started + settings.deadline_seconds * LISTING_SHARE
    now = ctx.clock()
    filter, summary, ctx = resolve_sweep(sweep, settings, ctx, now)
    keep = summary.max_restarts * CANDIDATE_SLACK

    first = await _list_candidates(gateway, filter, ctx.policy, now, settings, keep, listing_deadline, progress)
    outcomes: Counter[str] = Counter(first.screened_out)
    pages, stopped_early = first.pages, first.stopped_early
    examined, not_reached, timed_out = await _retry_oldest_first(
        deque(first.kept), gateway, request, summary.max_restarts, ctx, settings, deadline, progress
    )
    listing, handled, last = first, _Handled(), examined
    listing_error = first.error
    # Every candidate kept was found not retryable (none failed), too few were restarted, and newer ones
    # were left out: list again for those, so that executions found not retryable by every sweep (given
    # up on, terminal errors) cannot fill the candidates of every sweep and hold newer failures back. A
    # pass with a failure ends the sweep: while CDF or the ledger fails, it does not try the whole window.
    while (
        not timed_out
        and listing.complete
        and listing.candidates > len(listing.kept)
        and _restarted(examined) < summary.max_restarts
        and not any(r.outcome is Outcome.FAILED for r in last)
        and _no_room(ctx) is None
        and loop.time() < listing_deadline
    ):
        handled.add(listing.kept)
        listing = await _list_candidates(
            gateway, filter, ctx.policy, now, settings, keep, listing_deadline, None, after=handled
        )
        pages += listing.pages
        if listing.stopped_early is not None:
            # Named as the later listing it was: the first one may have read the whole window.
            stopped_early = stopped_early or f"listing again past the candidates handled: {listing.stopped_early}"
            listing_error = listing_error or listing.error
        if not listing.kept:
            break
        last, not_reached, timed_out = await _retry_oldest_first(
            deque(listing.kept),
            gateway,
            request,
            summary.max_restarts - _restarted(examined),
            ctx,
            settings,
            deadline,
            None,
        )
        examined += last
    if timed_out:
        stopped_early = stopped_early or f"the deadline came with {not_reached} selected execution(s) not handled"
    elif (no_room := _no_room(ctx)) is not None:
        stopped_early = stopped_early or no_room
    elif not request.dry_run:
        await prune_ledger(ctx, deadline)
    seen, candidates, listing_complete = first.seen, first.candidates, first.complete
    results = []
    for result in examined:
        outcomes[result.outcome.value] += 1
        if _worth_listing(result):
            results.append(result if ctx.ledger.enforces_cap else result.model_copy(update={"cap_enforced": False}))
            log_result(result)  # one line per execution acted on, as a call with IDs logs them

    report = RetryReport(
        results=tuple(results),
        sweep=summary.model_copy(
            update={
                "pages_read": pages,
                "executions_seen": seen,
                "listing_complete": listing_complete,
                "eligible": candidates,
                "left_for_next_sweep": max(0, candidates - len(examined) - not_reached),
                "not_reached": not_reached,
                "stopped_early": stopped_early,
                "listing_error": listing_error,
                "results_omitted": len(examined) - len(results),
                "outcomes": dict(sorted(outcomes.items())),
            }
        ),
    )
    logger.info(
        "sweep: %d execution(s) seen in %d page(s), %d candidate(s), %s; %s",
        seen,
        pages,
        candidates,
        ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "nothing to do",
        stopped_early or "complete",
        extra={"sweep": report.sweep.model_dump(mode="json", by_alias=True) if report.sweep else None},
    )
    return report


class _Handled:
    """What earlier passes of a sweep handled: a later pass keeps only the failures after the newest of them."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.newest = 0

    def add(self, candidates: list[_Candidate]) -> None:
        self.ids.update(c.execution_id for c in candidates)
        self.newest = max([self.newest, *(c.failed_at for c in candidates)])

    def passed(self, execution_id: str, failed_at: int) -> bool:
        """Whether an earlier pass had this candidate, or one that failed later, before it."""
        return failed_at < self.newest or (failed_at == self.newest and execution_id in self.ids)


class _Listing:
    """One pass over the list endpoint: the oldest candidates kept, and what the pass saw."""

    def __init__(self) -> None:
        self.kept: list[_Candidate] = []
        """The candidates kept, oldest first."""
        self.pages = self.seen = self.candidates = 0
        self.screened_out: Counter[str] = Counter()
        self.complete = False
        self.stopped_early: str | None = None
        self.error: ErrorInfo | None = None


async def _list_candidates(
    gateway: CdfGateway,
    filter: dict[str, Any],
    policy: RetryPolicy,
    now: int,
    settings: Settings,
    keep: int,
    listing_deadline: float,
    progress: SweepProgress | None,
    after: _Handled | None = None,
) -> _Listing:
    """List the window and keep the ``keep`` oldest candidates (after those an earlier pass handled)."""
    listing = _Listing()
    heap: list[tuple[int, int, _Candidate]] = []  # (-failed_at, -seq): the newest kept candidate on top
    sequence = itertools.count()

    def consider(item: dict[str, Any]) -> None:
        try:
            execution_id = parse_execution_id(item.get("id"))
        except InvalidExecutionId:
            listing.screened_out[Outcome.INVALID.value] += 1  # CDF listed something that is no execution ID
            return
        if screen(item, policy, now) is not None:
            listing.screened_out[Outcome.SKIPPED.value] += 1
            return
        failed_at = failure_key(item) or 0
        if after is not None and after.passed(execution_id, failed_at):
            return
        listing.candidates += 1
        entry = (-failed_at, -next(sequence), _Candidate(execution_id, failed_at))
        if len(heap) < keep:
            heapq.heappush(heap, entry)
        elif entry > heap[0]:  # failed earlier than the newest kept candidate
            heapq.heapreplace(heap, entry)

    try:
        async with asyncio.timeout_at(listing_deadline):
            async for items in _pages(gateway, filter, settings.sweep_page_size):
                listing.pages += 1
                listing.seen += len(items)
                for item in items:
                    consider(item)
                if progress is not None:
                    progress("listing", listing.seen, None)
            listing.complete = True
    except TimeoutError:
        listing.stopped_early = (
            f"listing stopped after {listing.pages} page(s) to keep time for retries; the rest was not read"
        )
    except CdfRequestError as exc:
        listing.stopped_early = f"listing failed after {listing.pages} page(s): {exc.message}"
        listing.error = error_info(exc)
    listing.kept = [candidate for _, _, candidate in sorted(heap, reverse=True)]
    return listing


def _no_room(ctx: RetryContext) -> str | None:
    """Why no more executions may be restarted under RETRY_MAX_RUNNING, if that is so."""
    return None if ctx.running is None else ctx.running.no_room()


def _restarts(result: ExecutionResult) -> bool:
    """Whether handling it counts against ``maxRestarts`` (restarted, or would be in a dry run)."""
    return result.outcome in (Outcome.RETRIED, Outcome.DRY_RUN)


def _restarted(examined: list[ExecutionResult]) -> int:
    return sum(map(_restarts, examined))


async def prune_ledger(ctx: RetryContext, deadline: float, max_rows: int = PRUNE_ROWS_PER_SWEEP) -> int | None:
    """Delete old ledger records within the deadline; how many, or None when it failed (logged, never raised)."""
    try:
        async with asyncio.timeout_at(deadline):
            pruned = await ctx.ledger.prune(ctx.clock(), max_rows)
    except TimeoutError:
        logger.info("ledger records not pruned: the deadline came first")
        return None
    except LedgerError as exc:
        logger.warning("ledger records not pruned: %s", exc)
        return None
    if pruned:
        logger.info("pruned %d ledger record(s) past their expiry and retention", pruned, extra={"event": "pruned"})
    return pruned


def sweep_not_started(
    request: RetryRequest, settings: Settings, error: IdentityProviderError, context: RetryContext | None = None
) -> RetryReport:
    """The report of a sweep that could not start (no token for CDF): nothing listed, the error as its listing error."""
    if request.sweep is None:
        raise ValueError("sweep_not_started needs a sweep request")
    ctx = context or RetryContext()
    _, summary, _ = resolve_sweep(request.sweep, settings, ctx, ctx.clock())
    logger.error("sweep not started: %s", error.message)
    update = {"stopped_early": f"not started: {error.message}", "listing_error": error_info(error)}
    return RetryReport(results=(), sweep=summary.model_copy(update=update))


def _worth_listing(result: ExecutionResult) -> bool:
    """Results a person acts on; the rest (skipped, deferred, given up before) are only counted."""
    if result.outcome in (Outcome.RETRIED, Outcome.DRY_RUN, Outcome.FAILED):
        return True
    return result.outcome is Outcome.EXHAUSTED and "gave up earlier" not in result.reason


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
    """Handle candidates oldest first until ``max_restarts`` restarted: (results in that order, not reached, timed out).

    Each candidate goes through :func:`retry_one` (detail, ledger, full policy), so one found not
    retryable (exhausted, cooling down, terminal errors) leaves its slot to the next oldest. The
    executions hold the process's shared slots as a batch's do, and there are as many workers as
    executions can be at work at once: one waiting for its attempt's batched insert lends its slot to
    the next candidate, as in a batch. A worker takes a candidate only while the restarts under way
    could still fall short of ``max_restarts``, so no more than that are restarted.
    """
    results: dict[int, ExecutionResult] = {}
    restarted = 0
    in_flight = 0
    position = itertools.count()
    total = min(len(selected), max_restarts)
    slots = shared_slots(settings.concurrency)

    async def worker() -> None:
        nonlocal restarted, in_flight
        while selected and restarted + in_flight < max_restarts and _no_room(ctx) is None:
            candidate = selected.popleft()
            index = next(position)
            in_flight += 1
            try:
                result = await retry_one(
                    candidate.execution_id,
                    gateway,
                    dry_run=request.dry_run,
                    context=ctx,
                    full_execution=request.full_execution,
                    slots=slots,
                )
            finally:
                in_flight -= 1
            results[index] = result
            if _restarts(result):
                restarted += 1
                if progress is not None:
                    progress("retrying", restarted, total)

    timed_out = False
    not_reached = 0
    try:
        async with asyncio.timeout_at(deadline), reading_ahead([c.execution_id for c in selected], ctx) as ctx:
            if ctx.running is not None:
                # Only as many at once as there is room for, so the room goes to the oldest.
                max_restarts = total = min(max_restarts, await ctx.running.room())
            await asyncio.gather(*(worker() for _ in range(min(slots.most_at_once(), max_restarts))))
    except TimeoutError:
        # Work in flight was cancelled; whatever was left in the queue was never started.
        timed_out = True
        not_reached = min(len(selected) + in_flight, max(0, max_restarts - restarted))
    return [results[i] for i in sorted(results)], not_reached, timed_out


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


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())
