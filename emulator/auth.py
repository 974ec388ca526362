"""Identities of the emulated CDF project: clients, their capabilities and the bearer tokens issued to them.

Not thread-safe on its own: the emulator calls it with its state lock held.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from emulator.errors import ApiError

WORKFLOW_READ = "workflowOrchestrationACL:READ"
WORKFLOW_WRITE = "workflowOrchestrationACL:WRITE"
SESSIONS_CREATE = "sessionsACL:CREATE"
RAW_READ = "rawACL:READ"
RAW_WRITE = "rawACL:WRITE"

DEFAULT_CAPABILITIES: frozenset[str] = frozenset({WORKFLOW_READ, WORKFLOW_WRITE, SESSIONS_CREATE, RAW_READ, RAW_WRITE})


def _acl_name(acl: str) -> str:
    """``workflowOrchestrationACL`` -> ``workflowOrchestrationAcl`` (the spelling of token/inspect)."""
    return acl[:-3] + "Acl" if acl.endswith("ACL") else acl


def _parse_capability(capability: str) -> tuple[str, str]:
    acl, sep, action = capability.partition(":")
    if not sep or not acl or not action:
        raise ValueError(f"capability must look like 'workflowOrchestrationACL:WRITE', got {capability!r}")
    return acl, action


@dataclass(frozen=True)
class Client:
    """A registered OAuth client (service principal) with the capabilities it holds in the project."""

    client_id: str
    client_secret: str
    capabilities: frozenset[str]

    def has(self, capability: str) -> bool:
        """Whether the client holds ``capability`` (e.g. ``"sessionsACL:CREATE"``)."""
        return capability in self.capabilities


class AuthRegistry:
    """Clients, the tokens issued to them, and the capability checks of each endpoint."""

    def __init__(self) -> None:
        self._clients: dict[str, Client] = {}
        self._tokens: dict[str, str] = {}  # token -> client id
        self.issued_tokens: list[str] = []

    def add_client(
        self, client_id: str, client_secret: str, capabilities: Iterable[str] = DEFAULT_CAPABILITIES
    ) -> None:
        """Register (or replace) a client; its tokens see the new capabilities at once."""
        caps = frozenset(capabilities)
        for cap in caps:
            _parse_capability(cap)
        self._clients[client_id] = Client(client_id, client_secret, caps)

    def client(self, client_id: str) -> Client | None:
        """The client registered under ``client_id``, if any."""
        return self._clients.get(client_id)

    def check_credentials(self, client_id: str, client_secret: str) -> Client | None:
        """The client when id and secret match a registered client, else None."""
        client = self._clients.get(client_id)
        if client is None or not secrets.compare_digest(client.client_secret, client_secret):
            return None
        return client

    def issue_token(self, client_id: str) -> str:
        """A new bearer token for a registered client."""
        if client_id not in self._clients:
            raise KeyError(f"unknown client {client_id!r}")
        token = secrets.token_urlsafe(32)
        self._tokens[token] = client_id
        self.issued_tokens.append(token)
        return token

    def client_for_token(self, token: str) -> Client | None:
        """The client a bearer token was issued to, or None for an unknown token."""
        client_id = self._tokens.get(token)
        return None if client_id is None else self._clients.get(client_id)

    def authenticate(self, authorization: str | None) -> Client:
        """The client behind an ``Authorization: Bearer ...`` header, else a 401 ApiError."""
        if not authorization:
            raise ApiError(401, "Unauthorized: no Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Unauthorized: expected a Bearer token")
        client = self.client_for_token(token.strip())
        if client is None:
            raise ApiError(401, "Unauthorized: invalid or expired token")
        return client

    @staticmethod
    def require(client: Client, capability: str) -> None:
        """Raise the 403 CDF answers when ``client`` lacks ``capability``."""
        if client.has(capability):
            return
        acl, action = _parse_capability(capability)
        raise ApiError(
            403,
            f"Forbidden: missing capability {capability} ({_acl_name(acl)}:{action} is required for this request)",
        )

    @staticmethod
    def inspect(client: Client, project: str) -> dict[str, Any]:
        """The body of ``GET /api/v1/token/inspect`` for ``client``, in CDF's shape."""
        by_acl: dict[str, list[str]] = {}
        for cap in sorted(client.capabilities):
            acl, action = _parse_capability(cap)
            by_acl.setdefault(_acl_name(acl), []).append(action)
        capabilities = [
            {acl: {"actions": actions, "scope": {"all": {}}}, "projectScope": {"projects": [project]}}
            for acl, actions in by_acl.items()
        ]
        return {
            "subject": client.client_id,
            "projects": [{"projectUrlName": project, "groups": []}],
            "capabilities": capabilities,
        }
