"""Building a CogniteClient from the environment (Toolkit variable names), for AWS Lambda and the CLI.

A Cognite Function gets its client from the runtime and never uses this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import AliasChoices, Field, ValidationError, model_validator

from workflow_retry.errors import ConfigurationError
from workflow_retry.payloads import describe_validation_error
from workflow_retry.settings import EnvironmentSettings, environment_values

if TYPE_CHECKING:
    from cognite.client import CogniteClient

CLIENT_NAME = "workflow-retry"


class CdfConnectionSettings(EnvironmentSettings):
    """Where CDF is and who we are: ``CDF_PROJECT``, ``CDF_CLUSTER`` or ``CDF_URL``, ``IDP_*``.

    The client secret itself is not read here: it comes from ``IDP_CLIENT_SECRET`` or a secret store
    (see ``IDP_CLIENT_SECRET_REF``), resolved by the caller. Read from the environment as
    :class:`~workflow_retry.settings.Settings` is (pydantic-settings' rules for flat fields, without
    its import: ~100 ms of a Lambda cold start).
    """

    project: str = Field(validation_alias=AliasChoices("CDF_PROJECT", "project"), min_length=1)
    cluster: str | None = Field(default=None, validation_alias=AliasChoices("CDF_CLUSTER", "cluster"))
    url: str | None = Field(default=None, validation_alias=AliasChoices("CDF_URL", "url"))
    client_id: str = Field(validation_alias=AliasChoices("IDP_CLIENT_ID", "client_id"), min_length=1)
    token_url: str = Field(validation_alias=AliasChoices("IDP_TOKEN_URL", "token_url"), min_length=1)
    scopes: str | None = Field(default=None, validation_alias=AliasChoices("IDP_SCOPES", "scopes"))

    @model_validator(mode="after")
    def _one_location(self) -> CdfConnectionSettings:
        if not self.url and not self.cluster:
            raise ValueError(_LOCATION_MISSING)
        return self

    @property
    def base_url(self) -> str:
        return (self.url or f"https://{self.cluster}.cognitedata.com").rstrip("/")

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split() if self.scopes else [f"{self.base_url}/.default"]


def connection_settings_from_environment() -> CdfConnectionSettings:
    """The connection settings, or one :class:`ConfigurationError` naming every variable missing or invalid.

    Where CDF is (``CDF_URL`` or ``CDF_CLUSTER``) is checked with the other fields, not after them, so
    that a user who set none of them learns all at once.
    """
    values = environment_values(CdfConnectionSettings)
    location_missing = not values.get("url") and not values.get("cluster")
    try:
        settings = CdfConnectionSettings.model_validate(values)
    except ValidationError as exc:
        field_errors = [e for e in exc.errors(include_input=False) if e["loc"]]
        if not (location_missing and field_errors):
            raise ConfigurationError(describe_validation_error(exc, "CDF connection settings")) from None
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in field_errors]
        raise ConfigurationError("invalid CDF connection settings: " + "; ".join([*parts, _LOCATION_MISSING])) from None
    return settings


_LOCATION_MISSING = "set CDF_URL (a full base URL) or CDF_CLUSTER"


def build_client(settings: CdfConnectionSettings, client_secret: str, timeout_seconds: int = 20) -> CogniteClient:
    """A CogniteClient authenticated with client credentials. Build once per process and reuse it.

    Its credentials are :class:`~workflow_retry.idp.BoundedClientCredentials`: the SDK's client
    credentials flow, whose failures are mapped to ``IdentityProviderError`` by status and type.
    """
    from cognite.client import ClientConfig, CogniteClient, global_config

    from workflow_retry.idp import BoundedClientCredentials

    global_config.disable_pypi_version_check = True  # no network call at start-up
    # The token is fetched ahead of each call, within its deadline (workflow_retry.idp); a request
    # outside a call that needs one waits at most the request timeout, not httpx's default.
    credentials = BoundedClientCredentials(
        token_url=settings.token_url,
        client_id=settings.client_id,
        client_secret=client_secret,
        scopes=settings.scope_list,
        timeout_seconds=timeout_seconds,
    )
    config = ClientConfig(
        client_name=CLIENT_NAME,
        project=settings.project,
        credentials=credentials,
        base_url=settings.base_url,
        timeout=timeout_seconds,
    )
    return CogniteClient(config)
