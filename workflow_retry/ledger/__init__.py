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

Each record also keeps the execution's recent attempts (:class:`AttemptEntry`, the ``history`` column
or attribute), written with the writes that already happen: what goes into it is decided by
:mod:`workflow_retry.history`; the retry decision never reads it. Records past their expiry plus the
retention (``RETRY_LEDGER_RETENTION_DAYS``) are deleted (:meth:`AttemptLedger.prune`, or DynamoDB's TTL).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
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


DEFAULT_RETENTION_SECONDS = 30 * 86_400
"""How long a record is kept past its expiry by default (``RETRY_LEDGER_RETENTION_DAYS``: 30)."""
HISTORY_REASON_CHARS = 300
"""A history entry's reason is cut to this many characters, so that a record stays small."""


@dataclass(frozen=True)
class AttemptEntry:
    """One event of an execution's history: an attempt (``outcome`` says what came of it) or the give-up.

    ``at`` is epoch milliseconds; ``engine_execution_id`` is the engine run the attempt started (known
    once the execution was seen again), ``reason`` the failure the attempt answered (for a give-up: why).
    """

    at: int
    outcome: str
    engine_execution_id: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "outcome": self.outcome,
            "engineExecutionId": self.engine_execution_id,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, value: object) -> AttemptEntry | None:
        """The entry a stored object holds, or None when it is not one (never a guess)."""
        if not isinstance(value, Mapping):
            return None
        at, outcome = value.get("at"), value.get("outcome")
        if not isinstance(at, int | float) or isinstance(at, bool) or not isinstance(outcome, str):
            return None
        engine, reason = value.get("engineExecutionId"), value.get("reason")
        return cls(
            at=int(at),
            outcome=outcome,
            engine_execution_id=engine if isinstance(engine, str) else None,
            reason=reason[:HISTORY_REASON_CHARS] if isinstance(reason, str) else None,
        )


History = tuple[AttemptEntry, ...]


def history_to_text(history: History) -> str:
    """The history as stored in DynamoDB (compact JSON text)."""
    return json.dumps([entry.to_json() for entry in history], separators=(",", ":"))


def history_from_json(value: object) -> History:
    """The history a stored value holds (a list, or JSON text of one); entries that are not entries are left out."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return ()
    if not isinstance(value, list):
        return ()
    return tuple(entry for item in value if (entry := AttemptEntry.from_json(item)) is not None)


@dataclass(frozen=True)
class AttemptRecord:
    """What the ledger knows of one execution. Times are epoch milliseconds, ``expires_at`` epoch seconds.

    ``history`` is kept for people (``status``, ``history``); no decision reads it.
    """

    execution_id: str
    workflow_external_id: str | None
    attempts: int
    last_attempt_at: int | None
    last_outcome: str | None
    expires_at: int
    history: History = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "executionId": self.execution_id,
            "workflowExternalId": self.workflow_external_id,
            "attempts": self.attempts,
            "lastAttemptAt": self.last_attempt_at,
            "lastOutcome": self.last_outcome,
            "expiresAt": self.expires_at,
            "history": [entry.to_json() for entry in self.history],
        }

    @property
    def last_activity_at(self) -> int | None:
        """When the ledger last wrote something about this execution (an attempt or the give-up), epoch ms."""
        times = [t for t in (self.last_attempt_at, *(e.at for e in self.history)) if t is not None]
        return max(times) if times else None

    def with_outcome(self, outcome: str, ttl_seconds: int, now_ms: int) -> AttemptRecord:
        return replace(self, last_outcome=outcome, expires_at=now_ms // 1000 + ttl_seconds)


def next_record(
    seen: AttemptRecord | None,
    execution_id: str,
    workflow_external_id: str | None,
    now_ms: int,
    ttl_seconds: int,
    history: History = (),
) -> AttemptRecord:
    """The record after one more attempt; it expires ``ttl_seconds`` after this attempt."""
    return AttemptRecord(
        execution_id=execution_id,
        workflow_external_id=workflow_external_id or (seen.workflow_external_id if seen else None),
        attempts=(seen.attempts if seen else 0) + 1,
        last_attempt_at=now_ms,
        last_outcome=OUTCOME_RETRIED,
        expires_at=now_ms // 1000 + ttl_seconds,
        history=history,
    )


@dataclass(frozen=True)
class RecentRecords:
    """Records written since a time (:meth:`AttemptLedger.list_recent`), and whether that is all of them."""

    records: tuple[AttemptRecord, ...]
    complete: bool


async def first_records(pages: AsyncIterator[Iterable[AttemptRecord]], limit: int) -> RecentRecords:
    """The first ``limit`` records of a paginated read; pages stop being read once more than that were found."""
    found: list[AttemptRecord] = []
    async for page in pages:
        found.extend(page)
        if len(found) > limit:
            return RecentRecords(tuple(found[:limit]), complete=False)
    return RecentRecords(tuple(found), complete=True)


READ_AHEAD_FRESH_MS = 10_000
"""How long records read in bulk stand for a fresh read: past that, they are read again (in bulk, for a batch).

