"""Secrets from AWS Secrets Manager or SSM Parameter Store, read with boto3 and cached per container.

A reference names where a secret lives:

- ``ssm:/path/to/parameter`` or an SSM parameter ARN (``arn:aws:ssm:<region>:<account>:parameter/...``):
  a (SecureString) parameter, decrypted;
- anything else: a Secrets Manager secret name or ARN (its ``SecretString``).

Append ``#key`` to read one key of a secret that holds a JSON object (``my/secret#clientSecret``).
Values are cached for ``max_age_seconds`` (one fetch per container and period, whatever the number of
invocations), so a rotated secret reaches warm containers within that period.

botocore logs every response body at DEBUG (logger ``botocore.parsers``), the secret values read here
included, and ``AWS_LAMBDA_LOG_LEVEL=DEBUG`` turns that on: importing this module drops those records.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import SecretStr

from workflow_retry.boto_clients import TimeLeft, bounded_client, no_time_limit
from workflow_retry.errors import ConfigurationError


class _WithoutResponseBodies(logging.Filter):
    """Drops botocore's "Response body" DEBUG records: a GetSecretValue or GetParameter body is the secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Response body")


logging.getLogger("botocore.parsers").addFilter(_WithoutResponseBodies())


class SecretReader(Protocol):
    """Reads the value of a secret reference; raises :class:`ConfigurationError` when it cannot."""

    def read(self, reference: str) -> str: ...


@dataclass(frozen=True)
class SecretReference:
    """A parsed reference: which service, the name or ARN to ask for, its region, and an optional JSON key."""

    service: Literal["secretsmanager", "ssm"]
    name: str
    region: str | None
    json_key: str | None

    @classmethod
    def parse(cls, text: str) -> SecretReference:
        reference, _, json_key = text.strip().partition("#")
        if not reference:
            raise ConfigurationError("a secret reference is empty")
        if reference.startswith("ssm:"):
            return cls("ssm", reference[len("ssm:") :], None, json_key or None)
        parts = reference.split(":")
        if reference.startswith("arn:") and len(parts) >= 6:
            # An ARN names its region, which may not be the function's: ask that region.
            service: Literal["secretsmanager", "ssm"] = "ssm" if parts[2] == "ssm" else "secretsmanager"
            return cls(service, reference, parts[3] or None, json_key or None)
        return cls("secretsmanager", reference, None, json_key or None)

    def __str__(self) -> str:
        kind = "SSM parameter" if self.service == "ssm" else "Secrets Manager secret"
        return f"{kind} '{self.name}'" + (f" (key '{self.json_key}')" if self.json_key else "")


class AwsSecretReader:
    """:class:`SecretReader` over boto3, with a per-container cache; each read bounded by ``time_left()``."""

    def __init__(
        self,
        max_age_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        time_left: TimeLeft = no_time_limit,
    ) -> None:
        self._max_age = max_age_seconds
        self._clock = clock
        self._time_left = time_left
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def read(self, reference: str) -> str:
        with self._lock:
            cached = self._cache.get(reference)
            if cached is not None and self._clock() - cached[0] < self._max_age:
                return cached[1]
        parsed = SecretReference.parse(reference)
        value = _select_key(self._fetch(parsed), parsed)
        with self._lock:
            self._cache[reference] = (self._clock(), value)
        return value

    def _fetch(self, reference: SecretReference) -> str:
        from botocore.exceptions import BotoCoreError, ClientError  # the AWS path only

        try:
            # Made here, not at the top: a container without a *_REF secret never loads boto3.
            client = bounded_client(reference.service, self._time_left(), region=reference.region)
            if reference.service == "ssm":
                answer = client.get_parameter(Name=reference.name, WithDecryption=True)
                return str(answer["Parameter"]["Value"])
            answer = client.get_secret_value(SecretId=reference.name)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "unknown")
            raise ConfigurationError(f"could not read the {reference}: AWS answered {code}") from None
        except BotoCoreError as exc:
            raise ConfigurationError(f"could not read the {reference}: {type(exc).__name__}") from None
        if "SecretString" not in answer:
            raise ConfigurationError(f"the {reference} holds binary data, not a string")
        return str(answer["SecretString"])


def _select_key(value: str, reference: SecretReference) -> str:
    if reference.json_key is None:
        return value
    try:
        document = json.loads(value)
    except ValueError:
        document = None
    selected = document.get(reference.json_key) if isinstance(document, dict) else None
    if not isinstance(selected, str) or not selected:
        raise ConfigurationError(f"the {reference} is not a JSON object with a non-empty string at that key")
    return selected


def resolve_secret(value: SecretStr | None, reference: str | None, reader: SecretReader) -> str | None:
    """The secret set directly, or read from its reference, or None when neither is set."""
    if value is not None:
        return value.get_secret_value()
    if reference:
        return reader.read(reference)
    return None
