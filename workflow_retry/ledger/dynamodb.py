"""The attempt ledger in a DynamoDB table, with conditional writes (imported only for ``RETRY_LEDGER=dynamodb``).

Table: hash key ``executionId`` (S), TTL attribute ``purgeAt`` (epoch seconds). An item holds
``executionId``, ``workflowExternalId``, ``attempts``, ``lastAttemptAt`` (epoch ms), ``lastOutcome``,
``expiresAt`` (epoch seconds: past it the record counts as absent), ``history`` (the recent attempts
as JSON text: :mod:`workflow_retry.history`) and ``purgeAt`` (``expiresAt`` plus the retention: DynamoDB's
TTL deletes the item after it, so :meth:`DynamoDbLedger.prune` has nothing to do).

Every write is conditional on the item the caller read (its ``attempts`` and ``lastAttemptAt``), so
of several invocations that read the same record, exactly one takes the next attempt: two can never
both take the last one. IAM: ``dynamodb:GetItem``, ``PutItem``, ``UpdateItem`` and ``DeleteItem`` on
the table; ``workflow-retry history`` also needs ``dynamodb:Scan``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from workflow_retry.boto_clients import TimeBoundClient, bounded_client, no_time_limit, time_left_until
from workflow_retry.errors import ConfigurationError, LedgerError
from workflow_retry.ledger import (
    DEFAULT_RETENTION_SECONDS,
    AttemptRecord,
    History,
    LedgerKind,
    RecentRecords,
    first_records,
    history_from_json,
    history_to_text,
    next_record,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient  # type: ignore[import-not-found]
else:
    DynamoDBClient = Any

_CONDITION_FAILED = "ConditionalCheckFailedException"


class DynamoDbLedger:
    """:class:`~workflow_retry.ledger.AttemptLedger` over a DynamoDB table (boto3 calls run in threads)."""

    kind: LedgerKind = "dynamodb"
    enforces_cap = True

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table_name: str,
        ttl_seconds: int,
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        self._db = dynamodb
        self.table_name = table_name
        self._ttl_seconds = ttl_seconds
        self._retention_seconds = retention_seconds

    @classmethod
    def from_table_name(
        cls,
        table_name: str,
        ttl_seconds: int,
        deadline_seconds: float | None = None,
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    ) -> DynamoDbLedger:
        """A ledger with a boto3 client from the environment (region, credentials, endpoint).

        Each call's timeouts and retries fit what is left of ``deadline_seconds`` from now (the call's
        deadline; see :mod:`workflow_retry.boto_clients`). :class:`ConfigurationError` when boto3 cannot
        make the client (e.g. no region is configured).
        """
        time_left = no_time_limit if deadline_seconds is None else time_left_until(time.monotonic() + deadline_seconds)
        try:
            bounded_client("dynamodb", time_left())  # made now, so that a missing region is told now
        except BotoCoreError as exc:
            raise ConfigurationError(f"RETRY_LEDGER=dynamodb: no DynamoDB client can be made: {exc}") from None
        return cls(TimeBoundClient("dynamodb", time_left), table_name, ttl_seconds, retention_seconds)

    async def get(self, execution_id: str, now_ms: int) -> AttemptRecord | None:
        answer = await self._call(
            "reading", "get_item", TableName=self.table_name, Key=_key(execution_id), ConsistentRead=True
        )
        item = answer.get("Item")
        if not item:
            return None
        record = _from_item(item)
        return None if record.expires_at <= now_ms // 1000 else record

    async def read_many(self, execution_ids: Sequence[str], now_ms: int) -> frozenset[str] | None:
        return None  # consistent single reads, one per execution (they run in threads, off the event loop)

    async def take_attempt(
        self,
        seen: AttemptRecord | None,
        execution_id: str,
        workflow_external_id: str | None,
        now_ms: int,
        history: History = (),
    ) -> AttemptRecord | None:
        record = next_record(seen, execution_id, workflow_external_id, now_ms, self._ttl_seconds, history)
        condition, values = _unchanged(seen, now_ms)
        written = await self._conditional(
            "put_item", TableName=self.table_name, Item=self._item(record), ConditionExpression=condition, **values
        )
        return record if written else None

    async def release_attempt(self, taken: AttemptRecord, previous: AttemptRecord | None) -> None:
        condition, values = _still(taken)
        if previous is None:
            await self._conditional(
                "delete_item",
                TableName=self.table_name,
                Key=_key(taken.execution_id),
                ConditionExpression=condition,
                **values,
            )
        else:
            item = self._item(previous)
            await self._conditional(
                "put_item", TableName=self.table_name, Item=item, ConditionExpression=condition, **values
            )

    async def record_outcome(self, record: AttemptRecord, outcome: str, now_ms: int) -> bool:
        updated = record.with_outcome(outcome, self._ttl_seconds, now_ms)
        # The item may not exist yet: an execution given up on before any retry (an access error).
        update = (
            "SET lastOutcome = :outcome, expiresAt = :expires, purgeAt = :purge, history = :history,"
            " attempts = if_not_exists(attempts, :attempts)"
        )
        values: dict[str, Any] = {
            ":outcome": {"S": outcome},
            ":expires": {"N": str(updated.expires_at)},
            ":purge": {"N": str(updated.expires_at + self._retention_seconds)},
            ":history": {"S": history_to_text(record.history)},
            ":attempts": {"N": str(record.attempts)},
        }
        if record.workflow_external_id:
            update += ", workflowExternalId = if_not_exists(workflowExternalId, :workflow)"
            values[":workflow"] = {"S": record.workflow_external_id}
        return await self._conditional(
            "update_item",
            TableName=self.table_name,
            Key=_key(record.execution_id),
            UpdateExpression=update,
            ConditionExpression="attribute_not_exists(lastOutcome) OR lastOutcome <> :outcome",
            ExpressionAttributeValues=values,
        )

    async def list_recent(self, since_ms: int, now_ms: int, limit: int) -> RecentRecords:
        """A scan of the table (paginated), keeping the records active since ``since_ms``.

        DynamoDB has no index by time here, so the whole table is read; TTL keeps it to the records of
        the TTL plus the retention.
        """
        return await first_records(self._pages_since(since_ms), limit)

    async def _pages_since(self, since_ms: int) -> AsyncIterator[list[AttemptRecord]]:
        kwargs: dict[str, Any] = {"TableName": self.table_name}
        while True:
            answer = await self._call("reading", "scan", **kwargs)
            records = (_from_item(item) for item in answer.get("Items") or ())
            yield [record for record in records if (record.last_activity_at or 0) >= since_ms]
            if not (start := answer.get("LastEvaluatedKey")):
                return
            kwargs["ExclusiveStartKey"] = start

    async def prune(self, now_ms: int, max_rows: int) -> int:
        return 0  # DynamoDB's TTL deletes each item after its purgeAt

    def _item(self, record: AttemptRecord) -> dict[str, Any]:
        item = _to_item(record)
        item["purgeAt"] = {"N": str(record.expires_at + self._retention_seconds)}
        item["history"] = {"S": history_to_text(record.history)}
        return item

    async def _conditional(self, operation: str, **kwargs: Any) -> bool:
        """Run a conditional write; False when its condition did not hold."""
        try:
            await asyncio.to_thread(getattr(self._db, operation), **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                return False
            raise _ledger_error("writing", exc) from None
        except BotoCoreError as exc:
            raise _ledger_error("writing", exc) from None
        return True

    async def _call(self, doing: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = await asyncio.to_thread(getattr(self._db, operation), **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _ledger_error(doing, exc) from None
        return answer


def _unchanged(seen: AttemptRecord | None, now_ms: int) -> tuple[str, dict[str, Any]]:
    """A condition that holds only while the item is still the one the caller read."""
    if seen is None:
        # No item, or one past its TTL that DynamoDB has not deleted yet.
        return "attribute_not_exists(executionId) OR expiresAt <= :now", {
            "ExpressionAttributeValues": {":now": {"N": str(now_ms // 1000)}}
        }
    return _still(seen)


def _still(seen: AttemptRecord) -> tuple[str, dict[str, Any]]:
    """A condition that holds only while the item holds the record read (false on an item that is gone)."""
    values: dict[str, Any] = {":attempts": {"N": str(seen.attempts)}}
    condition = "attempts = :attempts"
    if seen.last_attempt_at is not None:
        condition += " AND lastAttemptAt = :last"
        values[":last"] = {"N": str(seen.last_attempt_at)}
    return condition, {"ExpressionAttributeValues": values}


def _key(execution_id: str) -> dict[str, Any]:
    return {"executionId": {"S": execution_id}}


def _to_item(record: AttemptRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "executionId": {"S": record.execution_id},
        "attempts": {"N": str(record.attempts)},
        "expiresAt": {"N": str(record.expires_at)},
    }
    if record.workflow_external_id:
        item["workflowExternalId"] = {"S": record.workflow_external_id}
    if record.last_attempt_at is not None:
        item["lastAttemptAt"] = {"N": str(record.last_attempt_at)}
    if record.last_outcome:
        item["lastOutcome"] = {"S": record.last_outcome}
    return item


def _from_item(item: dict[str, Any]) -> AttemptRecord:
    def number(name: str) -> int | None:
        value = item.get(name, {}).get("N")
        return int(value) if value is not None else None

    def text(name: str) -> str | None:
        value = item.get(name, {}).get("S")
        return value if isinstance(value, str) else None

    return AttemptRecord(
        execution_id=text("executionId") or "",
        workflow_external_id=text("workflowExternalId"),
        attempts=number("attempts") or 0,
        last_attempt_at=number("lastAttemptAt"),
        last_outcome=text("lastOutcome"),
        expires_at=number("expiresAt") or 0,
        history=history_from_json(text("history")),
    )


_NOT_TRANSIENT = frozenset(
    {"AccessDeniedException", "ResourceNotFoundException", "ValidationException", "UnrecognizedClientException"}
)


def _ledger_error(doing: str, exc: Exception) -> LedgerError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "error"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = str(error.get("Message") or "")
        detail = f"{code}: {message}" if message else code
        return LedgerError(f"{doing} the DynamoDB attempt ledger failed ({detail})", status, code not in _NOT_TRANSIENT)
    return LedgerError(f"{doing} the DynamoDB attempt ledger failed ({type(exc).__name__})", None, True)
