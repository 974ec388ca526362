"""The Cognite Function entrypoint: ``handle`` catches and reports, ``execute`` orchestrates."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cognite.client import CogniteClient

from workflow_retry.cdf import (
    ClientCredentials,
    SdkCdfGateway,
    apply_request_timeout,
    bound_sdk_retries,
    run_on_sdk_loop,
)
from workflow_retry.errors import ConfigurationError, RetryToolError
from workflow_retry.models import RetryReport, RetryRequest
from workflow_retry.payloads import parse_payload
from workflow_retry.service import retry_executions
from workflow_retry.settings import SECRET_CLIENT_ID, SECRET_CLIENT_SECRET, Settings, cached_settings

logger = logging.getLogger(__name__)


def handle(
    data: object,
    client: CogniteClient,
    secrets: Mapping[str, str] | None = None,
    function_call_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Retry the failed workflow executions named in ``data``; one result per distinct ID.

    Raises :class:`PayloadError` when no execution ID can be read from ``data`` (the call then shows
    as Failed with that message) and :class:`ConfigurationError` for invalid settings or secrets.
    """
    try:
        settings = cached_settings()
        request = parse_payload(data)
        credentials = credentials_from_secrets(secrets)
        report = execute(request, client, credentials, settings)
    except RetryToolError as exc:
        logger.error("call %s refused: %s", _call_id(function_call_info), exc)
        raise
    return report.to_dict()


def execute(
    request: RetryRequest, client: CogniteClient, credentials: ClientCredentials | None, settings: Settings
) -> RetryReport:
    """Retry every ID of the request through cognite-sdk, within the settings' deadline."""
    bound_sdk_retries(settings)
    apply_request_timeout(client, settings)
    gateway = SdkCdfGateway(client, credentials)
    logger.info(
        "handling %d execution ID(s)%s with %s sessions",
        len(request.ids),
        " (dry run)" if request.dry_run else "",
        gateway.session_type,
    )
    return run_on_sdk_loop(retry_executions(request, gateway, settings))


def credentials_from_secrets(secrets: Mapping[str, str] | None) -> ClientCredentials | None:
    """Client credentials from the function's secrets (``client-id``, ``client-secret``), if both are set."""
    client_id = (secrets or {}).get(SECRET_CLIENT_ID)
    client_secret = (secrets or {}).get(SECRET_CLIENT_SECRET)
    if not client_id and not client_secret:
        return None
    if not client_id or not client_secret:
        missing = SECRET_CLIENT_ID if not client_id else SECRET_CLIENT_SECRET
        raise ConfigurationError(
            f"the function's secrets hold only half of the client credentials: '{missing}' is missing"
        )
    return ClientCredentials(client_id=client_id, client_secret=client_secret)


def _call_id(function_call_info: Mapping[str, Any] | None) -> str:
    return str((function_call_info or {}).get("call_id", "-"))
