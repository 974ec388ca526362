"""Who a retried execution runs as: the tool's own principal, or the client credentials its workflow maps to.

CDF runs a workflow's remaining tasks with the session whose nonce the retry binds, so the principal
behind that session is the identity the rest of the execution has (docs/identity-and-access.md).
By default every retry's session is the tool's own (its client credentials, else token exchange).
``RETRY_CREDENTIALS_MAP`` maps workflows to named credential sets instead::

    {"finance-daily": "finance", "sales-*": "sales", "sales-audit": "default"}

Keys are exact workflow external IDs or glob patterns (``*``, ``?``, ``[...]``, matched with
:func:`fnmatch.fnmatchcase`); values name a credential set, or ``default`` for the tool's own
principal. An exact key wins over any pattern; among patterns, the first that matches in the order
written wins; a workflow nothing matches uses the tool's principal.

Where a set's client ID and secret come from depends on the platform: the Cognite Function's
secrets ``<set>-id`` and ``<set>-secret``, or on AWS and in the CLI ``RETRY_CREDENTIAL_SETS``
(a client ID and a secret reference per set). Every set the map names is resolved before the first
request, so a missing secret is a :class:`ConfigurationError` that costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Protocol

from workflow_retry.errors import ConfigurationError
from workflow_retry.settings import DEFAULT_PRINCIPAL, CredentialSetReference

_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class ClientCredentials:
    """Client credentials for creating retry sessions; the secret never shows in a repr."""

    client_id: str
    client_secret: str = field(repr=False)


class CredentialSetSource(Protocol):
    """Where the client ID and secret of a named credential set come from (the settings name the sets)."""

    def __call__(self, set_name: str) -> ClientCredentials:
        """The set's credentials; :class:`ConfigurationError` naming what is missing (never a value)."""
        ...


def is_pattern(key: str) -> bool:
    """Whether a key of the map is a glob pattern rather than an exact workflow external ID."""
    return any(character in _GLOB_CHARACTERS for character in key)


class WorkflowCredentialsMap:
    """Which credential set a workflow's retries use: exact keys first, then patterns in order."""

    def __init__(self, rules: Mapping[str, str] | None = None) -> None:
        rules = rules or {}
        self._exact = {key: name for key, name in rules.items() if not is_pattern(key)}
        self._patterns = [(key, name) for key, name in rules.items() if is_pattern(key)]

    def set_for(self, workflow_external_id: str | None) -> str | None:
        """The credential set the workflow maps to; None for the tool's own principal."""
        if workflow_external_id is None:
            return None
        name = self._exact.get(workflow_external_id)
        if name is None:
            name = next((n for key, n in self._patterns if fnmatchcase(workflow_external_id, key)), None)
        return None if name is None or name == DEFAULT_PRINCIPAL else name

    @property
    def set_names(self) -> tuple[str, ...]:
        """The credential sets the map names (without ``default``), in the order they first appear."""
        names = [*self._exact.values(), *(name for _, name in self._patterns)]
        return tuple(dict.fromkeys(name for name in names if name != DEFAULT_PRINCIPAL))

    def __bool__(self) -> bool:
        return bool(self._exact or self._patterns)

    def __len__(self) -> int:
        return len(self._exact) + len(self._patterns)


@dataclass(frozen=True)
class SessionCredentials:
    """The credentials each retry's session is created with: per workflow where mapped, else the default.

    ``default`` None means token exchange (the tool's own token). Build it with :meth:`resolve`, which
    reads every mapped set up front.
    """

    default: ClientCredentials | None = None
    workflows: WorkflowCredentialsMap = field(default_factory=WorkflowCredentialsMap)
    by_set: Mapping[str, ClientCredentials] = field(default_factory=dict)

    @classmethod
    def of(cls, credentials: ClientCredentials | SessionCredentials | None) -> SessionCredentials:
        """One principal for all (a :class:`ClientCredentials` or None), or the given mapping as it is."""
        return credentials if isinstance(credentials, SessionCredentials) else cls(default=credentials)

    @classmethod
    def resolve(
        cls, default: ClientCredentials | None, rules: Mapping[str, str], source: CredentialSetSource
    ) -> SessionCredentials:
        """The mapping with every set it names read from ``source`` now (ConfigurationError if one is missing)."""
        workflows = WorkflowCredentialsMap(rules)
        by_set = {name: source(name) for name in workflows.set_names}
        return cls(default=default, workflows=workflows, by_set=by_set)

    def for_workflow(self, workflow_external_id: str | None) -> ClientCredentials | None:
        """The credentials a retry of this workflow's execution creates its session with (None: token exchange)."""
        name = self.workflows.set_for(workflow_external_id)
        return self.default if name is None else self.by_set[name]

    def describe(self) -> str:
        """For the log: the session type, and how many workflows have their own credentials."""
        kind = "client credentials" if self.default is not None else "token exchange"
        if not self.workflows:
            return f"{kind} sessions"
        return f"{kind} sessions ({len(self.workflows)} workflow mapping(s) to {len(self.by_set)} credential set(s))"


def function_secret_keys(set_name: str) -> tuple[str, str]:
    """The Cognite Function secrets that hold a set's client ID and secret: ``<set>-id``, ``<set>-secret``."""
    return f"{set_name}-id", f"{set_name}-secret"


def function_secrets_source(secrets: Mapping[str, str] | None) -> CredentialSetSource:
    """A credential set read from a Cognite Function's secrets (:func:`function_secret_keys`)."""

    def read(set_name: str) -> ClientCredentials:
        id_key, secret_key = function_secret_keys(set_name)
        client_id, client_secret = (secrets or {}).get(id_key), (secrets or {}).get(secret_key)
        missing = [key for key, value in ((id_key, client_id), (secret_key, client_secret)) if not value]
        if missing or client_id is None or client_secret is None:
            raise ConfigurationError(
                f"RETRY_CREDENTIALS_MAP names the credential set '{set_name}', but the function's secrets "
                f"lack {' and '.join(repr(key) for key in missing)}"
            )
        return ClientCredentials(client_id, client_secret)

    return read


def reference_source(
    sets: Mapping[str, CredentialSetReference], read_secret: Callable[[str], str]
) -> CredentialSetSource:
    """A credential set of ``RETRY_CREDENTIAL_SETS``: its client ID, and its secret read from its reference.

    ``read_secret`` reads a reference (``ssm:/...``, a Secrets Manager name or ARN, optionally ``#key``)
    and raises :class:`ConfigurationError` when it cannot (``aws.secrets.AwsSecretReader.read``).
    """

    def read(set_name: str) -> ClientCredentials:
        reference = sets.get(set_name)
        if reference is None:
            raise ConfigurationError(
                f"RETRY_CREDENTIALS_MAP names the credential set '{set_name}', which RETRY_CREDENTIAL_SETS "
                "does not define"
            )
        return ClientCredentials(reference.client_id, read_secret(reference.client_secret_ref))

    return read
