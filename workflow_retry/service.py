"""Orchestration: every requested ID gets exactly one result, within a deadline, with bounded concurrency.

``retry_executions`` is the core: it takes one :class:`RetryRequest`, asks ``policy`` what to do with
each execution and acts through a :class:`CdfGateway`. It does not know which platform called it.

A :class:`RetryContext` carries the policy, the attempt ledger and the give-up announcer. A batch
reads what the ledger holds for all its IDs at once where the ledger can (:func:`reading_ahead`),
beside the first executions' reads, and again in bulk once that read has gone stale; an execution read
before that bulk read has answered lends its concurrency slot meanwhile (:mod:`workflow_retry.slots`).
Per execution: the execution and its ledger record (from the bulk read, or alone) are read at the same
time; the attempt is counted while the session is created (the slot lent while the count's batched
insert is still out after the session); then the retry request is sent. The
execution's own requests run in its task, the ledger's beside it (:func:`_retry_one`).

In one process an execution is handled by one task at a time (:func:`one_at_a_time`): the records of
an SQS batch, or concurrent calls, that name an execution already being handled wait for that task
and take its result (``retried`` becomes ``skipped``: the retry is reported once). See
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from workflow_retry.cdf import CdfGateway, ExecutionGateway, Nonce
from workflow_retry.errors import CdfRequestError, ExecutionNotFoundError, IdentityProviderError, LedgerError
from workflow_retry.giveup import Announcer, GiveUp
from workflow_retry.history import with_attempt, with_give_up
from workflow_retry.ids import ExecutionId
from workflow_retry.ledger import OUTCOME_GAVE_UP, AttemptLedger, AttemptRecord, LedgerSnapshot, NoLedger
from workflow_retry.models import ErrorInfo, ExecutionResult, Outcome, RequestedId, RetryReport, RetryRequest
from workflow_retry.policy import DEFAULT_POLICY, Action, Decision, RetryPolicy, decide, retry_was_applied
from workflow_retry.running import RunningBudget, shared_budget
from workflow_retry.settings import Settings
from workflow_retry.slots import HeldSlot, Slots

logger = logging.getLogger(__name__)

DEADLINE_MESSAGE = "not reached before the call's deadline"
DEADLINE_IN_FLIGHT_MESSAGE = (
    "the call's deadline passed while the retry request was in flight: CDF may have applied it "
    "(a later delivery reads the execution first and will not retry it twice)"
)
CAP_NOT_ENFORCED = "attempt cap not enforced (ledger: none)"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class RetryContext:
    """The policy, the ledger and the announcer every execution of a call is handled with.

    The defaults (no ledger, default policy, log-only announcer) serve direct callers and tests; the
    entrypoints build the real one from settings (``function.execute``).
    """

    policy: RetryPolicy = DEFAULT_POLICY
    ledger: AttemptLedger = field(default_factory=NoLedger)
    announcer: Announcer = field(default_factory=Announcer)
    clock: Callable[[], int] = now_ms
    read_ahead: ReadAhead | None = None
    """Records being read ahead for a batch (:func:`reading_ahead`); an ID it does not answer for is read alone."""
    running: RunningBudget | None = None
    """Room left under RETRY_MAX_RUNNING (:func:`counting_running`); None: the running executions are not counted."""

    def not_started(self) -> None:
        """A restart that took room under RETRY_MAX_RUNNING did not start: give the room back."""
        if self.running is not None:
            self.running.give_back()


@contextmanager
def counting_running(
    context: RetryContext, gateway: CdfGateway, settings: Settings, *, dry_run: bool
) -> Iterator[RetryContext]:
    """The context whose restarts keep the project under RETRY_MAX_RUNNING, when it is set (not for a dry run).

    The count starts now, beside the first executions' reads, and ends with the block when no other
    call holds it: :mod:`workflow_retry.running`.
    """
    if settings.max_running is None or dry_run:
        yield context
        return
    with shared_budget(settings.max_running, gateway) as budget:
        yield replace(context, running=budget)


async def _read_snapshot(execution_ids: list[ExecutionId], context: RetryContext) -> LedgerSnapshot | None:
    """The ledger records of these IDs read in bulk, or None where the ledger cannot (or the read failed)."""
    now = context.clock()
    try:
        with_rows = await context.ledger.read_many(execution_ids, now)
    except LedgerError as exc:
        logger.warning("reading the attempt ledger in bulk failed, reading it per execution: %s", exc)
        return None
    if with_rows is None:
        return None
    return LedgerSnapshot(with_rows, frozenset(execution_ids), now)


class ReadAhead:
    """The ledger records of a batch read in bulk, and read in bulk again once that read has gone stale.

    A snapshot answers for ``READ_AHEAD_FRESH_MS`` (a long batch must not decide on an old record). The
    first ID that finds it stale starts one bulk read of the IDs not yet served, which every later ID
    waits for, instead of each reading its own record: a batch of 1,000 IDs that outlives one snapshot
    then costs a request or a few more, not one per late ID. The ledger still declines a bulk read that
    would cost more than single reads (too few IDs left, too many pages): those IDs read alone.
    """

    def __init__(self, execution_ids: list[ExecutionId], context: RetryContext) -> None:
        self._context = context
        self._unserved = set(execution_ids)
        self._pending = asyncio.ensure_future(_read_snapshot(execution_ids, context))

    async def snapshot_for(self, execution_id: ExecutionId, now_ms: int) -> LedgerSnapshot | None:
        """The snapshot to decide this ID on (None: read its record alone); read again in bulk when stale."""
        pending = self._pending
        # Shielded: this ID's deadline or cancellation must not cancel the read the others wait for.
        snapshot = await asyncio.shield(pending)
        if snapshot is not None and execution_id in snapshot.covers and not snapshot.knows(execution_id, now_ms):
            if self._pending is pending:  # the first to find it stale reads again for all that are left
                self._pending = asyncio.ensure_future(_read_snapshot(sorted(self._unserved), self._context))
            snapshot = await asyncio.shield(self._pending)
        self._unserved.discard(execution_id)
        return snapshot

    def answered(self) -> bool:
        """Whether the bulk read now in flight, if any, has answered."""
        return self._pending.done()

    async def wait(self) -> None:
        """Until the bulk read now in flight has answered (or failed: the IDs then read alone)."""
        await asyncio.wait([self._pending])

    def close(self) -> None:
        self._pending.cancel()


@asynccontextmanager
async def reading_ahead(execution_ids: list[ExecutionId], context: RetryContext) -> AsyncIterator[RetryContext]:
    """The context whose ledger records are being read in bulk while the executions are read.

    The bulk read runs beside the first executions' reads instead of before them: an ID waits for it only
    once its execution is read, when the decision needs the record; it is read again when it has gone
    stale (:class:`ReadAhead`). Best effort: when the bulk read fails or the ledger cannot do it cheaply,
    each ID reads its own record. The read ends with the block.
    """
    read_ahead = ReadAhead(execution_ids, context)
    try:
        yield replace(context, read_ahead=read_ahead)
    finally:
        read_ahead.close()


Progress = Callable[[int, int], None]
"""Called with (done, total) as results come in (the CLI's progress bar)."""


async def retry_executions(
    request: RetryRequest,
    gateway: CdfGateway,
    settings: Settings,
    context: RetryContext | None = None,
    progress: Progress | None = None,
) -> RetryReport:
    """Handle every ID of the request; the report has one result per ID, in request order."""
    ctx = context or RetryContext()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.deadline_seconds
    slots = shared_slots(settings.concurrency)
    done = 0

    async def handle_one(requested: RequestedId) -> ExecutionResult:
        nonlocal done
        try:
            execution_id = requested.execution_id
            if execution_id is None:
                return _result(requested.shown, Outcome.INVALID, requested.problem or "invalid")
            watched = _RetryRequestWatch(gateway)
            try:
                async with asyncio.timeout_at(deadline):
                    return await retry_one(
                        execution_id,
                        watched,
                        dry_run=request.dry_run,
                        context=ctx,
                        full_execution=request.full_execution,
                        slots=slots,
                    )
            except TimeoutError:
                message = DEADLINE_IN_FLIGHT_MESSAGE if watched.retry_sent else DEADLINE_MESSAGE
                return _failed(requested.shown, CdfRequestError(None, message, retryable=True))
        finally:
            done += 1
            if progress is not None:
                progress(done, len(request.ids))

    valid = [r.execution_id for r in request.ids if r.execution_id is not None]
    with counting_running(ctx, gateway, settings, dry_run=request.dry_run or not valid) as ctx:
        async with reading_ahead(valid, ctx) as ctx:
            results = await asyncio.gather(*(handle_one(r) for r in request.ids))
    if not ctx.ledger.enforces_cap:
        results = [_cap_not_enforced(r) for r in results]
    report = RetryReport(results=tuple(results))
    for result in report.results:
        log_result(result)
    return report


def report_not_started(
    request: RetryRequest, error: IdentityProviderError, context: RetryContext | None = None
) -> RetryReport:
    """The report of a call that could not start (no token for CDF): every valid ID ``failed`` with ``error``.

    Invalid IDs are reported ``invalid`` as always; nothing was sent to CDF or the ledger.
    """
    ctx = context or RetryContext()
    results = [
        _failed(r.shown, error)
        if r.execution_id is not None
        else _result(r.shown, Outcome.INVALID, r.problem or "invalid")
        for r in request.ids
    ]
    if not ctx.ledger.enforces_cap:
        results = [_cap_not_enforced(r) for r in results]
    report = RetryReport(results=tuple(results))
    for result in report.results:
        log_result(result)
    return report


_slots_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Slots]] = weakref.WeakKeyDictionary()


