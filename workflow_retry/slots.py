"""The concurrency bound of a process: RETRY_CONCURRENCY executions at work at once on the SDK's loop.

A slot is held by the task handling one execution while it sends that execution's requests. While the
task waits for something that is not its own request (the batch's ledger listing, which a large ledger
makes several round trips long; the batched insert that counts its attempt, once its session is made)
it lends its slot out (:meth:`HeldSlot.lent`): the next executions are read meanwhile, instead of the
whole first wave sitting idle on one listing, or a slot idle on each insert. A task taking its slot
back goes ahead of executions not yet started, so that the executions already read go on first (and a
deadline cuts executions not yet started, not ones half done). At most twice as many executions wait
with their slot lent as there are slots: an execution read and waiting holds its answer in memory, so a
process holds at most three times RETRY_CONCURRENCY executions, however long the listing. Measured in
docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

LENT_PER_SLOT = 2
"""At most this many executions per slot wait with their slot lent (each holds its execution in memory)."""


class Slots:
    """A semaphore with two queues: tasks taking a lent slot back are served before tasks starting."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._free = size
        self.lent = 0
        """Executions now waiting with their slot lent, to take one back (at most twice ``size``)."""
        self._returning: deque[asyncio.Future[None]] = deque()
        self._starting: deque[asyncio.Future[None]] = deque()

    async def take(self, *, returning: bool = False) -> None:
        """Wait for a free slot and hold it (``returning``: ahead of every task not yet started)."""
        if self._free > 0 and not self._returning and not self._starting:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._returning if returning else self._starting
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                if waiter in queue:
                    queue.remove(waiter)
            else:  # handed a slot and cancelled before it could use it: the slot goes to the next task
                self.give()
            raise

    def give(self) -> None:
        """Free a held slot: to the longest-waiting returning task, else starting task, else the pool."""
        for queue in (self._returning, self._starting):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1

    def may_lend(self) -> bool:
        """Whether one more execution may lend its slot (at most twice as many wait so as there are slots)."""
        return self.lent < LENT_PER_SLOT * self._size

    def most_at_once(self) -> int:
        """How many executions can be at work at once: those holding a slot and those waiting with theirs lent."""
        return (1 + LENT_PER_SLOT) * self._size

    def hold(self) -> HeldSlot:
        """A slot to take for one execution (``async with``), which the execution can lend out."""
        return HeldSlot(self)


class HeldSlot:
    """One execution's slot: taken on entry, given back on exit, lent out while the task waits on others."""

    def __init__(self, slots: Slots) -> None:
        self._slots = slots
        self._held = False

    async def __aenter__(self) -> HeldSlot:
        await self._slots.take()
        self._held = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._held:
            self._held = False
            self._slots.give()

    @asynccontextmanager
    async def lent(self) -> AsyncIterator[None]:
        """The slot is free for another task in the block, and held again (ahead of new tasks) after it.

        Kept instead when twice as many executions as there are slots wait with theirs lent already.
        """
        if not self._held or not self._slots.may_lend():
            yield
            return
        self._held = False
        self._slots.lent += 1
        self._slots.give()
        try:
            yield
        finally:
            try:
                await self._slots.take(returning=True)
                self._held = True
            finally:
                self._slots.lent -= 1
