"""Duplicate deliveries: a delivery key is handled once, and never twice at the same time.

SNS, SQS and EventBridge deliver at least once, and a webhook sender resends a delivery it got no
answer for; each delivery carries an ID (SNS ``MessageId``, SQS ``messageId``, EventBridge ``id``,
``webhook-id``), turned into a key such as ``sns:<MessageId>`` by :mod:`workflow_retry.aws.events`.

A key is bound to its payload: each record keeps a hash of the payload it was made for (the
delivery's ``fingerprint``), and the same key with another payload is refused with
:class:`DeliveryKeyReusedError`, never answered with the other payload's result (a queue message
shaped as an SNS envelope chooses its own key, and so does a ``webhook-id`` when signatures are off).

A :class:`DeliveryGuard` keeps one record per key: in progress while an invocation handles it (a
second invocation then gets :class:`DeliveryInProgressError`; the record lapses when the first
invocation's time is up, so a crash does not block the key), completed with the result once done (a
duplicate gets that result back, marked as a replay, without calling CDF). A result that must come
again (a transient failure) is not stored: the work raises, the record is deleted, and the
redelivery is handled afresh.

With ``IDEMPOTENCY_TABLE`` the records live in DynamoDB, through Powertools' idempotency utility
(:mod:`workflow_retry.aws.idempotency_dynamodb`: shared by every container, and cached in memory for
the container's own replays); without it, in this container's memory only (:class:`MemoryGuard`,
the same rules without Powertools, whose idempotency package imports boto3: ~90 ms of cold start).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from workflow_retry.aws.delivery_guard import DeliveryGuard, Handled, Work, reused
from workflow_retry.errors import DeliveryInProgressError


def dynamodb_guard(table_name: str, expiry_seconds: int) -> DeliveryGuard:
    """Records in DynamoDB table ``table_name`` (partition key ``id`` (S), TTL attribute ``expiration``)."""
    # Imported here: Powertools' idempotency utility and boto3 load only when IDEMPOTENCY_TABLE is set.
    from workflow_retry.aws.idempotency_dynamodb import PowertoolsGuard

    return PowertoolsGuard(table_name, expiry_seconds)


def memory_guard(expiry_seconds: int) -> DeliveryGuard:
    """Records in this container's memory only: duplicates reaching other containers are not seen."""
    return MemoryGuard(expiry_seconds)


@dataclass(frozen=True)
class _Record:
    fingerprint: str
    result_json: str | None  # None while in progress
    expires_at: float  # epoch seconds
    in_progress_until: float | None  # epoch seconds: the end of the invocation handling it

    def lapsed(self, now: float) -> bool:
        if now > self.expires_at:
            return True
        return self.result_json is None and self.in_progress_until is not None and self.in_progress_until < now


class MemoryGuard:
    """:class:`DeliveryGuard` over a bounded dict: a key is taken unless its record lapsed.

    Results are stored as JSON, as in DynamoDB, so a replay is a copy that later changes cannot touch.
    """

    def __init__(self, expiry_seconds: int, *, max_records: int = 10_000) -> None:
        self._expiry_seconds = expiry_seconds
        self._max_records = max_records
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()
        self._context: Any = None

    def register(self, context: Any) -> None:
        self._context = context

    def run_once(self, key: str, work: Work, *, fingerprint: str) -> Handled:
        now = time.time()
        with self._lock:
            record = self._records.get(key)
            if record is not None and not record.lapsed(now):
                if record.fingerprint != fingerprint:
                    raise reused(key)
                if record.result_json is None:
                    raise DeliveryInProgressError(f"delivery {key} is being handled by another invocation")
                return Handled(result=json.loads(record.result_json), replayed=True)
            self._store(key, _Record(fingerprint, None, now + self._expiry_seconds, self._invocation_end(now)))
        try:
            result = work()
        except Exception:
            with self._lock:
                self._records.pop(key, None)
            raise
        with self._lock:
            stored = json.dumps(result, sort_keys=True)
            self._store(key, _Record(fingerprint, stored, time.time() + self._expiry_seconds, None))
        return Handled(result=result, replayed=False)

    def _invocation_end(self, now: float) -> float | None:
        remaining_ms = getattr(self._context, "get_remaining_time_in_millis", None)
        return now + remaining_ms() / 1000 if remaining_ms is not None else None

    def _store(self, key: str, record: _Record) -> None:
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > self._max_records:
            self._records.popitem(last=False)