def shared_slots(concurrency: int) -> Slots:
    """The concurrency bound of every call running on this event loop at once (the SDK's one loop).

    Shared, so that calls made at the same time (the records of an SQS batch, each in its own
    thread) keep RETRY_CONCURRENCY executions in flight in all, not that many each.
    """
    by_size = _slots_by_loop.setdefault(asyncio.get_running_loop(), {})
    return by_size.setdefault(concurrency, Slots(concurrency))


HandlingMode = tuple[object, ...]
"""What must be equal for one call to take another's result for the same execution (see :func:`_mode`)."""


@dataclass
class _Handling:
    """An execution being handled by one task on this loop, and that task's result once it has one."""

    mode: HandlingMode
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    result: ExecutionResult | None = None


_handling_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Handling]] = (
    weakref.WeakKeyDictionary()
)

SHARED_PREFIX = "handled by a concurrent request in this process"


def _mode(dry_run: bool, ctx: RetryContext) -> HandlingMode:
    """Calls that would decide alike: the same mode, policy and kind of ledger."""
    return (dry_run, ctx.policy, ctx.ledger.kind)


async def one_at_a_time(
    execution_id: ExecutionId, mode: HandlingMode, work: Callable[[], Awaitable[ExecutionResult]]
) -> ExecutionResult:
    """Run ``work`` for an execution unless a task on this event loop is handling it already.

    All calls of a process run on the SDK's one event loop (``cdf.run_on_sdk_loop``; the records of an
    SQS batch each call from their own thread), so this holds across every call of the process. A call
    that finds the execution being handled waits for that task (holding no concurrency slot); when the
    task was of the same mode it takes the task's result (:func:`_shared`) instead of reading, counting
    and retrying again; otherwise (a dry run meeting a real retry, another policy) it then handles the
    execution itself. A task that ended without a result (cancelled, its deadline passed) hands over to
    the first waiter. The caller bounds the wait with its own deadline.
    """
    handling = _handling_by_loop.setdefault(asyncio.get_running_loop(), {})
    while (current := handling.get(execution_id)) is not None:
        await current.finished.wait()
        if current.result is not None and current.mode == mode:
            return _shared(current.result)
    # No await between the look-up above and this line: on one loop, no other task can slip in.
    mine = _Handling(mode)
    handling[execution_id] = mine
    try:
        mine.result = await work()
        return mine.result
    finally:
        del handling[execution_id]
        mine.finished.set()


