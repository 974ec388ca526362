"""The attempt ledger in a CDF RAW table, through cognite-sdk's HTTP client.

One row per execution, keyed by the execution ID, with the columns ``workflowExternalId``,
``attempts``, ``lastAttemptAt`` (epoch ms), ``lastOutcome``, ``expiresAt`` (epoch seconds) and
``history`` (a JSON list of the recent attempts: :mod:`workflow_retry.history`; a row is replaced
whole on each write, so every read that precedes a write must read it too). The database and table
are created on the first write (``ensureParent``). A row past ``expiresAt`` is treated as absent and
overwritten on the next attempt; RAW keeps rows until they are deleted, so :meth:`RawLedger.prune`
deletes those past ``expiresAt`` plus the retention (each sweep, and ``workflow-retry prune``).

Capability: ``rawACL:READ`` and ``rawACL:WRITE``, scoped to the ledger database.

RAW has no conditional writes, so :meth:`RawLedger.take_attempt` cannot refuse a concurrent writer:
two invocations that read the same record both count the attempt. Within one process that cannot
happen (the service hands an execution to one task at a time: ``service.one_at_a_time``), so the race
is between processes; CDF's own status check keeps it small: the first retry makes the execution
RUNNING and CDF refuses the second. At most one extra retry per additional process in the race
(docs/policy-and-sweeps.md; measured in docs/reliability.md, tests/ledger/test_raw_across_processes.py).

Requests go through the async client's ``get``/``post`` (as in :mod:`workflow_retry.cdf`), not the
SDK's ``client.raw.rows`` methods: those are throttled per process to 5 reads and 2 writes at once,
which made the ledger the bottleneck of a batch. Row writes of concurrent retries are sent together
(:class:`_BatchedInserts`), and a batch learns which of its IDs have a record by listing the keys of the
rows written within the TTL (:meth:`RawLedger.read_many`; RAW has no read of many keys); see
``docs/benchmarks.md``.

A row is live until its ``expiresAt``, or until the current TTL has passed since RAW last wrote it
(``lastUpdatedTime``, plus :data:`CLOCK_SKEW_MS`), whichever comes first: so a lowered
``RETRY_LEDGER_TTL_HOURS`` applies at once, and a row read alone or by listing is judged the same way.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

from cognite.client import AsyncCogniteClient, CogniteClient
from cognite.client.exceptions import CogniteAPIError, CogniteException, CogniteRequestError

from workflow_retry.errors import LedgerError
from workflow_retry.ledger import (
    DEFAULT_RETENTION_SECONDS,
    AttemptRecord,
    History,
    LedgerKind,
    RecentRecords,
    first_records,
    history_from_json,
    next_record,
)

WRITE_WINDOW_SECONDS = 0.002
"""How long a row write waits for others to join its insert request (it runs while the session is created)."""
THROTTLED_WRITE_WINDOW_SECONDS = 0.5
"""The window while CDF throttles the ledger: retries then spread out in time, and with the short window
each row went in an insert of its own (0.75-0.95 inserts per ID under 20% 429s against 0.2 without)."""
SLOW_INSERT_SECONDS = 0.2
"""An insert that took this long, and three times the fastest one so far, was throttled (the SDK backed off
and sent it again) or CDF is overloaded."""
THROTTLED_HOLD_SECONDS = 5.0
"""How long after a slow insert the ledger keeps the throttled window."""
MAX_INSERTS_IN_FLIGHT = 2
"""Inserts out at once; the rows of a third wait for one to answer, and go together. At a cloud-like
latency the short window otherwise sent an insert every few milliseconds, up to 9 at once beside the
executions' requests (42-45 requests open at concurrency 32, 58 inserts for 200 IDs); two keep the
process at the concurrency plus two (25 inserts), and a second insert still goes while one is slow."""
MAX_ROWS_PER_INSERT = 1000
READ_AHEAD_MIN_IDS = 16
"""Fewer IDs than this are read one by one: their reads overlap anyway, and a listing may carry many rows."""
READ_AHEAD_IDS_PER_PAGE = 10
"""A listed page is worth this many single reads: more pages than IDs / 10 and the listing is abandoned
for single reads (a ledger that busy is better read by key)."""
LIST_PAGE_ROWS = 1_000
"""Rows per page where whole rows are listed (the history, pruning)."""
LIST_PAGE_KEYS = 2_000
"""Keys per page of the read-ahead's listing: one page is parsed at a time, so a page bounds the
read-ahead's memory, whatever the ledger's size (docs/benchmarks.md: 2,000 keys fit the 2 MB target with
room; 5,000 did not)."""
CLOCK_SKEW_MS = 3_600_000
"""Slack between this machine's clock (``expiresAt``) and RAW's (``lastUpdatedTime``)."""
MAX_KEYS_PER_DELETE = 1000
"""RAW's row delete takes at most this many keys per request (cognite-sdk sends 1,000 at a time)."""
PRUNE_PAGES = 5
"""Listed pages one :meth:`RawLedger.prune` reads at most: a sweep's pruning costs a bounded few requests."""


