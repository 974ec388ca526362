"""The duplicate guard: Powertools idempotency over DynamoDB (moto's server, real boto3) and over memory."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from tests.aws.samples import lambda_context
from workflow_retry.aws.delivery_guard import DeliveryGuard
from workflow_retry.aws.idempotency import MemoryGuard, dynamodb_guard, memory_guard
from workflow_retry.errors import DeliveryInProgressError, DeliveryKeyReusedError, IdempotencyStoreError

GuardFactory = Callable[[], DeliveryGuard]
PAYLOAD = "sha256-of-the-payload"


@pytest.fixture(params=["dynamodb", "memory"])
def new_guard(request: pytest.FixtureRequest) -> GuardFactory:
    """Guards that share one store, like containers of one function (one memory store: one container)."""
    if request.param == "dynamodb":
        table = request.getfixturevalue("idempotency_table")
        factory: GuardFactory = lambda: dynamodb_guard(table, 3600)  # noqa: E731
    else:
        shared = memory_guard(3600)
        factory = lambda: shared  # noqa: E731
    return factory


def registered(guard: DeliveryGuard) -> DeliveryGuard:
    guard.register(lambda_context())
    return guard


class Work:
    def __init__(self, result: dict[str, Any] | None = None) -> None:
        self.calls = 0
        self.result = result or {"results": [], "counts": {"retried": 1}}

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return self.result


def test_a_key_is_worked_once_and_a_duplicate_gets_the_stored_result(new_guard: GuardFactory) -> None:
    work = Work()
    first = registered(new_guard()).run_once("sns:m-1", work, fingerprint=PAYLOAD)
    again = registered(new_guard()).run_once("sns:m-1", work, fingerprint=PAYLOAD)

    assert (first.result, first.replayed) == (work.result, False)
    assert (again.result, again.replayed) == (work.result, True)
    assert work.calls == 1


def test_different_keys_are_independent(new_guard: GuardFactory) -> None:
    work = Work()
    guard = registered(new_guard())

    guard.run_once("sqs:a", work, fingerprint=PAYLOAD)
    guard.run_once("sqs:b", work, fingerprint=PAYLOAD)

    assert work.calls == 2


def test_work_that_raises_is_not_remembered_and_is_done_again_next_time(new_guard: GuardFactory) -> None:
    guard = registered(new_guard())

    def failing() -> dict[str, Any]:
        raise RuntimeError("transient")

    with pytest.raises(RuntimeError, match="transient"):
        guard.run_once("events:e-1", failing, fingerprint=PAYLOAD)
    work = Work()
    assert guard.run_once("events:e-1", work, fingerprint=PAYLOAD).replayed is False
    assert work.calls == 1


def test_a_key_being_worked_on_is_refused_to_a_second_invocation(new_guard: GuardFactory) -> None:
    started, release = threading.Event(), threading.Event()

    def slow() -> dict[str, Any]:
        started.set()
        release.wait(timeout=30)
        return {"done": True}

    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(registered(new_guard()).run_once, "webhook:msg_1", slow, fingerprint=PAYLOAD)
        assert started.wait(timeout=30)
        with pytest.raises(DeliveryInProgressError, match="webhook:msg_1 is being handled by another invocation"):
            registered(new_guard()).run_once("webhook:msg_1", Work(), fingerprint=PAYLOAD)
        release.set()
        assert first.result().result == {"done": True}

    assert registered(new_guard()).run_once("webhook:msg_1", Work(), fingerprint=PAYLOAD).result == {"done": True}


def test_a_key_held_by_an_invocation_whose_time_is_up_is_taken_by_the_next(new_guard: GuardFactory) -> None:
    started, release = threading.Event(), threading.Event()

    def stuck() -> dict[str, Any]:  # as if the first invocation had been frozen or killed
        started.set()
        release.wait(timeout=30)
        return {"stuck": True}

    first_guard = new_guard()
    first_guard.register(lambda_context(seconds=0.5))
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(first_guard.run_once, "sqs:m-9", stuck, fingerprint=PAYLOAD)
        assert started.wait(timeout=30)
        time.sleep(1.2)  # past the first invocation's end (Powertools keeps whole milliseconds)
        second = registered(new_guard()).run_once("sqs:m-9", Work({"second": True}), fingerprint=PAYLOAD)
        release.set()
        late = first.exception()

    # The first's time is up, so its late write to the table gets the minimum timeout (0.1 s): on a loaded
    # machine moto can miss it, and a store error naming the delivery is then its honest answer.
    assert late is None or (isinstance(late, IdempotencyStoreError) and "sqs:m-9" in str(late)), late

    assert (second.result, second.replayed) == ({"second": True}, False)


def test_the_memory_guard_forgets_its_oldest_keys_beyond_its_size() -> None:
    guard = registered(MemoryGuard(3600, max_records=2))
    work = Work()
    for key in ("k-1", "k-2", "k-3"):
        guard.run_once(key, work, fingerprint=PAYLOAD)

    assert guard.run_once("k-3", work, fingerprint=PAYLOAD).replayed
    assert not guard.run_once("k-1", work, fingerprint=PAYLOAD).replayed  # forgotten: worked again
    assert work.calls == 4


def test_a_missing_table_fails_closed_without_doing_the_work(moto_endpoint: str) -> None:
    work = Work()

    with pytest.raises(
        IdempotencyStoreError,
        match=r"the idempotency table failed \(ResourceNotFoundException\): delivery sns:m-1 not handled",
    ):
        registered(dynamodb_guard("no-such-table", 3600)).run_once("sns:m-1", work, fingerprint=PAYLOAD)
    assert work.calls == 0


def test_a_container_answers_its_own_replays_from_memory_others_ask_dynamodb(idempotency_table: str) -> None:
    warm = registered(dynamodb_guard(idempotency_table, 3600))
    work = Work()
    warm.run_once("webhook:msg_9", work, fingerprint=PAYLOAD)
    dynamodb: Any = boto3.client("dynamodb")
    [item] = dynamodb.scan(TableName=idempotency_table)["Items"]
    assert item["id"]["S"].startswith("workflow-retry#")
    assert item["status"]["S"] == "COMPLETED"
    assert int(item["expiration"]["N"]) > 0

    dynamodb.delete_item(TableName=idempotency_table, Key={"id": item["id"]})

    assert warm.run_once("webhook:msg_9", work, fingerprint=PAYLOAD).replayed is True  # from this container's memory
    assert (
        registered(dynamodb_guard(idempotency_table, 3600))
        .run_once("webhook:msg_9", work, fingerprint=PAYLOAD)
        .replayed
        is False
    )
    assert work.calls == 2


def test_separate_memory_guards_are_separate_containers() -> None:
    work = Work()

    registered(memory_guard(3600)).run_once("sns:m-1", work, fingerprint=PAYLOAD)
    registered(memory_guard(3600)).run_once("sns:m-1", work, fingerprint=PAYLOAD)

    assert work.calls == 2


def test_a_key_reused_for_another_payload_is_refused_not_answered_with_the_first_result(
    new_guard: GuardFactory,
) -> None:
    first, second = Work({"first": True}), Work({"second": True})
    registered(new_guard()).run_once("sns:m-1", first, fingerprint="payload-a")

    with pytest.raises(DeliveryKeyReusedError, match="sns:m-1"):
        registered(new_guard()).run_once("sns:m-1", second, fingerprint="payload-b")
    assert second.calls == 0
    # The first payload's duplicates are still recognised.
    again = registered(new_guard()).run_once("sns:m-1", first, fingerprint="payload-a")
    assert (again.result, again.replayed, first.calls) == ({"first": True}, True, 1)


def test_a_key_reused_for_another_payload_while_the_first_is_in_progress_is_refused(new_guard: GuardFactory) -> None:
    started, release = threading.Event(), threading.Event()

    def stuck() -> dict[str, Any]:
        started.set()
        release.wait(timeout=30)
        return {"first": True}

    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(registered(new_guard()).run_once, "webhook:msg_2", stuck, fingerprint="payload-a")
        assert started.wait(timeout=30)
        try:
            with pytest.raises(DeliveryKeyReusedError):
                registered(new_guard()).run_once("webhook:msg_2", Work(), fingerprint="payload-b")
        finally:
            release.set()
        assert first.result(10).result == {"first": True}


def a_large_answer(results: int = 1_000) -> dict[str, Any]:
    """A delivery's answer of about 800 KB: twice what one DynamoDB item holds (400 KB)."""
    return {
        "results": [
            {
                "executionId": f"00000000-0000-4000-8000-{n:012d}",
                "outcome": "retried",
                "reason": "retried (attempt 1 of 3) " + "x" * 600,
                "attempts": 1,
                "execution": {
                    "id": f"00000000-0000-4000-8000-{n:012d}",
                    "workflowExternalId": "wf",
                    "status": "RUNNING",
                },
            }
            for n in range(results)
        ],
        "counts": {"retried": results},
    }


