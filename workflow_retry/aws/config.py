"""The Lambda entrypoint's own settings, read from the environment once per container.

The core's settings (``RETRY_*``) and the CDF connection (``CDF_*``, ``IDP_*``) are read by
:mod:`workflow_retry.settings` and :mod:`workflow_retry.connection`; this adds the secrets, webhook
security and duplicate detection, under the names fixed for the project.

The fields are flat, so they are read from the environment as :class:`~workflow_retry.settings.Settings`
reads its own (the same rules as pydantic-settings, without its import: 30-50 ms of cold start).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator

from workflow_retry.errors import ConfigurationError
from workflow_retry.payloads import describe_validation_error
from workflow_retry.settings import EnvironmentSettings

HTTP_MAX_BODY_BYTES = 256 * 1024
"""Largest HTTP body accepted (413 above it): the message size limit of SNS, SQS and EventBridge, so
whatever those can carry can also be posted. 1,000 IDs as ``executionIds`` take about 40 KiB."""

LAMBDA_SAFETY_MARGIN_SECONDS = 5.0
"""Time kept back from the Lambda's remaining time for storing results and answering."""

_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(?:\.fifo)?")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class AwsSettings(EnvironmentSettings):
    """Secrets, webhook security and duplicate detection of the Lambda entrypoint (see docs/aws.md)."""

    client_secret: SecretStr | None = Field(default=None, validation_alias=_env("IDP_CLIENT_SECRET"))
    client_secret_ref: str | None = Field(default=None, validation_alias=_env("IDP_CLIENT_SECRET_REF"))
    webhook_secret: SecretStr | None = Field(default=None, validation_alias=_env("WEBHOOK_SECRET"))
    webhook_secret_ref: str | None = Field(default=None, validation_alias=_env("WEBHOOK_SECRET_REF"))
    webhook_signatures: Literal["required", "off"] = Field(
        default="required", validation_alias=_env("WEBHOOK_SIGNATURES")
    )
    function_url_auth_type: Literal["NONE", "AWS_IAM"] = Field(
        default="NONE", validation_alias=_env("FUNCTION_URL_AUTH_TYPE")
    )
    sns_topic_arns: str = Field(default="", validation_alias=_env("SNS_TOPIC_ARNS"))
    idempotency_table: str | None = Field(default=None, validation_alias=_env("IDEMPOTENCY_TABLE"))
    idempotency_expiry_seconds: int = Field(
        default=3600, ge=600, le=7 * 24 * 3600, validation_alias=_env("IDEMPOTENCY_EXPIRY_SECONDS")
    )
    secrets_max_age_seconds: int = Field(
        default=300, ge=0, le=24 * 3600, validation_alias=_env("SECRETS_MAX_AGE_SECONDS")
    )

    @model_validator(mode="after")
    def _consistent(self) -> AwsSettings:
        if self.client_secret is not None and self.client_secret_ref:
            raise ValueError("set IDP_CLIENT_SECRET or IDP_CLIENT_SECRET_REF, not both")
        if self.webhook_secret is not None and self.webhook_secret_ref:
            raise ValueError("set WEBHOOK_SECRET or WEBHOOK_SECRET_REF, not both")
        if self.webhook_signatures == "off" and self.function_url_auth_type != "AWS_IAM":
            raise ValueError(
                "WEBHOOK_SIGNATURES=off is allowed only with FUNCTION_URL_AUTH_TYPE=AWS_IAM (the Function URL or "
                "API then authenticates every caller with IAM)"
            )
        wrong = [arn for arn in self.topic_arns if not _TOPIC_ARN.fullmatch(arn)]
        if wrong:
            raise ValueError(f"SNS_TOPIC_ARNS holds values that are not SNS topic ARNs: {wrong[:3]}")
        return self

    @property
    def topic_arns(self) -> frozenset[str]:
        """The SNS topics whose HTTPS deliveries are accepted (comma- or space-separated)."""
        return frozenset(arn for arn in re.split(r"[\s,]+", self.sns_topic_arns) if arn)

    @property
    def signatures_required(self) -> bool:
        return self.webhook_signatures == "required"


def aws_settings_from_environment() -> AwsSettings:
    try:
        return AwsSettings()
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc, "AWS settings")) from None
