"""Identities of the emulated CDF project: clients, their capabilities and the bearer tokens issued to them.

Not thread-safe on its own: the emulator calls it with its state lock held.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from emulator.errors import ApiError

WORKFLOW_READ = "workflowOrchestrationACL:READ"
WORKFLOW_WRITE = "workflowOrchestrationACL:WRITE"
SESSIONS_CREATE = "sessionsACL:CREATE"
RAW_READ = "rawACL:READ"
RAW_WRITE = "rawACL:WRITE"
EXTPIPES_READ = "extractionPipelinesAcl:READ"
EXTPIPES_WRITE = "extractionPipelinesAcl:WRITE"
EXTRACTION_RUNS_READ = "extractionRunsAcl:READ"
EXTRACTION_RUNS_WRITE = "extractionRunsAcl:WRITE"

DEFAULT_CAPABILITIES: frozenset[str] = frozenset({WORKFLOW_READ, WORKFLOW_WRITE, SESSIONS_CREATE, RAW_READ, RAW_WRITE})


def _acl_name(acl: str) -> str:
    """``workflowOrchestrationACL`` -> ``workflowOrchestrationAcl`` (the spelling of token/inspect)."""
    return acl[:-3] + "Acl" if acl.endswith("ACL") else acl


def _parse_capability(capability: str) -> tuple[str, str]:
    acl, sep, action = capability.partition(":")
    if not sep or not acl or not action:
        raise ValueError(f"capability must look like 'workflowOrchestrationACL:WRITE', got {capability!r}")
    return acl, action


def normalize_capability(capability: str) -> str:
    """``functionsACL:run`` -> ``functionsAcl:RUN``: one spelling to compare capabilities by."""
    acl, action = _parse_capability(capability)
    return f"{_acl_name(acl)}:{action.upper()}"


_SCOPE_KINDS = frozenset(
    {
        "all",
        "datasetScope",
        "idScope",
        "idscope",
        "tableScope",
        "assetRootIdScope",
        "extractionPipelineScope",
        "spaceIdScope",
    }
)


def _check_scopes(scopes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Scopes keyed by the ACL's inspect spelling; each one CDF scope kind (``{"all": {}}``,
    ``{"datasetScope": {"ids": [...]}}``, ...)."""
    out: dict[str, dict[str, Any]] = {}
    for acl, scope in scopes.items():
        if not isinstance(scope, dict) or len(scope) != 1 or next(iter(scope)) not in _SCOPE_KINDS:
            raise ValueError(
                f"scope of {acl} must be one of {sorted(_SCOPE_KINDS)} like {{'all': {{}}}}, got {scope!r}"
            )
        out[_acl_name(acl)] = scope
    return out


@dataclass(frozen=True)
class Client:
    """A registered OAuth client (service principal) with the capabilities it holds in the project.

    ``scopes`` maps an ACL (``"rawAcl"``, either spelling) to its scope in CDF's shape, e.g.
    ``{"datasetScope": {"ids": [1]}}``; an ACL without one has ``{"all": {}}``.  Scopes are shown by
    ``/token/inspect`` but not enforced: a scoped capability grants its action on everything.
    """

    client_id: str
    client_secret: str
    capabilities: frozenset[str]
    scopes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def has(self, capability: str) -> bool:
        """Whether the client holds ``capability`` (``"sessionsACL:CREATE"`` or ``"sessionsAcl:CREATE"``)."""
        wanted = normalize_capability(capability)
        return any(normalize_capability(cap) == wanted for cap in self.capabilities)

    def scope_of(self, acl: str) -> dict[str, Any]:
        """The scope of ``acl`` in CDF's shape (``{"all": {}}`` unless one was set)."""
        return self.scopes.get(_acl_name(acl), {"all": {}})


class AuthRegistry:
    """Clients, the tokens issued to them, and the capability checks of each endpoint."""

    def __init__(self) -> None:
        self._clients: dict[str, Client] = {}
        self._tokens: dict[str, str] = {}  # token -> client id
        self._session_tokens: set[str] = set()  # tokens that came from a session
        self.issued_tokens: list[str] = []

    def add_client(
        self,
        client_id: str,
        client_secret: str,
        capabilities: Iterable[str] = DEFAULT_CAPABILITIES,
        scopes: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Register (or replace) a client; its tokens see the new capabilities at once."""
        caps = frozenset(capabilities)
        for cap in caps:
            _parse_capability(cap)
        self._clients[client_id] = Client(client_id, client_secret, caps, _check_scopes(scopes or {}))

    def _require_client(self, client_id: str) -> Client:
        client = self._clients.get(client_id)
        if client is None:
            raise KeyError(f"unknown client {client_id!r}")
        return client

    def grant(self, client_id: str, capabilities: Iterable[str]) -> None:
        """Add capabilities to a registered client; its tokens and sessions see them at once."""
        client = self._require_client(client_id)
        added = frozenset(capabilities)
        for cap in added:
            _parse_capability(cap)
        self._clients[client_id] = replace(client, capabilities=client.capabilities | added)

    def revoke(self, client_id: str, capabilities: Iterable[str]) -> None:
        """Remove capabilities (either ACL spelling) from a registered client, at once."""
        client = self._require_client(client_id)
        gone = {normalize_capability(cap) for cap in capabilities}
        kept = frozenset(cap for cap in client.capabilities if normalize_capability(cap) not in gone)
        self._clients[client_id] = replace(client, capabilities=kept)

    def set_scope(self, client_id: str, acl: str, scope: dict[str, Any] | None) -> None:
        """Set (or with None, reset to all) the scope of one ACL of a client."""
        client = self._require_client(client_id)
        scopes = dict(client.scopes)
        scopes.pop(_acl_name(acl), None)
        if scope is not None:
            scopes.update(_check_scopes({acl: scope}))
        self._clients[client_id] = replace(client, scopes=scopes)

    def client(self, client_id: str) -> Client | None:
        """The client registered under ``client_id``, if any."""
        return self._clients.get(client_id)

    def check_credentials(self, client_id: str, client_secret: str) -> Client | None:
        """The client when id and secret match a registered client, else None."""
        client = self._clients.get(client_id)
        if client is None or not secrets.compare_digest(client.client_secret, client_secret):
            return None
        return client

    def issue_token(self, client_id: str, *, for_session: bool = False) -> str:
        """A new bearer token for a registered client.

        ``for_session``: the token comes from a session (what a Cognite Function started by a workflow
        or a schedule holds); it cannot create a token-exchange session (see :mod:`emulator.sessions`).
        """
        if client_id not in self._clients:
            raise KeyError(f"unknown client {client_id!r}")
        token = secrets.token_urlsafe(32)
        self._tokens[token] = client_id
        if for_session:
            self._session_tokens.add(token)
        self.issued_tokens.append(token)
        return token

    def is_session_token(self, authorization: str | None) -> bool:
        """Whether the bearer token of an ``Authorization`` header was issued for a session."""
        _, _, token = (authorization or "").partition(" ")
        return token.strip() in self._session_tokens

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
            {acl: {"actions": actions, "scope": client.scope_of(acl)}, "projectScope": {"projects": [project]}}
            for acl, actions in by_acl.items()
        ]
        return {
            "subject": client.client_id,
            "projects": [{"projectUrlName": project, "groups": []}],
            "capabilities": capabilities,
        }
