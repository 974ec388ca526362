"""One typed settings object, read from the environment once per process.

Every variable is optional; defaults are chosen for a Cognite Function (9-minute limit, 1 CPU).

:class:`Settings` reads the environment itself, as pydantic-settings would for these flat fields
(``RETRY_<FIELD>`` or a field's aliases, any case; explicit arguments win), because importing
pydantic-settings costs a cold start 30-50 ms (docs/benchmarks.md). The Lambda path's settings
(``connection``, ``aws.config``) read theirs with the same :func:`environment_values`.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from workflow_retry.errors import ConfigurationError
from workflow_retry.policy import ENVIRONMENT_VARIABLES, LOOSENING_VARIABLE

logger = logging.getLogger(__name__)

# Keys of a Cognite Function's secrets that hold client credentials for the retry sessions.
SECRET_CLIENT_ID = "client-id"  # noqa: S105 (a key name)
SECRET_CLIENT_SECRET = "client-secret"  # noqa: S105 (a key name)

DEFAULT_PRINCIPAL = "default"
"""The credential set name that maps a workflow to the tool's own principal (workflow_retry.identity)."""

_CREDENTIAL_SET_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?")


def _credential_set_name(name: str) -> str:
    if not _CREDENTIAL_SET_NAME.fullmatch(name):
        raise ValueError(
            f"credential set name {name!r} must be 1 to 8 lower-case letters, digits or inner dashes "
            "(its function secrets '<name>-id' and '<name>-secret' must fit 15 characters)"
        )
    return name


CredentialSetName = Annotated[str, AfterValidator(_credential_set_name)]
"""A credential set's name: 1-8 lower-case letters, digits or inner dashes, so that its Cognite Function
secrets ``<name>-id`` and ``<name>-secret`` fit the 15 characters a secret's key may have."""

WorkflowKey = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^\S(?:.*\S)?$")]
"""A workflow external ID or a glob pattern over them (no leading or trailing white space)."""


class CredentialSetReference(BaseModel):
    """One credential set of ``RETRY_CREDENTIAL_SETS``: a client ID and where its secret lives (AWS, CLI)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(alias="clientId", min_length=1, max_length=255)
    client_secret_ref: str = Field(
        alias="clientSecretRef",
        min_length=1,
        description="ssm:/path, an SSM parameter ARN, or a Secrets Manager name or ARN, optionally #key",
    )


class EnvironmentSettings(BaseModel):
    """Frozen settings whose flat fields are read from the environment (:func:`environment_values`).

    Explicit values over the environment's over the defaults; unknown names are ignored.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True)

    def __init__(self, **values: Any) -> None:
        super().__init__(**(environment_values(type(self)) | values))


