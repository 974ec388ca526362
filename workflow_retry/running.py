"""The project's running executions, counted before a restart: ``RETRY_MAX_RUNNING``.

CDF runs at most 50 workflow executions at once per project, shared by every workflow in it (Cognite
docs, data workflows, "Limits and restrictions"). What it does with one more is not documented: it may
queue it behind the others, or refuse it. Either way a bulk restart competes with the project's own
scheduled runs. With ``RETRY_MAX_RUNNING`` set, an execution is restarted only while the project runs
fewer executions than that; the others are ``deferred``, with no session made and no attempt counted,
and come back with their event (SQS) or the next sweep.

One count serves the calls running on this event loop at once (the records of an SQS batch, each in its
own thread):
``POST /workflows/executions/list`` for RUNNING executions, one page of at most ``max_running`` items,
so one request answers "this many" or "at least the limit". Each restart this process starts after
the count takes one unit of what is left; one that did not start (its session or ledger write failed,
CDF refused or throttled the retry) gives its unit back. The count is taken again once it is
:data:`COUNT_FRESH_SECONDS` old, when executions may have ended and ours are counted by CDF itself.

A count that fails defers every execution that needs it: retrying while the project's state is
unknown is what the setting exists to prevent. Other processes (concurrent Lambda invocations) keep
their own counts: the bound is per process, so keep ``RETRY_MAX_RUNNING`` below 50 by the number of
processes that may restart at once (docs/platform-limits.md).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from workflow_retry.cdf import CdfGateway
from workflow_retry.errors import CdfRequestError

COUNT_FRESH_SECONDS = 10.0
"""How long one count of the project's running executions is decided on."""

RUNNING_FILTER: dict[str, Any] = {"status": ["RUNNING"]}


class RunningBudget:
    """How many more executions this process may restart while the project stays under ``limit``."""

    def __init__(self, limit: int, gateway: CdfGateway) -> None:
        self.limit = limit
        self._gateway = gateway
        self._loop = asyncio.get_running_loop()
        self._count: asyncio.Future[int | CdfRequestError] | None = None
        self._counted_at = 0.0
        self._started = 0
        """Restarts this process started (and did not give back) since the count was taken."""
        self.holders = 0
        """Calls holding this budget (:func:`shared_budget`)."""

    def prefetch(self) -> None:
        """Start a count now unless a fresh one is held or in flight (called as a call starts)."""
        self._current()

    def _current(self) -> asyncio.Future[int | CdfRequestError]:
        stale = self._count is None or (
            self._count.done() and self._loop.time() - self._counted_at >= COUNT_FRESH_SECONDS
        )
        if stale:
            self._count = asyncio.ensure_future(self._count_running())
            self._counted_at = self._loop.time()
            self._started = 0
        assert self._count is not None
        return self._count

    async def _count_running(self) -> int | CdfRequestError:
        try:
            items, _ = await self._gateway.list_executions(dict(RUNNING_FILTER), self.limit, None)
        except CdfRequestError as exc:
            return exc
        return len(items)

    async def _running(self) -> int | CdfRequestError:
        """The count to decide on, once it has answered (the newer one, if one was started meanwhile)."""
        while True:
            count = self._current()
            # Shielded: this execution's deadline must not cancel the count the others wait for.
            await asyncio.shield(count)
            if count is self._count:
                return count.result()

    async def take(self) -> str | None:
        """Take room for one restart: None when there is room, else why the execution is deferred."""
        await self._running()
        if (no_room := self.no_room()) is not None:
            return no_room
        self._started += 1
        return None

    async def room(self) -> int:
        """How many more executions may be restarted now (0 when the count failed)."""
        running = await self._running()
        return 0 if isinstance(running, CdfRequestError) else self._left(running)

    def _left(self, running: int) -> int:
        return max(0, self.limit - running - self._started)

    def close(self) -> None:
        """Cancel a count still in flight: no call is left to use it."""
        if self._count is not None:
            self._count.cancel()

    def give_back(self) -> None:
        """A restart that took room did not start."""
        self._started = max(0, self._started - 1)

    def no_room(self) -> str | None:
        """Why no execution may be restarted now, by the count held (None: room left, or still counting)."""
        if self._count is None or not self._count.done():
            return None
        running = self._count.result()
        if isinstance(running, CdfRequestError):
            return (
                f"not retried now: counting the project's running executions failed ({running.message}); "
                f"RETRY_MAX_RUNNING is {self.limit}"
            )
        if self._left(running) > 0:
            return None
        return (
            f"not retried now: the project runs {running} execution(s) and this process restarted "
            f"{self._started} since; RETRY_MAX_RUNNING is {self.limit}"
        )


_budgets_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, RunningBudget]] = (
    weakref.WeakKeyDictionary()
)


@contextmanager
def shared_budget(limit: int, gateway: CdfGateway) -> Iterator[RunningBudget]:
    """The budget of the calls running on this event loop now (the records of an SQS batch share one).

    Its count starts now. Held while a call runs: when the last call holding it ends, a count still in
    flight is cancelled and the budget forgotten, so a call that starts later counts afresh.
    """
    by_limit = _budgets_by_loop.setdefault(asyncio.get_running_loop(), {})
    budget = by_limit.get(limit)
    if budget is None:
        budget = by_limit[limit] = RunningBudget(limit, gateway)
    budget.holders += 1
    budget.prefetch()
    try:
        yield budget
    finally:
        budget.holders -= 1
        if budget.holders == 0:
            del by_limit[limit]
            budget.close()