class RawLedger:
    """:class:`~workflow_retry.ledger.AttemptLedger` over a RAW table (best effort under races)."""

    kind: LedgerKind = "raw"
    enforces_cap = True

    def __init__(
        self,
        client: CogniteClient | AsyncCogniteClient,
        database: str,
        table: str,
        ttl_seconds: int,
        retention_seconds: int = DEFAULT_RETENTION_SECONDS,
    ) -> None:
        self._client = client.get_async_client() if isinstance(client, CogniteClient) else client
        self.database = database
        self.table = table
        self._ttl_seconds = ttl_seconds
        self._retention_seconds = retention_seconds
        project = quote(self._client.config.project, safe="")
        self._rows_path = (
            f"/api/v1/projects/{project}/raw/dbs/{quote(database, safe='')}/tables/{quote(table, safe='')}/rows"
        )
        self._inserts = _BatchedInserts(self._insert)

    async def get(self, execution_id: str, now_ms: int) -> AttemptRecord | None:
        row = await self._read(f"{self._rows_path}/{quote(execution_id, safe='')}")
        return None if row is None else self._live_record(execution_id, row, now_ms)

    async def read_many(self, execution_ids: Sequence[str], now_ms: int) -> frozenset[str] | None:
        """Which of these IDs have a row RAW wrote within the TTL: one listing of keys only, page by page.

        Keys only, because a record found is read again alone anyway (a write replaces the row whole, so
        it must start from the whole row, history included); most IDs of a batch have no row, and the
        listing tells them apart at less than half the bytes a row's decision columns cost, so a page
        holds twice the rows in about the same memory. A row that has expired since its last write
        (``expiresAt``) is listed too; its single read finds it expired.
        """
        wanted = set(execution_ids)
        if len(wanted) < READ_AHEAD_MIN_IDS:
            return None
        # RAW leaves out the rows it has not written within the TTL (minLastUpdatedTime); "," lists keys only.
        params: dict[str, Any] = {
            "limit": LIST_PAGE_KEYS,
            "minLastUpdatedTime": self._oldest_live_ms(now_ms),
            "columns": ",",
        }
        listed: set[str] = set()
        for _ in range(max(1, len(wanted) // READ_AHEAD_IDS_PER_PAGE)):
            body = await self._read(self._rows_path, params)
            if body is None:
                return frozenset()  # the database or table does not exist yet: no records at all
            for row in body.get("items") or ():
                if isinstance(row, dict) and (key := row.get("key")) in wanted:
                    listed.add(key)
            cursor = body.get("nextCursor")
            if not cursor:
                return frozenset(listed)
            params["cursor"] = cursor
            # The SDK's HTTP responses sit in reference cycles (it caches .json() on them), so each page's
            # bytes would wait for the cycle collector: collect the young generations, one page at a time.
            del body
            gc.collect(1)
        return None

    async def _read(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The answer's JSON object; None on 404 (no such row, or the database or table does not exist yet)."""
        try:
            response = await self._client.get(path, params=params)
        except CogniteAPIError as exc:
            if exc.code == 404:
                return None
            raise _ledger_error("reading", exc) from None
        except CogniteException as exc:
            raise _ledger_error("reading", exc) from None
        # Parsed here, not with response.json(): the SDK caches that on its HTTP response, which sits in a
        # reference cycle, so each listed page would stay in memory until the cycle collector ran.
        body = json.loads(response.content)
        return body if isinstance(body, dict) else {}

    def _oldest_live_ms(self, now_ms: int) -> int:
        """RAW's ``lastUpdatedTime`` of a row must be later than this for the row to be live."""
        return now_ms - self._ttl_seconds * 1000 - CLOCK_SKEW_MS

    def _live_record(self, execution_id: str, row: dict[str, Any], now_ms: int) -> AttemptRecord | None:
        columns, updated = row.get("columns"), row.get("lastUpdatedTime")
        if not isinstance(columns, dict) or not columns:
            return None
        if isinstance(updated, int | float) and updated <= self._oldest_live_ms(now_ms):
            return None
        record = _from_columns(execution_id, columns)
        return None if record is None or record.expires_at <= now_ms // 1000 else record

    async def take_attempt(
        self,
        seen: AttemptRecord | None,
        execution_id: str,
        workflow_external_id: str | None,
        now_ms: int,
        history: History = (),
    ) -> AttemptRecord:
        record = next_record(seen, execution_id, workflow_external_id, now_ms, self._ttl_seconds, history)
        await self._write(record)
        return record

    async def release_attempt(self, taken: AttemptRecord, previous: AttemptRecord | None) -> None:
        if previous is not None:
            await self._write(previous)
            return
        try:
            await self._client.post(f"{self._rows_path}/delete", json={"items": [{"key": taken.execution_id}]})
        except CogniteException as exc:
            raise _ledger_error("writing", exc) from None

    async def record_outcome(self, record: AttemptRecord, outcome: str, now_ms: int) -> bool:
        if record.last_outcome == outcome:
            return False
        await self._write(record.with_outcome(outcome, self._ttl_seconds, now_ms))
        return True

    async def list_recent(self, since_ms: int, now_ms: int, limit: int) -> RecentRecords:
        return await first_records(self._pages_since(since_ms, min(limit + 1, LIST_PAGE_ROWS)), limit)

    async def _pages_since(self, since_ms: int, page_rows: int) -> AsyncIterator[list[AttemptRecord]]:
        """The records of the rows RAW wrote since ``since_ms``, page by page (none when the table does not exist)."""
        params: dict[str, Any] = {"limit": page_rows, "minLastUpdatedTime": since_ms - 1}
        while (body := await self._read(self._rows_path, params)) is not None:
            page = []
            for row in body.get("items") or ():
                columns = row.get("columns") if isinstance(row, dict) else None
                key = row.get("key") if isinstance(row, dict) else None
                record = _from_columns(key, columns) if isinstance(key, str) and isinstance(columns, dict) else None
                if record is not None:
                    page.append(record)
            yield page
            if not (cursor := body.get("nextCursor")):
                return
            params["cursor"] = cursor

    async def prune(self, now_ms: int, max_rows: int) -> int:
        """Delete rows past ``expiresAt`` plus the retention.

        Lists the rows RAW has not written for the TTL plus the retention (less :data:`CLOCK_SKEW_MS`),
        only their ``expiresAt``: with an unchanged TTL nearly all of them are past it, so each page
        listed is pages deleted. At most :data:`PRUNE_PAGES` pages; deletes up to ``max_rows`` of the rows
        past their ``expiresAt`` plus the retention, :data:`MAX_KEYS_PER_DELETE` per request. A row this
        ledger did not write (no ``expiresAt``) is left alone.
        """
        retention_ms = self._retention_seconds * 1000
        params: dict[str, Any] = {
            "limit": LIST_PAGE_ROWS,
            "maxLastUpdatedTime": now_ms - self._ttl_seconds * 1000 - retention_ms + CLOCK_SKEW_MS,
            "columns": "expiresAt",
        }
        dead: list[str] = []
        for _ in range(PRUNE_PAGES):
            body = await self._read(self._rows_path, params)
            if body is None:
                return 0
            for row in body.get("items") or ():
                if isinstance(row, dict) and self._prunable(row, now_ms, retention_ms):
                    dead.append(row["key"])
            cursor = body.get("nextCursor")
            if not cursor or len(dead) >= max_rows:
                break
            params["cursor"] = cursor
        dead = dead[:max_rows]
        for start in range(0, len(dead), MAX_KEYS_PER_DELETE):
            keys = dead[start : start + MAX_KEYS_PER_DELETE]
            try:
                await self._client.post(f"{self._rows_path}/delete", json={"items": [{"key": k} for k in keys]})
            except CogniteException as exc:
                raise _ledger_error("pruning", exc) from None
        return len(dead)

    @staticmethod
    def _prunable(row: dict[str, Any], now_ms: int, retention_ms: int) -> bool:
        columns, key = row.get("columns"), row.get("key")
        expires_at = columns.get("expiresAt") if isinstance(columns, dict) else None
        if not isinstance(key, str) or not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
            return False
        return expires_at * 1000 + retention_ms <= now_ms

    async def _write(self, record: AttemptRecord) -> None:
        columns = {k: v for k, v in record.to_json().items() if k != "executionId"}
        await self._inserts.put({"key": record.execution_id, "columns": columns})

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        try:
            await self._client.post(self._rows_path, json={"items": rows}, params={"ensureParent": "true"})
        except CogniteException as exc:
            raise _ledger_error("writing", exc) from None


class _BatchedInserts:
    """Row writes made within ``WRITE_WINDOW_SECONDS`` of each other, sent as one insert request.

    At most :data:`MAX_INSERTS_IN_FLIGHT` inserts are out at once: rows written meanwhile wait for one
    to answer, and go together in the next.

    In a batch, the retries take their attempts at about the same time: one request for all of them
    instead of one per row. A writer waits until the request that carried its row has answered, and
    gets its error if it failed, exactly as if it had sent the row alone. Of two writes of one key in
    one window, the later wins (as it would have, sent one after the other).
    """

    def __init__(self, send: Callable[[list[dict[str, Any]]], Awaitable[None]]) -> None:
        self._send = send
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None  # referenced, so the loop cannot drop it
        self._throttled_until = 0.0  # loop time until which rows wait the throttled window
        self._fastest = float("inf")  # the fastest insert so far: what an unthrottled one takes here
        # Each insert in flight: a future done once it has answered -> when it was sent.
        self._in_flight: dict[asyncio.Future[None], float] = {}

    def window(self) -> float:
        """How long the next batch stays open: longer while CDF throttles the ledger's inserts.

        Throttled: an insert was slow or refused 429 a short while ago, or one in flight has been so
        long already (the SDK is backing off after a 429): the rows that come meanwhile wait for each
        other instead of each going out alone while the first is retried.
        """
        now = asyncio.get_running_loop().time()
        oldest = min(self._in_flight.values(), default=now)
        throttled = now < self._throttled_until or self._is_slow(now - oldest)
        return THROTTLED_WRITE_WINDOW_SECONDS if throttled else WRITE_WINDOW_SECONDS

    def _is_slow(self, seconds: float) -> bool:
        return seconds >= max(SLOW_INSERT_SECONDS, 3 * self._fastest)

    async def put(self, row: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()
        self._pending.append((row, written))
        if self._flushing is None:
            self._flushing = loop.create_task(self._flush_after_window())
        await written

    async def _flush_after_window(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.window())
        while len(self._in_flight) >= MAX_INSERTS_IN_FLIGHT:
            # Rows that come meanwhile join this batch: one insert for them once one in flight answers.
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
        batch, self._pending, self._flushing = self._pending, [], None
        rows = list({row["key"]: row for row, _ in batch}.values())
        started = loop.time()
        answered: asyncio.Future[None] = loop.create_future()
        self._in_flight[answered] = started
        try:
            for start in range(0, len(rows), MAX_ROWS_PER_INSERT):
                await self._send(rows[start : start + MAX_ROWS_PER_INSERT])
        except asyncio.CancelledError:
            for _, written in batch:
                written.cancel()
            raise
        except Exception as exc:
            self._note_duration(loop.time() - started, throttled=isinstance(exc, LedgerError) and exc.code == 429)
            for _, written in batch:
                if not written.done():
                    written.set_exception(exc)
        else:
            self._note_duration(loop.time() - started)
            for _, written in batch:
                if not written.done():
                    written.set_result(None)
        finally:
            del self._in_flight[answered]
            answered.set_result(None)

    def _note_duration(self, seconds: float, *, throttled: bool = False) -> None:
        """Keep the throttled window for a while after an insert that was throttled or slow."""
        self._fastest = min(self._fastest, seconds)
        if throttled or self._is_slow(seconds):
            self._throttled_until = asyncio.get_running_loop().time() + THROTTLED_HOLD_SECONDS


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
        history=history_from_json(columns.get("history")),
    )


def _ledger_error(doing: str, exc: CogniteException) -> LedgerError:
    if isinstance(exc, CogniteAPIError):
        retryable = exc.code == 429 or exc.code >= 500
        return LedgerError(f"{doing} the RAW attempt ledger failed ({exc.code}: {exc.message})", exc.code, retryable)
    # Timeouts and lost connections left after the SDK's own retries may pass; anything else is reported as is.
    retryable = isinstance(exc, CogniteRequestError)
    return LedgerError(f"{doing} the RAW attempt ledger failed ({type(exc).__name__})", None, retryable)