class Settings(EnvironmentSettings):
    """Run-time settings. Environment variables are upper case with the ``RETRY_`` prefix."""

    model_config = ConfigDict(
        env_prefix="RETRY_",  # type: ignore[typeddict-unknown-key]  # read by environment_values (and tests/infra)
    )

    deadline_seconds: float = Field(
        default=240.0,
        gt=0,
        le=3600,
        description="Wall-clock budget of one call; IDs not reached fail retryably",
    )
    concurrency: int = Field(default=32, ge=1, le=50, description="Executions handled at the same time")
    request_timeout_seconds: int = Field(default=20, ge=1, le=300, description="Timeout of one HTTP request")
    sdk_max_retries: int = Field(default=3, ge=0, le=10, description="cognite-sdk retries of one request")
    sdk_max_backoff_seconds: int = Field(default=4, ge=0, le=60, description="Cap of the SDK's backoff")
    max_running: int | None = Field(
        default=None,
        ge=1,
        le=50,
        description="Restart an execution only while the project runs fewer executions than this (CDF runs at "
        "most 50 at once); unset: not counted",
    )

    # The attempt ledger and the sweep (docs/policy-and-sweeps.md). The retry policy itself is read by
    # workflow_retry.policy.resolve_policy, so that a call's data can override it.
    ledger: Literal["raw", "dynamodb", "none"] | None = Field(
        default=None, description="Where attempts are counted; unset: RAW wherever there is a CDF client"
    )
    ledger_table: str | None = Field(default=None, description="DynamoDB table of the ledger (RETRY_LEDGER_TABLE)")
    ledger_raw_database: str = Field(default="workflow_retry", min_length=1, max_length=32)
    ledger_raw_table: str = Field(default="attempts", min_length=1, max_length=64)
    ledger_ttl_hours: float = Field(
        default=168.0, gt=0, le=24 * 366, description="A ledger record expires this long after its last write"
    )
    ledger_retention_days: float = Field(
        default=30.0,
        ge=0,
        le=3660,
        description="An expired ledger record (its history) is kept this long, then deleted",
    )
    give_up_topic_arn: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GIVE_UP_TOPIC_ARN", "RETRY_GIVE_UP_TOPIC_ARN"),
        description="SNS topic told when the tool gives up on an execution (optional)",
    )
    extraction_pipeline: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="External ID of the CDF extraction pipeline each call and sweep reports a run to (optional)",
    )
    sweep_lookback_minutes: int | None = Field(
        default=None,
        ge=1,
        le=90 * 24 * 60,
        description="Sweeps look only at failures that ended this recently (a narrower maxAgeHours); unset: "
        "every failure within maxAgeHours",
    )
    sweep_workflows: str = Field(default="", description="Sweep only these workflows (comma-separated, wf[:ver])")
    sweep_statuses: str = Field(default="FAILED,TIMED_OUT", description="Execution statuses a sweep lists")
    sweep_max_restarts: int = Field(default=20, ge=1, le=1000, description="Executions restarted per sweep")
    sweep_page_size: int = Field(
        default=1000, ge=1, le=1000, description="Executions per list request (the API's most, as the SDK pages)"
    )

    # Who retried executions run as (docs/identity-and-access.md): workflows mapped to credential sets.
    credentials_map: dict[WorkflowKey, CredentialSetName] = Field(
        default_factory=dict,
        max_length=200,
        description='JSON object: workflow external ID or glob pattern -> credential set, e.g. {"sales-*": "sales"}',
    )
    credential_sets: dict[CredentialSetName, CredentialSetReference] = Field(
        default_factory=dict,
        max_length=50,
        description='AWS and CLI: JSON object of sets, {"sales": {"clientId": ..., "clientSecretRef": ...}}',
    )

    @field_validator("credentials_map", "credential_sets", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError:
                raise ValueError("must be a JSON object") from None
        return value

    @model_validator(mode="after")
    def _requests_fit_in_deadline(self) -> Settings:
        if self.request_timeout_seconds >= self.deadline_seconds:
            raise ValueError("request_timeout_seconds must be shorter than deadline_seconds")
        return self

    @model_validator(mode="after")
    def _default_is_not_a_set(self) -> Settings:
        if DEFAULT_PRINCIPAL in self.credential_sets:
            raise ValueError(f"'{DEFAULT_PRINCIPAL}' is the tool's own principal, not a credential set to define")
        return self


def environment_values(model: type[BaseModel]) -> dict[str, str]:
    """The raw values of a model's fields in the environment: its aliases, else prefix + name, any case."""
    environ = {name.lower(): value for name, value in os.environ.items()}
    prefix = str(model.model_config.get("env_prefix", ""))
    values: dict[str, str] = {}
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            candidates = [choice for choice in alias.choices if isinstance(choice, str)]
        else:
            candidates = [alias] if isinstance(alias, str) else [prefix + name]
        for candidate in candidates:
            if candidate.lower() in environ:
                values[name] = environ[candidate.lower()]
                break
    return values


def settings_from_environment() -> Settings:
    """Read the settings from the environment, raising :class:`ConfigurationError` when invalid."""
    try:
        return Settings()
    except ValidationError as exc:
        # Name the variable a user sets (RETRY_DEADLINE_SECONDS), not the field (deadline_seconds).
        parts = [
            f"{_variable_name(e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False, include_url=False)[:5]
        ]
        raise ConfigurationError("invalid settings: " + "; ".join(parts)) from None


def _variable_name(location: tuple[int | str, ...]) -> str:
    field = Settings.model_fields.get(str(location[0])) if location else None
    if field is None:
        return ".".join(str(part) for part in location) or "settings"
    alias = field.validation_alias
    name = alias.choices[-1] if isinstance(alias, AliasChoices) else f"RETRY_{location[0]}"
    return ".".join([str(name).upper(), *(str(part) for part in location[1:])])


def known_retry_variables() -> frozenset[str]:
    """Every ``RETRY_*`` environment variable the tool reads: the settings, the policy, the loosening switch."""
    names = {LOOSENING_VARIABLE, *ENVIRONMENT_VARIABLES}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [f"RETRY_{name}"]
        names.update(choice.upper() for choice in choices if isinstance(choice, str))
    return frozenset(name for name in names if name.startswith("RETRY_"))


def unknown_retry_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``RETRY_*`` variable the tool does not read, naming the closest known one.

    A misspelt setting (``RETRY_CONCURENCY``) would otherwise be ignored in silence and its default used.
    """
    known = known_retry_variables()
    warnings = []
    for name in sorted(environ if environ is not None else os.environ):
        upper = name.upper()
        if not upper.startswith("RETRY_") or upper in known:
            continue
        closest = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {closest[0]}?" if closest else ""
        warnings.append(f"{name} is not a setting of this tool and is ignored{hint}")
    return warnings


_unknown_reported = False


def warn_unknown_retry_variables(emit: Callable[[str], None] = logger.warning) -> None:
    """Tell :func:`unknown_retry_variables` once per process: the CLI prints them, the function and Lambda log them."""
    global _unknown_reported  # once per process, whoever asks first
    if _unknown_reported:
        return
    _unknown_reported = True
    for warning in unknown_retry_variables():
        emit(warning)


@lru_cache(maxsize=1)
def cached_settings() -> Settings:
    """The process's settings, read once (a warm container reuses them); unknown RETRY_* names logged once."""
    warn_unknown_retry_variables()
    return settings_from_environment()
