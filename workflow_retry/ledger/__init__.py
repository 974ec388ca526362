"""The attempt ledger: where the retries of each execution are counted, across invocations.

A small port (:class:`AttemptLedger`) with real adapters:

- ``raw`` (:mod:`workflow_retry.ledger.raw`): a CDF RAW table, the default wherever there is a CDF
  client. RAW has no conditional writes: see docs/policy-and-sweeps.md for what that leaves open;
- ``dynamodb`` (:mod:`workflow_retry.ledger.dynamodb`): a DynamoDB table with conditional updates,
  so two concurrent invocations can never both take the last attempt;
- ``none`` (:class:`NoLedger`): an explicit choice to count nothing; every result then says
  ``capEnforced: false``.

Taking an attempt is optimistic: the caller passes the record it read (``seen``), and the ledger
counts the attempt only if the record is still that one. A ledger that lost the race answers None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from workflow_retry.errors import ConfigurationError

if TYPE_CHECKING:
    from cognite.client import AsyncCogniteClient, CogniteClient

    from workflow_retry.settings import Settings

LedgerKind = Literal["raw", "dynamodb", "none"]

OUTCOME_RETRIED = "retried"
"""``lastOutcome`` written when an attempt is taken (before the request: a crash still counts it)."""
OUTCOME_GAVE_UP = "gave_up"
"""``lastOutcome`` once the give-up was announced: it is announced only once."""


@dataclass(frozen=True)
class AttemptRecord:
    """What the ledger knows of one execution. Times are epoch milliseconds, ``expires_at`` epoch seconds."""

    execution_id: str
    workflow_external_id: str | None
    attempts: int
    last_attempt_at: int | None
    last_outcome: str | None
    expires_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "executionId": self.execution_id,
            "workflowExternalId": self.workflow_external_id,
            "attempts": self.attempts,
            "lastAttemptAt": self.last_attempt_at,
            "lastOutcome": self.last_outcome,
            "expiresAt": self.expires_at,
        }

    def with_outcome(self, outcome: str, ttl_seconds: int, now_ms: int) -> AttemptRecord:
        return replace(self, last_outcome=outcome, expires_at=now_ms // 1000 + ttl_seconds)


def next_record(
    seen: AttemptRecord | None, execution_id: str, workflow_external_id: str | None, now_ms: int, ttl_seconds: int
) -> AttemptRecord:
    """The record after one more attempt; it expires ``ttl_seconds`` after this attempt."""
    return AttemptRecord(
        execution_id=execution_id,
        workflow_external_id=workflow_external_id or (seen.workflow_external_id if seen else None),
        attempts=(seen.attempts if seen else 0) + 1,
        last_attempt_at=now_ms,
        last_outcome=OUTCOME_RETRIED,
        expires_at=now_ms // 1000 + ttl_seconds,
    )


READ_AHEAD_FRESH_MS = 10_000
"""How long records read in bulk stand for a fresh read: past that, an execution's record is read again.

A record read ahead is older, when its execution's turn comes, than one read just then; the cap and the
cooldown guard against loops that take minutes, so a few seconds do not weaken them, but a long batch
should not decide on a record read long before.
"""


@dataclass(frozen=True)
class LedgerSnapshot:
    """Records read in bulk (:meth:`AttemptLedger.read_many`) for the IDs in ``covers``, at ``read_at_ms``."""

    records: Mapping[str, AttemptRecord]
    covers: frozenset[str]
    read_at_ms: int

    def knows(self, execution_id: str, now_ms: int) -> bool:
        """Whether the snapshot answers for this execution now (covered, and still fresh)."""
        return execution_id in self.covers and now_ms - self.read_at_ms <= READ_AHEAD_FRESH_MS


class AttemptLedger(Protocol):
    """Counts attempts per execution. Every method raises :class:`LedgerError` when the store fails."""

    @property
    def kind(self) -> LedgerKind: ...

    @property
    def enforces_cap(self) -> bool:
        """False only for the ``none`` ledger: results then say the cap is not enforced."""
        ...

    async def get(self, execution_id: str, now_ms: int) -> AttemptRecord | None:
        """The execution's record, or None when there is none (or it has expired)."""
        ...

    async def read_many(self, execution_ids: Sequence[str], now_ms: int) -> Mapping[str, AttemptRecord] | None:
        """The live records of many executions in fewer requests than one each (an ID with no record is absent).

        None when this ledger cannot do that cheaply for these IDs: the caller then reads them one by one.
        """
        ...

    async def take_attempt(
        self, seen: AttemptRecord | None, execution_id: str, workflow_external_id: str | None, now_ms: int
    ) -> AttemptRecord | None:
        """Count one attempt if the record is still ``seen``; the new record, or None when it changed."""
        ...

    async def release_attempt(self, taken: AttemptRecord, previous: AttemptRecord | None, now_ms: int) -> None:
        """Undo an attempt that CDF certainly did not apply (the retry request was refused or lost)."""
        ...

    async def record_outcome(self, record: AttemptRecord, outcome: str, now_ms: int) -> bool:
        """Set ``lastOutcome``; False when ``outcome`` was already recorded (so a give-up is told once)."""
        ...


class NoLedger:
    """The explicit ``none`` ledger: nothing is counted, the cap and the cooldown are not enforced."""

    kind: LedgerKind = "none"
    enforces_cap = False

    async def get(self, execution_id: str, now_ms: int) -> AttemptRecord | None:
        return None

    async def read_many(self, execution_ids: Sequence[str], now_ms: int) -> Mapping[str, AttemptRecord] | None:
        return {}

    async def take_attempt(
        self, seen: AttemptRecord | None, execution_id: str, workflow_external_id: str | None, now_ms: int
    ) -> AttemptRecord | None:
        return next_record(None, execution_id, workflow_external_id, now_ms, 0)

    async def release_attempt(self, taken: AttemptRecord, previous: AttemptRecord | None, now_ms: int) -> None:
        return None

    async def record_outcome(self, record: AttemptRecord, outcome: str, now_ms: int) -> bool:
        return True


def build_ledger(settings: Settings, client: CogniteClient | AsyncCogniteClient | None) -> AttemptLedger:
    """The ledger the settings choose; without ``RETRY_LEDGER``: RAW when there is a CDF client.

    There is no silent fallback: a ``dynamodb`` ledger without a table name, or a ``raw`` ledger
    without a client, is a :class:`ConfigurationError`.
    """
    kind = settings.ledger or ("raw" if client is not None else None)
    ttl_seconds = int(settings.ledger_ttl_hours * 3600)
    if kind == "none":
        return NoLedger()
    if kind == "raw":
        if client is None:
            raise ConfigurationError("RETRY_LEDGER=raw needs a CDF client")
        from workflow_retry.ledger.raw import RawLedger

        return RawLedger(client, settings.ledger_raw_database, settings.ledger_raw_table, ttl_seconds)
    if kind == "dynamodb":
        if not settings.ledger_table:
            raise ConfigurationError("RETRY_LEDGER=dynamodb needs RETRY_LEDGER_TABLE (the DynamoDB table name)")
        from workflow_retry.ledger.dynamodb import DynamoDbLedger

        return DynamoDbLedger.from_table_name(settings.ledger_table, ttl_seconds, settings.deadline_seconds)
    raise ConfigurationError("no attempt ledger: set RETRY_LEDGER to raw, dynamodb or none")