def _shared(result: ExecutionResult) -> ExecutionResult:
    """The result for a request that waited for another task's handling of the same execution.

    The same facts, so that redelivery follows them: a failure stays a failure (retryable or not, so
    a transient one brings every record that named it back), a deferral stays deferred. Only
    ``retried`` becomes ``skipped``, so that one retry is reported as one (and logged once); a
    ``skipped`` record is done, like the one that retried it.
    """
    if result.outcome is Outcome.RETRIED:
        return result.model_copy(
            update={"outcome": Outcome.SKIPPED, "reason": f"not retried again: {SHARED_PREFIX} ({result.reason})"}
        )
    return result.model_copy(update={"reason": f"{SHARED_PREFIX}: {result.reason}"})


class _RetryRequestWatch:
    """One ID's view of the gateway that remembers whether its retry request went out.

    When the deadline cuts the work of an ID, that tells "not reached" from "sent, answer unknown".
    """

    def __init__(self, gateway: ExecutionGateway) -> None:
        self._gateway = gateway
        self.retry_sent = False

    async def get_execution(self, execution_id: ExecutionId) -> dict[str, Any]:
        return await self._gateway.get_execution(execution_id)

    async def create_nonce(self, workflow_external_id: str | None = None) -> Nonce:
        return await self._gateway.create_nonce(workflow_external_id)

    async def retry_execution(self, execution_id: ExecutionId, nonce: Nonce) -> dict[str, Any]:
        self.retry_sent = True
        return await self._gateway.retry_execution(execution_id, nonce)


