"""CDF RAW: databases, tables and rows (CDF API reference: "Raw").

Not thread-safe on its own: the server holds one lock around every call.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from emulator.common import Json, copy_json, decode_cursor, encode_cursor, expect_dict, expect_items, expect_str, now_ms
from emulator.errors import bad_request, not_found

RAW_LIST_LIMIT_DEFAULT = 25
RAW_ROWS_LIMIT_MAX = 10_000
RAW_LIST_LIMIT_MAX = 1000
RAW_DELETE_ROWS_MAX = 1000
"""Row keys per delete request: cognite-sdk's ``raw.rows.delete`` sends at most this many at a time."""


@dataclass
class RawRow:
    """One RAW row."""

    columns: Json
    last_updated_time: int


@dataclass
class RawTable:
    """A RAW table: rows by key, in insertion order."""

    created_time: int
    rows: dict[str, RawRow] = field(default_factory=dict)


@dataclass
class RawDatabase:
    """A RAW database: tables by name."""

    created_time: int
    tables: dict[str, RawTable] = field(default_factory=dict)


DB_NAME_MAX = 32
TABLE_NAME_MAX = 64
"""RAW name lengths: databases 1-32 characters, tables 1-64 (CDF API reference, "Raw")."""


def _names(body: Json, what: str) -> list[str]:
    items = expect_items(body)
    return [_check_name(expect_str(expect_dict(item, "items[]"), "name", "items[]"), what) for item in items]


def _check_name(name: str, what: str) -> str:
    longest = DB_NAME_MAX if what == "Database" else TABLE_NAME_MAX
    if not name or len(name) > longest:
        raise bad_request(f"{what} name must be 1 to {longest} characters")
    return name


def _query_int(query: dict[str, list[str]], key: str) -> int | None:
    values = query.get(key)
    if not values:
        return None
    try:
        return int(values[-1])
    except ValueError:
        raise bad_request(f"query parameter {key} must be an integer") from None


def _query_bool(query: dict[str, list[str]], key: str) -> bool:
    values = query.get(key)
    return values is not None and bool(values) and values[-1].lower() == "true"


def _page(total: int, query: dict[str, list[str]], kind: str, max_limit: int) -> tuple[int, int, int]:
    """(limit, start offset, end offset) of a RAW list page from ``limit`` and ``cursor``."""
    limit = _query_int(query, "limit")
    limit = RAW_LIST_LIMIT_DEFAULT if limit is None else limit
    if not 1 <= limit <= max_limit:
        raise bad_request(f"limit must be between 1 and {max_limit}")
    start, end = 0, total
    cursor = query.get("cursor")
    if cursor and cursor[-1]:
        payload = decode_cursor(cursor[-1], kind)
        s, e = payload.get("o"), payload.get("e")
        if not isinstance(s, int) or not (e is None or isinstance(e, int)) or s < 0:
            raise bad_request("Invalid cursor")
        start, end = s, (total if e is None else min(e, total))
    return limit, start, end


