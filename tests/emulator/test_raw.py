"""CDF RAW through the SDK's client.raw.databases / tables / rows."""

from __future__ import annotations

import pytest
from cognite.client import CogniteClient
from cognite.client.exceptions import CogniteAPIError, CogniteNotFoundError

from emulator import CdfEmulator
from tests.emulator.support import ADMIN_ID, call


def test_databases_and_tables(emu: CdfEmulator, client: CogniteClient) -> None:
    db = client.raw.databases.create("ledger")
    assert db.name == "ledger"
    assert db.created_time is not None
    client.raw.databases.create(["other", "third"])
    assert [d.name for d in client.raw.databases.list(limit=None)] == ["ledger", "other", "third"]
    table = client.raw.tables.create("ledger", "attempts")
    assert table.name == "attempts"
    client.raw.tables.create("ledger", ["a", "b"])
    assert [t.name for t in client.raw.tables.list("ledger", limit=None)] == ["attempts", "a", "b"]
    client.raw.tables.delete("ledger", ["a", "b"])
    assert [t.name for t in client.raw.tables.list("ledger", limit=None)] == ["attempts"]
    client.raw.databases.delete(["other", "third"])
    with pytest.raises(CogniteAPIError) as info:
        client.raw.databases.delete("ledger")  # not empty
    assert info.value.code == 400
    client.raw.databases.delete("ledger", recursive=True)
    assert len(client.raw.databases.list(limit=None)) == 0


def test_errors_for_missing_and_duplicate(emu: CdfEmulator, client: CogniteClient) -> None:
    with pytest.raises(CogniteNotFoundError):
        client.raw.tables.list("nope", limit=None)
    with pytest.raises(CogniteNotFoundError):
        client.raw.tables.create("nope", "t")
    with pytest.raises(CogniteNotFoundError):
        client.raw.rows.insert("nope", "t", {"k": {"a": 1}})
    client.raw.databases.create("db")
    with pytest.raises(CogniteAPIError) as info:
        client.raw.databases.create("db")
    assert info.value.code == 400
    assert "already exist" in info.value.message
    reply = call(emu, "POST", "/raw/dbs", {"items": [{"name": "db"}]}, token=emu.issue_token(ADMIN_ID))
    assert reply.body["error"]["duplicated"] == [{"name": "db"}]
    with pytest.raises(CogniteNotFoundError):
        client.raw.rows.insert("db", "missing-table", {"k": {"a": 1}})
    with pytest.raises(CogniteNotFoundError):
        client.raw.databases.delete("ghost")


def test_rows_insert_retrieve_list_delete(emu: CdfEmulator, client: CogniteClient) -> None:
    client.raw.rows.insert("ledger", "attempts", {"exec-1": {"attempts": 1, "last": "503"}}, ensure_parent=True)
    client.raw.rows.insert("ledger", "attempts", {"exec-2": {"attempts": 2}, "exec-3": {"attempts": 3}})
    row = client.raw.rows.retrieve("ledger", "attempts", "exec-1")
    assert row is not None
    assert row.columns == {"attempts": 1, "last": "503"}
    assert row.last_updated_time is not None
    assert client.raw.rows.retrieve("ledger", "attempts", "missing") is None
    assert client.raw.rows.retrieve("no-db", "no-table", "x") is None
    # an insert replaces the row
    client.raw.rows.insert("ledger", "attempts", {"exec-1": {"attempts": 5}})
    again = client.raw.rows.retrieve("ledger", "attempts", "exec-1")
    assert again is not None
    assert again.columns == {"attempts": 5}
    rows = client.raw.rows.list("ledger", "attempts", limit=None)
    assert sorted(r.key for r in rows) == ["exec-1", "exec-2", "exec-3"]
    only = client.raw.rows.list("ledger", "attempts", columns=["attempts"], limit=10)
    assert {r.key: r.columns for r in only}["exec-1"] == {"attempts": 5}
    keys_only = client.raw.rows.list("ledger", "attempts", columns=[], limit=10)
    assert all(r.columns == {} for r in keys_only)
    client.raw.rows.delete("ledger", "attempts", ["exec-1", "never-existed"])
    assert client.raw.rows.retrieve("ledger", "attempts", "exec-1") is None
    assert emu.raw_rows("ledger", "attempts") == {"exec-2": {"attempts": 2}, "exec-3": {"attempts": 3}}
    assert emu.raw_rows("ledger", "nope") == {}