async def retry_one(
    execution_id: ExecutionId,
    gateway: ExecutionGateway,
    *,
    dry_run: bool,
    context: RetryContext | None = None,
    full_execution: bool = False,
    slots: Slots | None = None,
) -> ExecutionResult:
    """Read the execution and its attempts, decide, count the attempt and retry it with a fresh session.

    One task at a time per execution in this process (:func:`one_at_a_time`). With ``slots``, the
    execution's requests are sent holding one of them, lent out while it waits on others (a duplicate
    waiting for another task's result holds none). The result carries the compact execution unless
    ``full_execution``.
    """
    ctx = context or RetryContext()

    async def work() -> ExecutionResult:
        if slots is None:
            return await _retry_one(execution_id, gateway, dry_run=dry_run, context=ctx)
        async with slots.hold() as slot:
            return await _retry_one(execution_id, gateway, dry_run=dry_run, context=ctx, slot=slot)

    result = await one_at_a_time(execution_id, _mode(dry_run, ctx), work)
    return result if full_execution else result.with_compact_execution()


async def _retry_one(
    execution_id: ExecutionId,
    gateway: ExecutionGateway,
    *,
    dry_run: bool,
    context: RetryContext,
    slot: HeldSlot | None = None,
) -> ExecutionResult:
    ctx = context
    if ctx.running is not None and (no_room := ctx.running.no_room()) is not None:
        # The project is known to be full: deferred unread, at no cost (it comes back; a sweep finds it).
        return _result(execution_id, Outcome.DEFERRED, no_room)
    now = ctx.clock()
    # The execution is read in this task and the record beside it in another: the execution's answer
    # goes on in this task without a hop through the event loop's queue (on a busy loop each hop keeps
    # a connection idle in the SDK's pool, where every request probes it: docs/benchmarks.md).
    read_record = asyncio.ensure_future(_read_record(execution_id, ctx, now))
    try:
        execution = await gateway.get_execution(execution_id)
    except BaseException as exc:
        await _discard(read_record)
        if isinstance(exc, ExecutionNotFoundError):
            return _result(execution_id, Outcome.NOT_FOUND, f"CDF does not know this execution ({exc.code})")
        if isinstance(exc, CdfRequestError):
            return _failed(execution_id, exc, "reading the execution failed")
        raise
    if slot is not None and ctx.read_ahead is not None and not ctx.read_ahead.answered():
        # Waiting for the batch's listing, not for a request of its own: the slot reads the next execution.
        async with slot.lent():
            await ctx.read_ahead.wait()
    try:
        record = await read_record
    except LedgerError as exc:
        return _failed(execution_id, ledger_failure(exc), "", execution)

    decision = decide_with_record(execution, record, ctx.policy, dry_run=dry_run, now_ms=now)
    attempts = record.attempts if record else None
    if decision.action is Action.SKIP:
        reason = decision.reason
        if decision.announce:
            reason = await give_up_once(
                execution_id, execution, record, Outcome.SKIPPED, decision, ctx, dry_run=dry_run
            )
        return _result(execution_id, Outcome.SKIPPED, reason, execution, attempts)
    if decision.action is Action.DEFER:
        return _result(execution_id, Outcome.DEFERRED, decision.reason, execution, attempts)
    if decision.action is Action.EXHAUSTED:
        reason = await give_up_once(execution_id, execution, record, Outcome.EXHAUSTED, decision, ctx, dry_run=dry_run)
        return _result(execution_id, Outcome.EXHAUSTED, reason, execution, attempts)
    if decision.action is Action.REPORT_ONLY:
        return _result(execution_id, Outcome.DRY_RUN, decision.reason, execution, attempts)
    if ctx.running is not None and (no_room := await ctx.running.take()) is not None:
        return _result(execution_id, Outcome.DEFERRED, no_room, execution, attempts)
    return await _retry_counted(execution_id, execution, record, decision, gateway, ctx, slot)


