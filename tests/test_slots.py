"""The concurrency bound: never more slots held than its size, lent slots come back first, none leak."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from workflow_retry.slots import Slots

T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run within 5 s: a slot never handed back shows as a TimeoutError here, not as a hung test."""
    return asyncio.run(asyncio.wait_for(coroutine, 5))


async def _hold(slots: Slots, name: str, order: list[str], seconds: float = 0.01) -> None:
    async with slots.hold():
        order.append(name)
        await asyncio.sleep(seconds)


def test_no_more_tasks_hold_a_slot_at_once_than_there_are_slots() -> None:
    async def run() -> int:
        slots, busy, most = Slots(3), 0, 0

        async def work() -> None:
            nonlocal busy, most
            async with slots.hold():
                busy += 1
                most = max(most, busy)
                await asyncio.sleep(0.005)
                busy -= 1

        await asyncio.gather(*(work() for _ in range(20)))
        return most

    assert _run(run()) == 3


def test_a_lent_slot_is_free_for_a_new_task_and_taken_back_ahead_of_tasks_not_yet_started() -> None:
    async def run() -> list[str]:
        slots, order = Slots(1), []
        listing = asyncio.Event()

        async def first() -> None:
            async with slots.hold() as slot:
                order.append("first reads")
                async with slot.lent():
                    await listing.wait()
                order.append("first goes on")

        async def release_listing() -> None:
            while len(order) < 2:  # first has lent its slot, and "second" has taken it
                await asyncio.sleep(0)
            listing.set()

        await asyncio.gather(first(), _hold(slots, "second", order), _hold(slots, "third", order), release_listing())
        return order

    # "third" queued before "first" wanted its slot back, yet "first" goes on before it.
    assert _run(run()) == ["first reads", "second", "first goes on", "third"]


def test_a_task_cancelled_while_waiting_or_just_handed_a_slot_does_not_keep_it() -> None:
    async def run() -> None:
        slots = Slots(1)
        await slots.take()
        waiting = asyncio.create_task(slots.take())
        handed = asyncio.create_task(slots.take(returning=True))
        await asyncio.sleep(0)  # both queued
        waiting.cancel()
        slots.give()  # handed the slot...
        handed.cancel()  # ...and cancelled before it could run
        results = await asyncio.gather(waiting, handed, return_exceptions=True)
        assert [type(r) for r in results] == [asyncio.CancelledError, asyncio.CancelledError]
        await asyncio.wait_for(slots.take(), timeout=1)  # the slot was passed on, not lost

    _run(run())


def test_a_task_cancelled_while_waiting_ends_cancelled_when_a_freed_slot_passed_it_over() -> None:
    async def run() -> None:
        slots = Slots(1)
        await slots.take()
        waiting = asyncio.create_task(slots.take())
        await asyncio.sleep(0)  # queued
        waiting.cancel()  # its place is cancelled at once; the task sees it at its next turn
        slots.give()  # meanwhile the slot is freed: it passes the cancelled place over, to the pool
        [result] = await asyncio.gather(waiting, return_exceptions=True)
        assert type(result) is asyncio.CancelledError
        await asyncio.wait_for(slots.take(), timeout=1)  # the slot is in the pool, not lost

    _run(run())
