"""Sessions and their nonces (CDF API reference: "Sessions").

Chained sessions: CDF's sessions concept page says that nonces work only with root sessions and that
chained sessions are limited to one level.  A token issued *for a session* (what a Cognite Function
started by a workflow or a schedule holds; ``CdfEmulator.issue_session_token``) therefore cannot
create a ``tokenExchange`` or ``oneshotTokenExchange`` session: the emulator answers 403 with
:data:`CHAINED_SESSION_MESSAGE`.  CDF's exact status and wording for this refusal are not in its
published reference, so both are the emulator's choice.  Client-credentials sessions made with such a
token still work: they start a new root session.

Not thread-safe on its own: the server holds one lock around every call.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Any

from emulator.auth import AuthRegistry, Client
from emulator.common import Json, expect_dict, expect_str, reject_unknown
from emulator.errors import ApiError, bad_request

CHAINED_SESSION_MESSAGE = (
    "Cannot create a token exchange session from a token that was itself issued for a session: "
    "chained sessions are limited to one level. Create the session with client credentials instead."
)


@dataclass
class _Nonce:
    session_id: int
    client_id: str
    created: float
    used: bool = False


class SessionStore:
    """Sessions and their single-use nonces, which expire ``nonce_ttl`` seconds after creation."""

    TYPES = ("CLIENT_CREDENTIALS", "TOKEN_EXCHANGE", "ONESHOT_TOKEN_EXCHANGE")

    def __init__(self) -> None:
        self._nonces: dict[str, _Nonce] = {}
        self._ids = itertools.count(1)
        self.issued_nonces: list[str] = []
        self.nonce_ttl = 60.0

    def clear(self) -> None:
        """Forget every nonce (the list of issued nonces is kept for leak scans)."""
        self._nonces.clear()
        self.nonce_ttl = 60.0

    def create(self, body: Json, caller: Client, auth: AuthRegistry, *, from_session: bool = False) -> Json:
        """``POST /sessions``: exactly one item, one session (and nonce); ``from_session`` when the caller's token
        came from a session (then token exchange is refused, see the module docstring)."""
        reject_unknown(body, ("items",), "request body")
        items = body.get("items")
        if not isinstance(items, list) or len(items) != 1:
            # The API reference: "items ... Required array length: 1 element" (one session per request).
            raise bad_request("items must hold exactly one session to create")
        out = []
        for item in items:
            item = expect_dict(item, "items[]")
            exchange = item.get("tokenExchange") is True or item.get("oneshotTokenExchange") is True
            if exchange and len(item) == 1 and from_session:
                raise ApiError(403, CHAINED_SESSION_MESSAGE)
            if item.get("tokenExchange") is True and len(item) == 1:
                out.append(self._new("TOKEN_EXCHANGE", caller.client_id))
            elif item.get("oneshotTokenExchange") is True and len(item) == 1:
                out.append(self._new("ONESHOT_TOKEN_EXCHANGE", caller.client_id))
            elif "clientId" in item or "clientSecret" in item:
                reject_unknown(item, ("clientId", "clientSecret"), "items[]")
                client_id = expect_str(item, "clientId", "items[]")
                secret = expect_str(item, "clientSecret", "items[]")
                if auth.check_credentials(client_id, secret) is None:
                    raise bad_request(f"Could not create session: invalid client credentials for {client_id}")
                session = self._new("CLIENT_CREDENTIALS", client_id)
                session["clientId"] = client_id
                out.append(session)
            else:
                raise bad_request(
                    "Each item must have clientId and clientSecret, tokenExchange: true or oneshotTokenExchange: true"
                )
        return {"items": out}

    def _new(self, session_type: str, client_id: str) -> Json:
        session_id = next(self._ids)
        nonce = secrets.token_urlsafe(32)
        self._nonces[nonce] = _Nonce(session_id, client_id, time.monotonic())
        self.issued_nonces.append(nonce)
        return {"id": session_id, "type": session_type, "status": "READY", "nonce": nonce}

    def validate(self, nonce: Any) -> _Nonce:
        """The 400s for a missing, unknown, expired or reused nonce; does not use it up."""
        if not isinstance(nonce, str) or not nonce:
            raise bad_request("authentication.nonce is required")
        entry = self._nonces.get(nonce)
        if entry is None or time.monotonic() - entry.created > self.nonce_ttl:
            raise bad_request("Invalid or expired nonce")
        if entry.used:
            raise bad_request("Nonce has already been used")
        return entry

    def consume(self, nonce: Any) -> _Nonce:
        """Bind a nonce: the 400s for unknown, expired and reused nonces."""
        entry = self.validate(nonce)
        entry.used = True
        return entry

    @staticmethod
    def nonce_of(body: Json) -> Any:
        """``body["authentication"]["nonce"]``, with 400s for a malformed body."""
        auth = body.get("authentication")
        if not isinstance(auth, dict):
            raise bad_request("authentication.nonce is required")
        return auth.get("nonce")
