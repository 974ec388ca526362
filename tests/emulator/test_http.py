"""HTTP plumbing: gzip bodies, malformed JSON, odd paths, unknown routes, keep-alive, headers."""

from __future__ import annotations

import gzip
import http.client
import json

import pytest
from cognite.client import CogniteClient, global_config

from emulator import CdfEmulator
from tests.emulator.support import ADMIN_ID, call


@pytest.fixture
def token(emu: CdfEmulator) -> str:
    return emu.issue_token(ADMIN_ID)


def test_sdk_sends_gzip_and_emulator_reads_it(
    emu: CdfEmulator, client: CogniteClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's default; the product turns it off for its process (an earlier test may have run it).
    monkeypatch.setattr(global_config, "disable_gzip", False)
    emu.seed_execution()
    client.workflows.executions.list(statuses=["failed"])
    recorded = emu.requests_matching("POST", r"/workflows/executions/list$")[-1]
    assert recorded.headers["content-encoding"] == "gzip"
    assert recorded.body["filter"] == {"status": ["FAILED"]}
    assert recorded.status == 200


def test_plain_json_bodies_work_too(emu: CdfEmulator, client: CogniteClient) -> None:
    emu.seed_execution()
    before = global_config.disable_gzip
    global_config.disable_gzip = True
    try:
        assert len(client.workflows.executions.list(statuses=["failed"])) == 1
    finally:
        global_config.disable_gzip = before
    assert "content-encoding" not in emu.requests_matching("POST", r"/list$")[-1].headers


def test_gzip_raw(emu: CdfEmulator, token: str) -> None:
    emu.seed_execution()
    reply = call(emu, "POST", "/workflows/executions/list", {"filter": {}}, token=token, gzipped=True)
    assert reply.status == 200
    assert len(reply.body["items"]) == 1


def test_malformed_json_is_400(emu: CdfEmulator, token: str) -> None:
    reply = call(emu, "POST", "/workflows/executions/list", raw=b"{not json", token=token)
    assert reply.status == 400
    assert reply.body["error"]["code"] == 400
    assert "JSON" in reply.body["error"]["message"]
    assert emu.requests[-1].body == "{not json"


def test_bad_gzip_is_400(emu: CdfEmulator, token: str) -> None:
    reply = call(
        emu, "POST", "/workflows/executions/list", raw=b"nope", token=token, headers={"Content-Encoding": "gzip"}
    )
    assert reply.status == 400


def test_body_must_be_an_object(emu: CdfEmulator, token: str) -> None:
    assert call(emu, "POST", "/workflows/executions/list", [1, 2], token=token).status == 400


@pytest.mark.parametrize(
    "path",
    [
        "/workflows/executions/a%2Fb",
        "/workflows/executions/..",
        "/workflows/executions/%2E%2E%2F%2E%2E",
        "/workflows/executions/%E2%9C%93",
        "/workflows/executions/%ZZ",
        "/workflows/executions/",
        "/workflows/executions/x/y/z",
        "/workflows/executions/" + "a" * 5000,
    ],
)
def test_odd_execution_paths_do_not_match(emu: CdfEmulator, token: str, path: str) -> None:
    reply = call(emu, "GET", path, token=token)
    assert reply.status in (404, 405)
    assert reply.body["error"]["code"] == reply.status


def test_recorded_path_is_not_decoded(emu: CdfEmulator, token: str) -> None:
    call(emu, "GET", "/workflows/executions/a%2Fb?x=1&x=2", token=token)
    recorded = emu.requests[-1]
    assert recorded.path == f"/api/v1/projects/{emu.project}/workflows/executions/a%2Fb"
    assert recorded.raw_path == recorded.path + "?x=1&x=2"
    assert recorded.query == {"x": ["1", "2"]}


def test_unknown_routes_404_and_wrong_methods_405(emu: CdfEmulator, token: str) -> None:
    assert call(emu, "GET", "/assets", token=token).status == 404
    assert call(emu, "GET", "/nothing/here", project_path=False).status == 404
    assert call(emu, "DELETE", "/workflows/executions/list", token=token).status == 405
    assert call(emu, "GET", "/workflows/executions/x/retry", token=token).status == 405
    assert call(emu, "PUT", "/sessions", {}, token=token).status == 405
    assert call(emu, "GET", "/oauth2/token", project_path=False).status == 405


def test_head_gets_headers_only(emu: CdfEmulator, token: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        conn.request("HEAD", f"/api/v1/projects/{emu.project}/sessions", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        assert resp.status == 405
        assert resp.read() == b""
        # the connection is still usable afterwards
        conn.request("GET", f"/api/v1/projects/{emu.project}/raw/dbs", headers={"Authorization": f"Bearer {token}"})
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_keep_alive_serves_many_requests_on_one_connection(emu: CdfEmulator, token: str) -> None:
    execution = emu.seed_execution()
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        request_ids = set()
        for i in range(20):
            body = gzip.compress(json.dumps({"filter": {}, "limit": 1}).encode())
            if i % 2:
                conn.request(
                    "GET",
                    f"/api/v1/projects/{emu.project}/workflows/executions/{execution['id']}",
                    headers={"Authorization": f"Bearer {token}"},
                )
            else:
                conn.request(
                    "POST",
                    f"/api/v1/projects/{emu.project}/workflows/executions/list",
                    body=body,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Encoding": "gzip",
                        "Content-Type": "application/json",
                    },
                )
            resp = conn.getresponse()
            payload = json.loads(resp.read())
            assert resp.status == 200, payload
            assert resp.getheader("Content-Type") == "application/json"
            request_ids.add(resp.getheader("x-request-id"))
        assert len(request_ids) == 20
    finally:
        conn.close()


def test_chunked_request_body(emu: CdfEmulator, token: str) -> None:
    emu.seed_execution()
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        chunks = iter([b'{"filter": ', b'{"status": ["FAILED"]}}'])
        conn.request(
            "POST",
            f"/api/v1/projects/{emu.project}/workflows/executions/list",
            body=chunks,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        assert resp.status == 200
        assert len(json.loads(resp.read())["items"]) == 1
    finally:
        conn.close()


def test_every_response_has_a_request_id(emu: CdfEmulator, token: str) -> None:
    for reply in (
        call(emu, "GET", "/nowhere", project_path=False),
        call(emu, "GET", "/workflows/executions/x", token=token),
        call(emu, "GET", "/raw/dbs", token=token),
    ):
        assert reply.headers["x-request-id"]


def test_not_started_has_no_url() -> None:
    emu = CdfEmulator()
    with pytest.raises(RuntimeError):
        _ = emu.base_url


def test_stop_closes_port_and_connections() -> None:
    emu = CdfEmulator(project="p").start()
    emu.add_client("c", "s")
    token = emu.issue_token("c")
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    conn.request("GET", "/api/v1/projects/p/raw/dbs", headers={"Authorization": f"Bearer {token}"})
    assert conn.getresponse().read()
    port = emu.port
    emu.stop()
    emu.stop()  # idempotent
    conn.request("GET", "/api/v1/projects/p/raw/dbs", headers={"Authorization": f"Bearer {token}"})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()
    conn.close()
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=2).connect()


def test_deeply_nested_json_is_400_not_a_crash(emu: CdfEmulator, token: str) -> None:
    reply = call(emu, "POST", "/workflows/executions/list", raw=b"[" * 100_000, token=token)
    assert reply.status == 400
    assert call(emu, "GET", "/raw/dbs", token=token).status == 200