def test_odd_names_and_keys_are_url_encoded(emu: CdfEmulator, client: CogniteClient) -> None:
    client.raw.rows.insert("db/with slash", "t?ble", {"key/with%odd chars ✓": {"v": 1}}, ensure_parent=True)
    row = client.raw.rows.retrieve("db/with slash", "t?ble", "key/with%odd chars ✓")
    assert row is not None
    assert row.columns == {"v": 1}


def test_row_pagination_serial_and_partitioned(emu: CdfEmulator, client: CogniteClient) -> None:
    rows = {f"k{i:05d}": {"i": i} for i in range(2_500)}
    client.raw.rows.insert("db", "big", rows, ensure_parent=True)
    assert len(emu.raw_rows("db", "big")) == 2_500
    token = emu.issue_token(ADMIN_ID)
    keys: list[str] = []
    cursor = None
    while True:
        path = "/raw/dbs/db/tables/big/rows?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        reply = call(emu, "GET", path, token=token)
        assert reply.status == 200
        keys.extend(item["key"] for item in reply.body["items"])
        cursor = reply.body.get("nextCursor")
        if not cursor:
            break
    assert keys == sorted(rows)
    # limit=None makes the SDK ask for partition cursors and read them concurrently
    listed = client.raw.rows.list("db", "big", limit=None)
    assert sorted(r.key for r in listed) == sorted(rows)
    assert emu.requests_matching("GET", r"/cursors$")
    assert call(emu, "GET", "/raw/dbs/db/tables/big/rows?cursor=garbage", token=token).status == 400
    assert call(emu, "GET", "/raw/dbs/db/tables/big/rows?limit=10001", token=token).status == 400


def test_db_listing_cursor(emu: CdfEmulator) -> None:
    token = emu.issue_token(ADMIN_ID)
    call(emu, "POST", "/raw/dbs", {"items": [{"name": f"db{i}"} for i in range(30)]}, token=token)
    first = call(emu, "GET", "/raw/dbs", token=token).body
    assert len(first["items"]) == 25
    second = call(emu, "GET", f"/raw/dbs?cursor={first['nextCursor']}", token=token).body
    assert [d["name"] for d in second["items"]] == [f"db{i}" for i in range(25, 30)]
    assert "nextCursor" not in second


def test_table_names_up_to_64_and_database_names_up_to_32_characters(emu: CdfEmulator, client: CogniteClient) -> None:
    client.raw.databases.create("d" * 32)
    client.raw.tables.create("d" * 32, "t" * 64)
    with pytest.raises(CogniteAPIError) as raised:
        client.raw.tables.create("d" * 32, "t" * 65)
    assert raised.value.code == 400
    with pytest.raises(CogniteAPIError):
        client.raw.databases.create("d" * 33)
    token = emu.issue_token(ADMIN_ID)
    too_long = f"/raw/dbs/db/tables/{'t' * 65}/rows?ensureParent=true"
    assert call(emu, "POST", too_long, {"items": [{"key": "k", "columns": {}}]}, token=token).status == 400
    assert emu.raw_rows("db", "t" * 65) == {}


def test_rows_and_listing_limits(emu: CdfEmulator) -> None:
    token = emu.issue_token(ADMIN_ID)
    rows = "/raw/dbs/db/tables/t/rows"
    too_many = {"items": [{"key": str(i), "columns": {}} for i in range(10_001)]}
    assert call(emu, "POST", f"{rows}?ensureParent=true", too_many, token=token).status == 400
    assert (
        call(emu, "POST", f"{rows}?ensureParent=true", {"items": too_many["items"][:10_000]}, token=token).status == 201
    )
    too_many_keys = {"items": [{"key": str(i)} for i in range(1_001)]}
    assert call(emu, "POST", f"{rows}/delete", too_many_keys, token=token).status == 400
    assert call(emu, "POST", f"{rows}/delete", {"items": too_many_keys["items"][:1_000]}, token=token).status == 200
    assert len(call(emu, "GET", f"{rows}?limit=10000", token=token).body["items"]) == 9_000
    assert call(emu, "GET", f"{rows}?limit=10001", token=token).status == 400
    assert call(emu, "GET", "/raw/dbs?limit=1001", token=token).status == 400
    assert call(emu, "GET", "/raw/dbs/db/tables?limit=1001", token=token).status == 400
