"""The attempt ledger in a CDF RAW table, through cognite-sdk's ``client.raw`` API.

One row per execution, keyed by the execution ID, with the columns ``workflowExternalId``,
``attempts``, ``lastAttemptAt`` (epoch ms), ``lastOutcome`` and ``expiresAt`` (epoch seconds). The
database and table are created on the first write (``ensureParent``). RAW keeps rows forever: a row
past ``expiresAt`` is treated as absent and overwritten on the next attempt.

Capability: ``rawACL:READ`` and ``rawACL:WRITE``, scoped to the ledger database.

RAW has no conditional writes, so :meth:`RawLedger.take_attempt` cannot refuse a concurrent writer:
two invocations that read the same record both count the attempt. CDF's own status check is what
keeps that safe: the first retry makes the execution RUNNING and CDF refuses the second (see
``docs/policy.md``).
"""

from __future__ import annotations

from typing import Any

from cognite.client import AsyncCogniteClient, CogniteClient
from cognite.client.data_classes import RowWrite
from cognite.client.exceptions import CogniteAPIError, CogniteException, CogniteRequestError

from workflow_retry.errors import LedgerError
from workflow_retry.ledger import AttemptRecord, LedgerKind, next_record


class RawLedger:
    """:class:`~workflow_retry.ledger.AttemptLedger` over a RAW table (best effort under races)."""

    kind: LedgerKind = "raw"
    enforces_cap = True

    def __init__(self, client: CogniteClient | AsyncCogniteClient, database: str, table: str, ttl_seconds: int) -> None:
        self._raw = (client.get_async_client() if isinstance(client, CogniteClient) else client).raw
        self.database = database
        self.table = table
        self._ttl_seconds = ttl_seconds

    async def get(self, execution_id: str, now_ms: int) -> AttemptRecord | None:
        try:
            row = await self._raw.rows.retrieve(self.database, self.table, execution_id)
        except CogniteException as exc:
            raise _ledger_error("reading", exc) from None
        if row is None or not row.columns:
            return None  # also when the database or table does not exist yet (404)
        record = _from_columns(execution_id, row.columns)
        return None if record is None or record.expires_at <= now_ms // 1000 else record

    async def take_attempt(
        self, seen: AttemptRecord | None, execution_id: str, workflow_external_id: str | None, now_ms: int
    ) -> AttemptRecord:
        record = next_record(seen, execution_id, workflow_external_id, now_ms, self._ttl_seconds)
        await self._write(record)
        return record

    async def release_attempt(self, taken: AttemptRecord, previous: AttemptRecord | None, now_ms: int) -> None:
        if previous is not None:
            await self._write(previous)
            return
        try:
            await self._raw.rows.delete(self.database, self.table, taken.execution_id)
        except CogniteException as exc:
            raise _ledger_error("writing", exc) from None

    async def record_outcome(self, record: AttemptRecord, outcome: str, now_ms: int) -> bool:
        if record.last_outcome == outcome:
            return False
        await self._write(record.with_outcome(outcome, self._ttl_seconds, now_ms))
        return True

    async def _write(self, record: AttemptRecord) -> None:
        columns = {k: v for k, v in record.to_json().items() if k != "executionId"}
        try:
            await self._raw.rows.insert(
                self.database, self.table, RowWrite(key=record.execution_id, columns=columns), ensure_parent=True
            )
        except CogniteException as exc:
            raise _ledger_error("writing", exc) from None


def _from_columns(execution_id: str, columns: dict[str, Any]) -> AttemptRecord | None:
    attempts, expires_at = columns.get("attempts"), columns.get("expiresAt")
    if not isinstance(attempts, int | float) or not isinstance(expires_at, int | float):
        return None  # not a row this ledger wrote: ignore it rather than guess
    last_attempt_at = columns.get("lastAttemptAt")
    workflow, outcome = columns.get("workflowExternalId"), columns.get("lastOutcome")
    return AttemptRecord(
        execution_id=execution_id,
        workflow_external_id=workflow if isinstance(workflow, str) else None,
        attempts=int(attempts),
        last_attempt_at=int(last_attempt_at) if isinstance(last_attempt_at, int | float) else None,
        last_outcome=outcome if isinstance(outcome, str) else None,
        expires_at=int(expires_at),
    )


def _ledger_error(doing: str, exc: CogniteException) -> LedgerError:
    if isinstance(exc, CogniteAPIError):
        retryable = exc.code == 429 or exc.code >= 500
        return LedgerError(f"{doing} the RAW attempt ledger failed ({exc.code}: {exc.message})", exc.code, retryable)
    # Timeouts and lost connections left after the SDK's own retries may pass; anything else is reported as is.
    retryable = isinstance(exc, CogniteRequestError)
    return LedgerError(f"{doing} the RAW attempt ledger failed ({type(exc).__name__})", None, retryable)
