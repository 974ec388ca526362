"""Duplicate deliveries: a delivery key is handled once, and never twice at the same time.

SNS, SQS and EventBridge deliver at least once, and a webhook sender resends a delivery it got no
answer for; each delivery carries an ID (SNS ``MessageId``, SQS ``messageId``, EventBridge ``id``,
``webhook-id``), turned into a key such as ``sns:<MessageId>`` by :mod:`workflow_retry.aws.events`.

Powertools' idempotency utility keeps one record per key: INPROGRESS while an invocation handles it
(a second invocation then gets :class:`DeliveryInProgressError`; the record lapses when the first
invocation's time is up, so a crash does not block the key), COMPLETED with the result once done (a
duplicate gets that result back, marked as a replay, without calling CDF). A result that must come
again (a transient failure) is not stored: the work raises, the record is deleted, and the
redelivery is handled afresh.

With ``IDEMPOTENCY_TABLE`` the records live in DynamoDB (shared by every container, and cached in
memory for the container's own replays); without it, in this container's memory only.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS, DataRecord

from workflow_retry.errors import DeliveryInProgressError, IdempotencyStoreError

KEY_PREFIX = "workflow-retry"
"""Prefix of every record's ``id`` (``workflow-retry#<md5 of the delivery key>``)."""

Work = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Handled:
    """What became of one delivery: its result, and whether it came from an earlier delivery."""

    result: dict[str, Any]
    replayed: bool


class DeliveryGuard:
    """Runs the work of a delivery key at most once (see the module docstring)."""

    def __init__(self, store: BasePersistenceLayer, *, expiry_seconds: int, cache_in_memory: bool) -> None:
        self._config = IdempotencyConfig(
            event_key_jmespath="key",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expiry_seconds,
            use_local_cache=cache_in_memory,
            response_hook=_mark_replayed,
        )
        self._once = idempotent_function(
            _run_work,
            data_keyword_argument="delivery",
            persistence_store=store,
            config=self._config,
            key_prefix=KEY_PREFIX,
        )

    def register(self, context: Any) -> None:
        """The invocation's Lambda context: an INPROGRESS record lapses when its time is up."""
        self._config.register_lambda_context(context)

    def run_once(self, key: str, work: Work) -> Handled:
        """The work's result, or the stored result of an earlier delivery of the same key.

        Raises :class:`DeliveryInProgressError` while another invocation handles the key, and
        :class:`IdempotencyStoreError` when the store fails (the work is then not done). An exception
        from the work itself propagates, and nothing is remembered.
        """
        try:
            outcome = self._once(delivery={"key": key}, work=work)
        except IdempotencyAlreadyInProgressError:
            raise DeliveryInProgressError(f"delivery {key} is being handled by another invocation") from None
        except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else type(exc).__name__
            raise IdempotencyStoreError(f"the idempotency table failed ({cause}): delivery {key} not handled") from None
        if isinstance(outcome, Handled):
            return outcome
        return Handled(result=outcome, replayed=False)


def _run_work(delivery: dict[str, str], work: Work) -> dict[str, Any]:
    return work()


def _mark_replayed(response: Any, idempotent_data: DataRecord) -> Handled:
    return Handled(result=response if isinstance(response, dict) else {}, replayed=True)


def dynamodb_guard(table_name: str, expiry_seconds: int) -> DeliveryGuard:
    """Records in DynamoDB table ``table_name`` (partition key ``id`` (S), TTL attribute ``expiration``)."""
    return DeliveryGuard(
        DynamoDBPersistenceLayer(table_name=table_name), expiry_seconds=expiry_seconds, cache_in_memory=True
    )


def memory_guard(expiry_seconds: int) -> DeliveryGuard:
    """Records in this container's memory only: duplicates reaching other containers are not seen."""
    return DeliveryGuard(InMemoryPersistenceLayer(), expiry_seconds=expiry_seconds, cache_in_memory=False)


class InMemoryPersistenceLayer(BasePersistenceLayer):
    """Powertools records in a bounded dict, with DynamoDB's conditions: a key is taken unless expired."""

    def __init__(self, max_records: int = 10_000) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._records: OrderedDict[str, DataRecord] = OrderedDict()
        self._max_records = max_records
        self._lock = threading.Lock()

    def _get_record(self, idempotency_key: str) -> DataRecord:
        with self._lock:
            record = self._records.get(idempotency_key)
        if record is None:
            raise IdempotencyItemNotFoundError
        return record

    def _put_record(self, data_record: DataRecord) -> None:
        with self._lock:
            existing = self._records.get(data_record.idempotency_key)
            if existing is not None and not _lapsed(existing):
                raise IdempotencyItemAlreadyExistsError(old_data_record=existing)
            self._records[data_record.idempotency_key] = data_record
            while len(self._records) > self._max_records:
                self._records.popitem(last=False)

    def _update_record(self, data_record: DataRecord) -> None:
        with self._lock:
            self._records[data_record.idempotency_key] = data_record

    def _delete_record(self, data_record: DataRecord) -> None:
        with self._lock:
            self._records.pop(data_record.idempotency_key, None)


def _lapsed(record: DataRecord) -> bool:
    if record.is_expired:
        return True
    in_progress_until = record.in_progress_expiry_timestamp
    return (
        record.status == STATUS_CONSTANTS["INPROGRESS"]
        and in_progress_until is not None
        and in_progress_until < time.time() * 1000
    )
