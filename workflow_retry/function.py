"""The Cognite Function entrypoint: ``handle`` catches and reports, ``execute`` orchestrates."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from cognite.client import CogniteClient

from workflow_retry.answer_size import COGNITE_FUNCTION_ANSWER_LIMIT_BYTES, fit_answer
from workflow_retry.cdf import (
    ClientCredentials,
    SdkCdfGateway,
    apply_request_timeout,
    bound_sdk_retries,
    run_on_sdk_loop,
)
from workflow_retry.errors import ConfigurationError, IdentityProviderError, RetryToolError
from workflow_retry.giveup import Announcer, build_announcer
from workflow_retry.identity import SessionCredentials, function_secrets_source
from workflow_retry.idp import fetch_token_ahead
from workflow_retry.ledger import AttemptLedger, build_ledger
from workflow_retry.logs import call_log_context, log_json_to_stdout
from workflow_retry.models import RetryReport, RetryRequest
from workflow_retry.payloads import check_limits, parse_payload
from workflow_retry.pipeline_runs import report_run
from workflow_retry.policy import RetryPolicy, resolve_policy
from workflow_retry.service import Progress, RetryContext, report_not_started, retry_executions
from workflow_retry.settings import SECRET_CLIENT_ID, SECRET_CLIENT_SECRET, Settings, cached_settings
from workflow_retry.sweep import SweepProgress, sweep_executions, sweep_not_started

logger = logging.getLogger(__name__)


def handle(
    data: object,
    client: CogniteClient,
    secrets: Mapping[str, str] | None = None,
    function_call_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Retry the failed workflow executions named in ``data``; one result per distinct ID.

    Raises :class:`PayloadError` when no execution ID can be read from ``data`` (the call then shows
    as Failed with that message) and :class:`ConfigurationError` for invalid settings or secrets. The
    answer is trimmed to the platform's 1 MB when it would be larger (:mod:`workflow_retry.answer_size`).
    Logs one JSON line per event to stdout (the call's log), each with the call's ID.
    """
    log_json_to_stdout()
    call_id = _call_id(function_call_info)
    with call_log_context(call_id):
        try:
            settings = cached_settings()
            request = parse_payload(data)
            credentials = session_credentials_from_secrets(secrets, settings)
            report = execute(request, client, credentials, settings)
        except RetryToolError as exc:
            logger.error("call %s refused: %s", call_id, exc)
            raise
        # Cognite Functions refuse an answer over 1 MB, which would fail the call after its retries ran.
        return fit_answer(report.to_dict(), COGNITE_FUNCTION_ANSWER_LIMIT_BYTES, "Cognite Functions")


