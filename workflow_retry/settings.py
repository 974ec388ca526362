"""One typed settings object, read from the environment once per process.

Every variable is optional; defaults are chosen for a Cognite Function (9-minute limit, 1 CPU).

:class:`Settings` reads the environment itself, as pydantic-settings would for these flat fields
(``RETRY_<FIELD>`` or a field's aliases, any case; explicit arguments win), because importing
pydantic-settings costs a cold start 30-50 ms (docs/benchmarks.md). The Lambda path's settings
(``connection``, ``aws.config``) read theirs with the same :func:`environment_values`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from workflow_retry.errors import ConfigurationError
from workflow_retry.payloads import describe_validation_error

# Keys of a Cognite Function's secrets that hold client credentials for the retry sessions.
SECRET_CLIENT_ID = "client-id"  # noqa: S105 (a key name)
SECRET_CLIENT_SECRET = "client-secret"  # noqa: S105 (a key name)


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
    concurrency: int = Field(default=16, ge=1, le=50, description="Executions handled at the same time")
    request_timeout_seconds: int = Field(default=20, ge=1, le=300, description="Timeout of one HTTP request")
    sdk_max_retries: int = Field(default=3, ge=0, le=10, description="cognite-sdk retries of one request")
    sdk_max_backoff_seconds: int = Field(default=4, ge=0, le=60, description="Cap of the SDK's backoff")

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
    sweep_page_size: int = Field(default=100, ge=1, le=1000, description="Executions per list request")

    @model_validator(mode="after")
    def _requests_fit_in_deadline(self) -> Settings:
        if self.request_timeout_seconds >= self.deadline_seconds:
            raise ValueError("request_timeout_seconds must be shorter than deadline_seconds")
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
        raise ConfigurationError(describe_validation_error(exc, "settings")) from None


@lru_cache(maxsize=1)
def cached_settings() -> Settings:
    """The process's settings, read once (a warm container reuses them)."""
    return settings_from_environment()