async def _discard(task: asyncio.Future[Any]) -> None:
    """Cancel a task beside this one whose result is no longer wanted, and wait until it has ended."""
    task.cancel()
    await asyncio.wait([task])  # unlike awaiting it, never raises its error; this task's own cancellation still does
    if not task.cancelled():
        task.exception()  # retrieved: an error it ended with before the cancel is not logged as unhandled


async def _read_record(execution_id: ExecutionId, ctx: RetryContext, now: int) -> AttemptRecord | None:
    if ctx.read_ahead is not None:
        snapshot = await ctx.read_ahead.snapshot_for(execution_id, now)
        if snapshot is not None and snapshot.knows(execution_id, now) and execution_id not in snapshot.with_rows:
            return None
        # Not known to the snapshot, or it has a row: the record a decision and a write start from is read
        # whole, alone.
    return await ctx.ledger.get(execution_id, now)


def decide_with_record(
    execution: Mapping[str, Any], record: AttemptRecord | None, policy: RetryPolicy, *, dry_run: bool, now_ms: int
) -> Decision:
    """The policy's decision for an execution given its ledger record (None: never retried)."""
    return decide(
        execution,
        dry_run=dry_run,
        policy=policy,
        attempts=record.attempts if record else 0,
        last_attempt_ms=record.last_attempt_at if record else None,
        now_ms=now_ms,
    )


async def _retry_counted(
    execution_id: ExecutionId,
    execution: dict[str, Any],
    record: AttemptRecord | None,
    decision: Decision,
    gateway: ExecutionGateway,
    ctx: RetryContext,
    slot: HeldSlot | None = None,
) -> ExecutionResult:
    """Count the attempt (while the session is created), send the retry, and settle the count after."""
    now = ctx.clock()
    workflow = execution.get("workflowExternalId")
    workflow = workflow if isinstance(workflow, str) else None
    # The attempt is counted in another task while the session is created in this one (see _retry_one).
    taking = asyncio.ensure_future(
        ctx.ledger.take_attempt(
            record, execution_id, workflow, now, with_attempt(record, execution, now, ctx.policy.max_attempts)
        )
    )
    made: Nonce | BaseException
    try:
        made = await gateway.create_nonce(workflow)  # the workflow's own credentials, where it is mapped to some
    except CdfRequestError as exc:
        made = exc
    except BaseException:
        await _discard(taking)
        raise
    if slot is not None and not taking.done():
        # Waiting for the batched insert that counts the attempt, not for a request of its own: the slot
        # starts the next execution meanwhile (a slot held idle leaves a connection idle in the SDK's
        # pool, which every request then probes: docs/benchmarks.md).
        async with slot.lent():
            await asyncio.wait([taking])
    took: AttemptRecord | BaseException | None
    try:
        took = await taking
    except Exception as exc:
        took = exc
    if isinstance(took, LedgerError):
        ctx.not_started()
        return _failed(execution_id, ledger_failure(took), "", execution, record.attempts if record else None)
    if isinstance(took, BaseException):
        raise took
    attempts = record.attempts if record else 0
    if took is None:
        # Another invocation counted this very attempt between our read and our write (DynamoDB).
        ctx.not_started()
        reason = f"not retried: another invocation took attempt {attempts + 1} at the same moment"
        return _result(execution_id, Outcome.SKIPPED, reason, execution, attempts + 1)
    if isinstance(made, CdfRequestError):
        ctx.not_started()
        await _release(ctx, took, record)
        return _failed(execution_id, made, "", execution, attempts)
    if isinstance(made, BaseException):
        raise made
    result = await _send_retry(execution_id, gateway, made, execution)
    result = result.model_copy(update={"attempts": took.attempts})
    if result.outcome is Outcome.RETRIED:
        reason = f"{result.reason} (attempt {took.attempts} of {ctx.policy.max_attempts})"
        return result.model_copy(update={"reason": reason})
    if result.outcome is Outcome.SKIPPED:
        # Another caller restarted it between our read and our request. Our count stays: it holds the
        # same number theirs does, and giving it back could erase theirs (RAW has no conditional write).
        return result
    if result.error is not None and result.error.code == 429:
        # Throttled: CDF turned the request away before acting on it, so no attempt was made. Keeping
        # the count would let a long 429 storm use up the cap without a single retry running.
        ctx.not_started()
        await _release(ctx, took, record)
        return result.model_copy(update={"attempts": attempts})
    if result.error is not None and not result.error.retryable:
        # CDF refused the request (a 4xx) and the execution does not run: the attempt did not happen.
        ctx.not_started()
        await _release(ctx, took, record)
        result = result.model_copy(update={"attempts": attempts})
        await ctx.announcer.announce(
            _give_up(result.execution_id, result.outcome, execution, attempts, ctx, result.reason)
        )
    return result