A record read ahead is older, when its execution's turn comes, than one read just then; the cap and the
cooldown guard against loops that take minutes, so a few seconds do not weaken them, but a long batch
should not decide on a record read long before.
"""


@dataclass(frozen=True)
class LedgerSnapshot:
    """A bulk read for the IDs in ``covers``, made at ``read_at_ms``: which of them have a row.

    An ID in ``with_rows`` has its record read whole, alone, before its decision (a write replaces the
    record, so it must start from all of it); any other ID it covers has no live record.
    """

    with_rows: frozenset[str]
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

    async def read_many(self, execution_ids: Sequence[str], now_ms: int) -> frozenset[str] | None:
        """Which of these executions have a record, in fewer requests than one each (see :class:`LedgerSnapshot`).

        None when this ledger cannot do that cheaply for these IDs: the caller then reads them one by one.
        """
        ...

    async def take_attempt(
        self,
        seen: AttemptRecord | None,
        execution_id: str,
        workflow_external_id: str | None,
        now_ms: int,
        history: History = (),
    ) -> AttemptRecord | None:
        """Count one attempt if the record is still ``seen``; the new record, or None when it changed.

        The new record holds ``history`` (built by :func:`workflow_retry.history.with_attempt`).
        """
        ...

    async def release_attempt(self, taken: AttemptRecord, previous: AttemptRecord | None) -> None:
        """Undo an attempt that CDF certainly did not apply (the retry request was refused or lost)."""
        ...

    async def record_outcome(self, record: AttemptRecord, outcome: str, now_ms: int) -> bool:
        """Set ``lastOutcome`` (and the record's ``history``); False when ``outcome`` was already recorded
        (so a give-up is told once)."""
        ...

    async def list_recent(self, since_ms: int, now_ms: int, limit: int) -> RecentRecords:
        """Records written since ``since_ms`` (expired ones too, until pruned), at most ``limit``."""
        ...

    async def prune(self, now_ms: int, max_rows: int) -> int:
        """Delete at most ``max_rows`` records past their expiry plus the retention; how many were deleted."""
        ...


class NoLedger:
    """The explicit ``none`` ledger: nothing is counted, the cap and the cooldown are not enforced."""

    kind: LedgerKind = "none"
    enforces_cap = False

    async def get(self, execution_id: str, now_ms: int) -> AttemptRecord | None:
        return None

    async def read_many(self, execution_ids: Sequence[str], now_ms: int) -> frozenset[str] | None:
        return frozenset()

    async def take_attempt(
        self,
        seen: AttemptRecord | None,
        execution_id: str,
        workflow_external_id: str | None,
        now_ms: int,
        history: History = (),
    ) -> AttemptRecord | None:
        return next_record(None, execution_id, workflow_external_id, now_ms, 0)

    async def release_attempt(self, taken: AttemptRecord, previous: AttemptRecord | None) -> None:
        return None

    async def record_outcome(self, record: AttemptRecord, outcome: str, now_ms: int) -> bool:
        return True

    async def list_recent(self, since_ms: int, now_ms: int, limit: int) -> RecentRecords:
        return RecentRecords((), complete=True)

    async def prune(self, now_ms: int, max_rows: int) -> int:
        return 0


def build_ledger(settings: Settings, client: CogniteClient | AsyncCogniteClient | None) -> AttemptLedger:
    """The ledger the settings choose; without ``RETRY_LEDGER``: RAW when there is a CDF client.

    There is no silent fallback: a ``dynamodb`` ledger without a table name, or a ``raw`` ledger
    without a client, is a :class:`ConfigurationError`.
    """
    kind = settings.ledger or ("raw" if client is not None else None)
    ttl_seconds = int(settings.ledger_ttl_hours * 3600)
    retention_seconds = int(settings.ledger_retention_days * 86_400)
    if kind == "none":
        return NoLedger()
    if kind == "raw":
        if client is None:
            raise ConfigurationError("RETRY_LEDGER=raw needs a CDF client")
        from workflow_retry.ledger.raw import RawLedger

        return RawLedger(
            client, settings.ledger_raw_database, settings.ledger_raw_table, ttl_seconds, retention_seconds
        )
    if kind == "dynamodb":
        if not settings.ledger_table:
            raise ConfigurationError("RETRY_LEDGER=dynamodb needs RETRY_LEDGER_TABLE (the DynamoDB table name)")
        from workflow_retry.ledger.dynamodb import DynamoDbLedger

        return DynamoDbLedger.from_table_name(
            settings.ledger_table, ttl_seconds, settings.deadline_seconds, retention_seconds
        )
    raise ConfigurationError("no attempt ledger: set RETRY_LEDGER to raw, dynamodb or none")