def test_an_answer_larger_than_a_dynamodb_item_is_answered_whole_and_stored_trimmed(idempotency_table: str) -> None:
    work = Work(a_large_answer())
    assert len(json.dumps(work.result)) > 400_000

    first = registered(dynamodb_guard(idempotency_table, 3600)).run_once("webhook:big", work, fingerprint=PAYLOAD)
    again = registered(dynamodb_guard(idempotency_table, 3600)).run_once("webhook:big", work, fingerprint=PAYLOAD)

    assert (first.result, first.replayed) == (work.result, False)  # this delivery's caller gets all of it
    assert again.replayed is True
    assert work.calls == 1
    # A duplicate (another container: from the table) gets the same outcomes, their texts cut to fit the item.
    assert len(json.dumps(again.result)) <= 400_000
    assert again.result["counts"] == {"retried": 1_000}
    assert [(r["executionId"], r["outcome"]) for r in again.result["results"]] == [
        (r["executionId"], r["outcome"]) for r in work.result["results"]
    ]
    assert "the idempotency table accepts" in again.result["trimmed"]["why"]


def test_a_record_the_table_cannot_save_after_the_work_ran_still_answers_the_work(
    idempotency_table: str, caplog: pytest.LogCaptureFixture
) -> None:
    dynamodb: Any = boto3.client("dynamodb")

    class WorkThatLosesTheTable(Work):
        def __call__(self) -> dict[str, Any]:
            dynamodb.delete_table(TableName=idempotency_table)  # the record's final write will fail
            return super().__call__()

    work = WorkThatLosesTheTable()
    handled = registered(dynamodb_guard(idempotency_table, 3600)).run_once("sqs:m-7", work, fingerprint=PAYLOAD)

    # The retries were made: the answer says so, not "not handled" (which would send the record back).
    assert (handled.result, handled.replayed, work.calls) == (work.result, False, 1)
    [line] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "sqs:m-7 was handled" in line.getMessage()
    assert "ResourceNotFoundException" in line.getMessage()