async def _send_retry(
    execution_id: ExecutionId, gateway: ExecutionGateway, nonce: Nonce, execution: dict[str, Any]
) -> ExecutionResult:
    try:
        updated = await gateway.retry_execution(execution_id, nonce)
    except CdfRequestError as exc:
        return await _after_failed_retry(execution_id, gateway, exc, execution)
    status = str(execution.get("status", "")).upper()
    return _result(execution_id, Outcome.RETRIED, f"retried from the point of failure (status was {status})", updated)


async def give_up_once(
    execution_id: ExecutionId,
    execution: Mapping[str, Any],
    record: AttemptRecord | None,
    outcome: Outcome,
    decision: Decision,
    ctx: RetryContext,
    *,
    dry_run: bool,
) -> str:
    """Announce a give-up once, with the ledger's give-up marker; the reason to report.

    ``outcome`` is ``exhausted`` (the cap is used up) or ``skipped`` (a skip a person must hear of, such
    as an access error: ``record`` may then be None, the execution never counted).
    """
    if dry_run:
        return f"{decision.reason}; would give up"
    workflow = execution.get("workflowExternalId")
    seen = record or AttemptRecord(
        execution_id, workflow if isinstance(workflow, str) else None, 0, None, None, expires_at=0
    )
    if seen.last_outcome == OUTCOME_GAVE_UP:
        return f"{decision.reason}; gave up earlier (announced then)"
    now = ctx.clock()
    seen = with_give_up(seen, execution, now, decision.reason, ctx.policy.max_attempts)
    try:
        first = await ctx.ledger.record_outcome(seen, OUTCOME_GAVE_UP, now)
    except LedgerError as exc:
        logger.error("could not record the give-up of execution %s: %s", execution_id, exc)
        first = True  # better told twice than never
    if not first:
        return f"{decision.reason}; gave up earlier (announced then)"
    await ctx.announcer.announce(_give_up(execution_id, outcome, execution, seen.attempts, ctx, decision.reason))
    return f"{decision.reason}; gave up (announced)"


def _give_up(
    execution_id: str,
    outcome: Outcome,
    execution: Mapping[str, Any],
    attempts: int | None,
    ctx: RetryContext,
    why: str,
) -> GiveUp:
    workflow, version = execution.get("workflowExternalId"), execution.get("version")
    last_reason = execution.get("reasonForIncompletion")
    return GiveUp(
        execution_id=execution_id,
        workflow_external_id=workflow if isinstance(workflow, str) else None,
        version=str(version) if version is not None else None,
        attempts=attempts,
        max_attempts=ctx.policy.max_attempts if ctx.ledger.enforces_cap else None,
        outcome=outcome.value,
        last_reason=last_reason if isinstance(last_reason, str) else None,
        why=why,
    )


