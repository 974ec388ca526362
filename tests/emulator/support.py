"""Helpers for the emulator's tests: SDK clients against an emulator, and raw HTTP calls."""

from __future__ import annotations

import gzip
import http.client
import json
from dataclasses import dataclass
from typing import Any

from cognite.client import ClientConfig, CogniteClient
from cognite.client.credentials import OAuthClientCredentials, Token

from emulator import CdfEmulator

ADMIN_ID = "emu-test-admin"
ADMIN_SECRET = "emu-test-admin-secret"
READER_ID = "emu-test-reader"
READER_SECRET = "emu-test-reader-secret"


def make_client(emu: CdfEmulator, client_id: str = ADMIN_ID, client_secret: str = ADMIN_SECRET) -> CogniteClient:
    """A CogniteClient that gets its token from the emulator's OAuth endpoint (client credentials)."""
    credentials = OAuthClientCredentials(
        token_url=emu.token_url,
        client_id=client_id,
        client_secret=client_secret,
        scopes=[f"{emu.base_url}/.default"],
    )
    return CogniteClient(
        ClientConfig(client_name="test", project=emu.project, credentials=credentials, base_url=emu.base_url)
    )


def make_token_client(emu: CdfEmulator, token: str, project: str | None = None) -> CogniteClient:
    """A CogniteClient holding a fixed bearer token (like a Cognite Function's own client)."""
    return CogniteClient(
        ClientConfig(
            client_name="test-token",
            project=project or emu.project,
            credentials=Token(token),
            base_url=emu.base_url,
        )
    )


@dataclass
class Reply:
    """A raw HTTP answer."""

    status: int
    headers: dict[str, str]
    body: Any


def call(
    emu: CdfEmulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    raw: bytes | None = None,
    gzipped: bool = False,
    headers: dict[str, str] | None = None,
    project_path: bool = True,
) -> Reply:
    """One HTTP request with http.client; ``path`` is relative to the project unless ``project_path=False``."""
    full = f"/api/v1/projects/{emu.project}{path}" if project_path else path
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    hdrs = {"Accept": "application/json"}
    if data is not None:
        hdrs["Content-Type"] = "application/json"
        if gzipped:
            data = gzip.compress(data)
            hdrs["Content-Encoding"] = "gzip"
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    hdrs.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    try:
        conn.request(method, full, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        parsed = json.loads(payload) if payload else None
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed)
    finally:
        conn.close()