def execute(
    request: RetryRequest,
    client: CogniteClient,
    credentials: ClientCredentials | SessionCredentials | None,
    settings: Settings,
    *,
    ledger: AttemptLedger | None = None,
    announcer: Announcer | None = None,
    environment: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> RetryReport:
    """Retry every ID of the request (or run its sweep) through cognite-sdk, within the settings' deadline.

    The policy is the request's own fields over ``environment`` (default ``os.environ``) over the
    defaults; the ledger defaults to the one the settings choose (RAW unless ``RETRY_LEDGER`` says
    otherwise); give-ups go to the log and to ``GIVE_UP_TOPIC_ARN`` when set. Invalid configuration
    raises :class:`ConfigurationError` before any request to CDF. When no token can be had from the
    identity provider within the deadline, every ID is ``failed`` (``identityProvider``) and nothing is sent.
    With ``RETRY_EXTRACTION_PIPELINE`` set, the call (not a dry run) ends by reporting one run to that
    pipeline (:mod:`pipeline_runs`), in time set aside from the deadline.
    """
    started = time.monotonic()
    context = build_context(request, client, settings, ledger=ledger, announcer=announcer, environment=environment)
    pipeline = None if request.dry_run else settings.extraction_pipeline
    announced_before = len(context.announcer.announced)
    work_settings = _leave_time_to_report(settings) if pipeline else settings
    report = _run(request, client, credentials, work_settings, context, progress)
    gave_up = tuple(give_up.execution_id for give_up in context.announcer.announced[announced_before:])
    report = report.model_copy(update={"gave_up": gave_up})
    if pipeline:
        report_run(client, pipeline, report, settings.deadline_seconds - (time.monotonic() - started))
    return report


def _run(
    request: RetryRequest,
    client: CogniteClient,
    credentials: ClientCredentials | SessionCredentials | None,
    settings: Settings,
    context: RetryContext,
    progress: Progress | None,
) -> RetryReport:
    if request.sweep is not None:
        return execute_sweep(request, client, credentials, settings, context=context)
    gateway = _bounded_gateway(client, credentials, settings)
    try:
        if any(requested.execution_id is not None for requested in request.ids):  # invalid IDs cost nothing
            settings = with_token_ahead(client, settings)
    except IdentityProviderError as exc:
        logger.error("%d execution ID(s) not handled: %s", len(request.ids), exc)
        return report_not_started(request, exc, context)
    logger.info(
        "handling %d execution ID(s)%s with %s, %s ledger",
        len(request.ids),
        " (dry run)" if request.dry_run else "",
        gateway.session_type,
        context.ledger.kind,
    )
    return run_on_sdk_loop(retry_executions(request, gateway, settings, context, progress))


def _leave_time_to_report(settings: Settings) -> Settings:
    """The settings of the retries when a run is reported after them: the deadline less the report's time
    (one request timeout, at most a tenth of the deadline)."""
    reserve = min(float(settings.request_timeout_seconds), settings.deadline_seconds / 10)
    return settings.model_copy(update={"deadline_seconds": settings.deadline_seconds - reserve})


def execute_sweep(
    request: RetryRequest,
    client: CogniteClient,
    credentials: ClientCredentials | SessionCredentials | None,
    settings: Settings,
    *,
    context: RetryContext | None = None,
    progress: SweepProgress | None = None,
) -> RetryReport:
    """Run the sweep of ``request`` (``request.sweep`` set, e.g. ``parse_payload({"sweep": {}})``)."""
    if request.sweep is None:
        raise ValueError("execute_sweep needs a request with 'sweep' set")
    context = context or build_context(request, client, settings)
    gateway = _bounded_gateway(client, credentials, settings)
    try:
        settings = with_token_ahead(client, settings)
    except IdentityProviderError as exc:
        return sweep_not_started(request, settings, exc, context)
    logger.info("sweeping%s with %s ledger", " (dry run)" if request.dry_run else "", context.ledger.kind)
    return run_on_sdk_loop(sweep_executions(request, gateway, settings, context, progress))


def with_token_ahead(client: CogniteClient, settings: Settings) -> Settings:
    """Fetch the client's token for the call off the SDK's event loop; the settings with the deadline left.

    The token is made to last the whole deadline, so no request of the call waits for the identity
    provider; the wait for it is bounded by the deadline. Raises :class:`IdentityProviderError`.
    """
    started = time.monotonic()
    fetch_token_ahead(client, valid_for=settings.deadline_seconds, timeout=settings.deadline_seconds)
    left = settings.deadline_seconds - (time.monotonic() - started)
    return settings.model_copy(update={"deadline_seconds": max(left, 0.001)})


def _bounded_gateway(
    client: CogniteClient, credentials: ClientCredentials | SessionCredentials | None, settings: Settings
) -> SdkCdfGateway:
    """The CDF gateway, with the SDK's retries, backoff and request timeout bounded for the deadline."""
    bound_sdk_retries(settings)
    apply_request_timeout(client, settings)
    return SdkCdfGateway(client, credentials)


def build_context(
    request: RetryRequest,
    client: CogniteClient | None,
    settings: Settings,
    *,
    ledger: AttemptLedger | None = None,
    announcer: Announcer | None = None,
    environment: Mapping[str, str] | None = None,
) -> RetryContext:
    """The policy, ledger and announcer of one call; :class:`ConfigurationError` when any is invalid.

    The request's ``policy`` and ``sweep`` may only tighten the operator's limits (``environment`` and
    ``settings``): :class:`PolicyOverrideError` otherwise, unless RETRY_ALLOW_PAYLOAD_LOOSENING is true.
    """
    environment = os.environ if environment is None else environment
    check_limits(request, environment, settings)  # again: a request may come from elsewhere than parse_payload
    policy: RetryPolicy = resolve_policy(request.policy, environment)
    if settings.ledger_ttl_hours <= policy.max_age_hours:
        raise ConfigurationError(
            f"RETRY_LEDGER_TTL_HOURS ({settings.ledger_ttl_hours:g}) must be longer than maxAgeHours "
            f"({policy.max_age_hours:g}): a record must outlive the executions it counts"
        )
    return RetryContext(
        policy=policy,
        ledger=ledger if ledger is not None else build_ledger(settings, client),
        announcer=announcer
        if announcer is not None
        else build_announcer(settings.give_up_topic_arn, settings.deadline_seconds),
    )


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


def session_credentials_from_secrets(secrets: Mapping[str, str] | None, settings: Settings) -> SessionCredentials:
    """The default credentials and, per ``RETRY_CREDENTIALS_MAP``, each mapped set's from the function's secrets.

    Every mapped set is read now: a missing ``<set>-id`` or ``<set>-secret`` is a ConfigurationError
    raised before any request to CDF.
    """
    default = credentials_from_secrets(secrets)
    return SessionCredentials.resolve(default, settings.credentials_map, function_secrets_source(secrets))


def _call_id(function_call_info: Mapping[str, Any] | None) -> str:
    return str((function_call_info or {}).get("call_id", "-"))