async def _release(ctx: RetryContext, taken: AttemptRecord, previous: AttemptRecord | None) -> None:
    try:
        await ctx.ledger.release_attempt(taken, previous)
    except LedgerError as exc:
        # The attempt stays counted: safe (one retry fewer later), never one too many.
        logger.warning("could not release attempt %d of execution %s: %s", taken.attempts, taken.execution_id, exc)


def ledger_failure(error: LedgerError) -> CdfRequestError:
    return CdfRequestError(error.code, f"{error}; not retried, as the attempt could not be counted", error.retryable)


def _cap_not_enforced(result: ExecutionResult) -> ExecutionResult:
    if result.outcome in (Outcome.INVALID, Outcome.NOT_FOUND):
        return result.model_copy(update={"cap_enforced": False})
    reason = f"{result.reason} ({CAP_NOT_ENFORCED})"
    return result.model_copy(update={"cap_enforced": False, "reason": reason})


async def _after_failed_retry(
    execution_id: ExecutionId, gateway: ExecutionGateway, error: CdfRequestError, before: dict[str, Any]
) -> ExecutionResult:
    """A retry request failed: find out whether the execution runs again before calling it a failure.

    A 5xx or timeout may come after CDF restarted the execution (the answer was lost); the SDK then
    repeats the POST, which CDF refuses because the nonce was used. Reading the execution again tells
    these apart from a real failure, so an ID that runs again is never reported as failed (and so never
    retried a second time by whoever acts on the report). A plain refusal (another 4xx) of an execution
    that runs again means another caller restarted it in the meantime: ``skipped``, not ours to count.
    """
    try:
        after = await gateway.get_execution(execution_id)
    except CdfRequestError:
        after = None
    if after is None or not retry_was_applied(after):
        return _failed(execution_id, error, "the retry request failed", after or before)
    ours = error.retryable or (error.code == 400 and "nonce" in error.message.lower())
    if ours:
        reason = f"retried: CDF's answer was lost ({error.message}), and the execution is RUNNING again"
        return _result(execution_id, Outcome.RETRIED, reason, after)
    reason = f"already RUNNING again, restarted by another caller (CDF refused this retry: {error.message})"
    return _result(execution_id, Outcome.SKIPPED, reason, after)


def _result(
    execution_id: str,
    outcome: Outcome,
    reason: str,
    execution: dict[str, Any] | None = None,
    attempts: int | None = None,
) -> ExecutionResult:
    return ExecutionResult(
        execution_id=execution_id, outcome=outcome, reason=reason, execution=execution, attempts=attempts
    )


def _failed(
    execution_id: str,
    error: CdfRequestError,
    context: str = "",
    execution: dict[str, Any] | None = None,
    attempts: int | None = None,
) -> ExecutionResult:
    reason = f"{context}: {error.message}" if context else error.message
    return ExecutionResult(
        execution_id=execution_id,
        outcome=Outcome.FAILED,
        reason=reason,
        execution=execution,
        error=error_info(error),
        attempts=attempts,
    )


def error_info(error: CdfRequestError) -> ErrorInfo:
    """What a result (or a sweep's listing) says about a failed request."""
    identity_provider = isinstance(error, IdentityProviderError)
    return ErrorInfo(
        code=error.code, message=error.message, retryable=error.retryable, identity_provider=identity_provider
    )


def log_result(result: ExecutionResult) -> None:
    """One log line per execution acted on (WARNING for a failure), with its fields as structured extras."""
    level = logging.WARNING if result.outcome is Outcome.FAILED else logging.INFO
    execution = result.execution or {}
    logger.log(
        level,
        "execution %s: %s (%s)",
        result.execution_id,
        result.outcome.value,
        result.reason,
        extra={
            "event": "execution",
            "execution_id": result.execution_id,
            "workflow": execution.get("workflowExternalId"),
            "version": execution.get("version"),
            "outcome": result.outcome.value,
            "attempt": result.attempts,
            "reason": result.reason,
            "retryable": result.error.retryable if result.error else None,
        },
    )