class RawStore:
    """CDF RAW: databases, tables and rows, with the errors the SDK expects."""

    def __init__(self) -> None:
        self.dbs: dict[str, RawDatabase] = {}

    def clear(self) -> None:
        """Drop every database."""
        self.dbs.clear()

    def _db(self, name: str) -> RawDatabase:
        db = self.dbs.get(name)
        if db is None:
            raise not_found("Following databases not found", missing=[{"name": name}])
        return db

    def _table(self, db_name: str, table_name: str) -> RawTable:
        table = self._db(db_name).tables.get(table_name)
        if table is None:
            raise not_found("Following tables not found", missing=[{"name": table_name}])
        return table

    @staticmethod
    def _listing(created: dict[str, int], query: dict[str, list[str]], kind: str) -> Json:
        limit, start, end = _page(len(created), query, kind, RAW_LIST_LIMIT_MAX)
        stop = min(start + limit, end)
        items = [
            {"name": name, "createdTime": created_time}
            for name, created_time in itertools.islice(created.items(), start, stop)
        ]
        out: Json = {"items": items}
        if stop < end:
            out["nextCursor"] = encode_cursor({"k": kind, "o": stop, "e": None})
        return out

    def list_dbs(self, query: dict[str, list[str]]) -> Json:
        """``GET /raw/dbs``."""
        return self._listing({n: d.created_time for n, d in self.dbs.items()}, query, "rawdb")

    def create_dbs(self, body: Json) -> Json:
        """``POST /raw/dbs``."""
        names = _names(body, "Database")
        if dup := [n for n in names if n in self.dbs]:
            raise bad_request("Following databases already exist", duplicated=[{"name": n} for n in dup])
        now = now_ms()
        for name in names:
            self.dbs[name] = RawDatabase(now)
        return {"items": [{"name": n, "createdTime": now} for n in names]}

    def delete_dbs(self, body: Json) -> Json:
        """``POST /raw/dbs/delete`` (``recursive`` to delete non-empty ones)."""
        names = _names(body, "Database")
        recursive = body.get("recursive", False) is True
        if missing := [n for n in names if n not in self.dbs]:
            raise not_found("Following databases not found", missing=[{"name": n} for n in missing])
        if not recursive and (non_empty := [n for n in names if self.dbs[n].tables]):
            raise bad_request(f"Databases are not empty, use recursive=true to delete them: {', '.join(non_empty)}")
        for name in names:
            del self.dbs[name]
        return {}

    def list_tables(self, db_name: str, query: dict[str, list[str]]) -> Json:
        """``GET /raw/dbs/{db}/tables``."""
        tables = self._db(db_name).tables
        return self._listing({n: t.created_time for n, t in tables.items()}, query, "rawtable")

    def create_tables(self, db_name: str, body: Json, query: dict[str, list[str]]) -> Json:
        """``POST /raw/dbs/{db}/tables`` (``?ensureParent=true`` creates the database)."""
        names = _names(body, "Table")
        now = now_ms()
        if _query_bool(query, "ensureParent") and db_name not in self.dbs:
            _check_name(db_name, "Database")
            self.dbs[db_name] = RawDatabase(now)
        db = self._db(db_name)
        if dup := [n for n in names if n in db.tables]:
            raise bad_request("Following tables already exist", duplicated=[{"name": n} for n in dup])
        for name in names:
            db.tables[name] = RawTable(now)
        return {"items": [{"name": n, "createdTime": now} for n in names]}

    def delete_tables(self, db_name: str, body: Json) -> Json:
        """``POST /raw/dbs/{db}/tables/delete``."""
        names = _names(body, "Table")
        db = self._db(db_name)
        if missing := [n for n in names if n not in db.tables]:
            raise not_found("Following tables not found", missing=[{"name": n} for n in missing])
        for name in names:
            del db.tables[name]
        return {}

    def insert_rows(self, db_name: str, table_name: str, body: Json, query: dict[str, list[str]]) -> Json:
        """``POST /raw/dbs/{db}/tables/{t}/rows``: upsert (a row is replaced whole)."""
        items = expect_items(body, RAW_ROWS_LIMIT_MAX, noun="rows")
        rows: list[tuple[str, Json]] = []
        for item in items:
            item = expect_dict(item, "items[]")
            key = expect_str(item, "key", "items[]")
            if not key:
                raise bad_request("row key must not be empty")
            columns = expect_dict(item.get("columns"), "items[].columns")
            rows.append((key, columns))
        now = now_ms()
        if _query_bool(query, "ensureParent"):
            if db_name not in self.dbs:
                _check_name(db_name, "Database")
                self.dbs[db_name] = RawDatabase(now)
            if table_name not in self.dbs[db_name].tables:
                _check_name(table_name, "Table")
                self.dbs[db_name].tables[table_name] = RawTable(now)
        table = self._table(db_name, table_name)
        for key, columns in rows:
            table.rows[key] = RawRow(copy_json(columns), now)
        return {}

    def delete_rows(self, db_name: str, table_name: str, body: Json) -> Json:
        """``POST /raw/dbs/{db}/tables/{t}/rows/delete`` (unknown keys are ignored)."""
        items = expect_items(body, RAW_DELETE_ROWS_MAX, noun="row keys")
        table = self._table(db_name, table_name)
        keys = [expect_str(expect_dict(item, "items[]"), "key", "items[]") for item in items]
        for key in keys:
            table.rows.pop(key, None)
        return {}

    def retrieve_row(self, db_name: str, table_name: str, key: str) -> Json:
        """``GET /raw/dbs/{db}/tables/{t}/rows/{key}``: 404 (-> None in the SDK) when missing."""
        table = self._table(db_name, table_name)
        row = table.rows.get(key)
        if row is None:
            raise not_found("Row not found", missing=[{"key": key}])
        return {"key": key, "columns": copy_json(row.columns), "lastUpdatedTime": row.last_updated_time}

    @staticmethod
    def _time_filter(query: dict[str, list[str]]) -> tuple[int | None, int | None]:
        return _query_int(query, "minLastUpdatedTime"), _query_int(query, "maxLastUpdatedTime")

    def list_rows(self, db_name: str, table_name: str, query: dict[str, list[str]]) -> Json:
        """``GET /raw/dbs/{db}/tables/{t}/rows``: ``limit``, ``cursor``, ``columns``, time filters."""
        table = self._table(db_name, table_name)
        limit, start, end = _page(len(table.rows), query, "rawrow", RAW_ROWS_LIMIT_MAX)
        min_t, max_t = self._time_filter(query)
        wanted: list[str] | None = None
        cols = query.get("columns")
        if cols and cols[-1]:  # "a,b" selects columns, "," only keys; absent or empty means all
            wanted = [c for c in cols[-1].split(",") if c]
        items: list[Json] = []
        pos = start
        for key, row in itertools.islice(table.rows.items(), start, end):
            if len(items) == limit:
                break
            pos += 1
            if min_t is not None and row.last_updated_time <= min_t:
                continue
            if max_t is not None and row.last_updated_time > max_t:
                continue
            columns = row.columns if wanted is None else {c: row.columns[c] for c in wanted if c in row.columns}
            items.append({"key": key, "columns": copy_json(columns), "lastUpdatedTime": row.last_updated_time})
        out: Json = {"items": items}
        if pos < end:
            out["nextCursor"] = encode_cursor({"k": "rawrow", "o": pos, "e": end})
        return out

    def cursors(self, db_name: str, table_name: str, query: dict[str, list[str]]) -> Json:
        """``GET /raw/dbs/{db}/tables/{t}/cursors``: cursors that split the rows into disjoint ranges."""
        table = self._table(db_name, table_name)
        n = _query_int(query, "numberOfCursors") or 10
        if not 1 <= n <= 10_000:
            raise bad_request("numberOfCursors must be between 1 and 10000")
        total = len(table.rows)
        n = max(1, min(n, total))
        step, extra = divmod(total, n)
        bounds = []
        offset = 0
        for i in range(n):
            size = step + (1 if i < extra else 0)
            bounds.append((offset, offset + size))
            offset += size
        return {"items": [encode_cursor({"k": "rawrow", "o": s, "e": e}) for s, e in bounds]}
