"""The CDF gateway: the only module that talks to CDF, through cognite-sdk.

It reads executions, creates sessions and calls retry with raw ``get``/``post`` on the SDK's async
client, so that the caller gets the API's JSON unchanged (``engineExecutionId`` kept, status in upper
case: the SDK's ``WorkflowExecution`` drops the first and lower-cases the second), and so that our
own bounded concurrency, not the SDK's per-API throttle, decides how many requests run at once.
Auth (its token fetched ahead of each call: :mod:`workflow_retry.idp`), gzip, connection pooling and
retries of 429/5xx stay the SDK's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from cognite.client import AsyncCogniteClient, CogniteClient, global_config
from cognite.client.exceptions import (
    CogniteAPIError,
    CogniteAuthError,
    CogniteException,
    CogniteProjectAccessError,
    CogniteRequestError,
)

from workflow_retry.errors import CdfRequestError, ExecutionNotFoundError
from workflow_retry.identity import ClientCredentials, SessionCredentials
from workflow_retry.idp import as_identity_provider_error
from workflow_retry.ids import ExecutionId
from workflow_retry.settings import SECRET_CLIENT_ID, SECRET_CLIENT_SECRET, Settings

T = TypeVar("T")
_MAX_MESSAGE_LENGTH = 500
_SPARE_CONNECTIONS = 2  # a sweep's next list page, a token refresh


__all__ = ["CdfGateway", "ClientCredentials", "Nonce", "SdkCdfGateway"]


class Nonce:
    """A session nonce: single use, short-lived, and never printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Nonce(<redacted>)"

    __str__ = __repr__


class ExecutionGateway(Protocol):
    """What retrying one execution needs from CDF. Every method raises :class:`CdfRequestError` on failure."""

    async def get_execution(self, execution_id: ExecutionId) -> dict[str, Any]:
        """The detailed execution; :class:`ExecutionNotFoundError` when CDF does not know it."""
        ...

    async def create_nonce(self, workflow_external_id: str | None = None) -> Nonce:
        """A fresh session nonce for one retry of an execution of this workflow (its mapped credentials)."""
        ...

    async def retry_execution(self, execution_id: ExecutionId, nonce: Nonce) -> dict[str, Any]:
        """Retry the execution from its point of failure; the updated execution as CDF answered it."""
        ...


class CdfGateway(ExecutionGateway, Protocol):
    """What the core needs from CDF: one execution's calls, and the listing a sweep reads."""

    async def list_executions(
        self, filter: dict[str, Any], limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``POST /workflows/executions/list``: the items and the next cursor (None at the end)."""
        ...


class SdkCdfGateway:
    """:class:`CdfGateway` over cognite-sdk's async client."""

    def __init__(
        self,
        client: CogniteClient | AsyncCogniteClient,
        credentials: ClientCredentials | SessionCredentials | None,
    ) -> None:
        self._client = client.get_async_client() if isinstance(client, CogniteClient) else client
        # The client's raw get/post resolve paths against the base URL only, not the project's API path.
        self._api = f"/api/v1/projects/{quote(self._client.config.project, safe='')}"
        self._credentials = SessionCredentials.of(credentials)
        self._chained_session_refused: CdfRequestError | None = None
        # Token exchange is what the workflows without client credentials (mapped or default) get.
        self._first_token_exchange = asyncio.Lock() if self._credentials.default is None else None
        self._first_token_exchange_done = False

    @property
    def session_type(self) -> str:
        return self._credentials.describe()

    async def get_execution(self, execution_id: ExecutionId) -> dict[str, Any]:
        try:
            response = await self._client.get(f"{self._api}/workflows/executions/{execution_id}")
        except CogniteAPIError as exc:
            # The API has been seen answering 400 as well as 404 for an unknown execution
            # (the SDK's own retrieve_detailed treats both as "not found").
            if exc.code in (400, 404):
                raise ExecutionNotFoundError(exc.code, _api_message(exc), retryable=False) from None
            raise as_request_error(exc) from None
        except CogniteException as exc:
            raise as_request_error(exc) from None
        return _json_object(response.json())

    async def create_nonce(self, workflow_external_id: str | None = None) -> Nonce:
        credentials = self._credentials.for_workflow(workflow_external_id)
        if credentials is not None:
            item = {"clientId": credentials.client_id, "clientSecret": credentials.client_secret}
            return await self._create_nonce(item)
        if self._first_token_exchange is not None and not self._first_token_exchange_done:
            # The first token-exchange session goes alone: if CDF refuses it as a chained session,
            # the IDs waiting behind it fail at once instead of each sending a request to be refused.
            async with self._first_token_exchange:
                if not self._first_token_exchange_done:
                    try:
                        return await self._create_nonce({"tokenExchange": True})
                    finally:
                        self._first_token_exchange_done = True
        return await self._create_nonce({"tokenExchange": True})

    async def _create_nonce(self, item: dict[str, Any]) -> Nonce:
        token_exchange = "tokenExchange" in item
        if token_exchange and self._chained_session_refused is not None:
            raise self._chained_session_refused  # one refusal answers every ID: no request per ID
        try:
            response = await self._client.post(f"{self._api}/sessions", json={"items": [item]})
        except CogniteException as exc:
            error = as_request_error(exc)
            if token_exchange and error.code in (400, 401, 403):
                # Inside a Cognite Function the token already comes from a session, and CDF chains
                # sessions one level only: a token-exchange session is refused. Client credentials work.
                self._chained_session_refused = CdfRequestError(
                    error.code,
                    f"creating a token-exchange session was refused ({error}): a token that itself comes from "
                    "a session, as a Cognite Function's does, cannot create another one. Configuration error: "
                    f"set the function secrets '{SECRET_CLIENT_ID}' and '{SECRET_CLIENT_SECRET}' so that "
                    "retries use client credentials",
                    retryable=False,
                )
                raise self._chained_session_refused from None
            raise CdfRequestError(error.code, f"creating a session failed: {error}", error.retryable) from None
        items = _json_object(response.json()).get("items") or [{}]
        nonce = items[0].get("nonce")
        if not isinstance(nonce, str) or not nonce:
            raise CdfRequestError(response.status_code, "the session response held no nonce", retryable=True)
        return Nonce(nonce)

    async def retry_execution(self, execution_id: ExecutionId, nonce: Nonce) -> dict[str, Any]:
        body = {"authentication": {"nonce": nonce.reveal()}}
        try:
            response = await self._client.post(f"{self._api}/workflows/executions/{execution_id}/retry", json=body)
        except CogniteException as exc:
            raise as_request_error(exc) from None
        return _json_object(response.json())

    async def list_executions(
        self, filter: dict[str, Any], limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        body: dict[str, Any] = {"filter": filter, "limit": limit} | ({"cursor": cursor} if cursor else {})
        try:
            response = await self._client.post(f"{self._api}/workflows/executions/list", json=body)
        except CogniteException as exc:
            raise as_request_error(exc) from None
        page = _json_object(response.json())
        items = [item for item in page.get("items") or () if isinstance(item, dict)]
        next_cursor = page.get("nextCursor")
        return items, next_cursor if isinstance(next_cursor, str) and next_cursor else None


def bound_sdk_retries(settings: Settings) -> None:
    """Bound the SDK's retries and backoff (process-wide settings) so a call can keep its deadline.

    With the SDK's defaults (10 retries, backoff up to 60 s) one request can take minutes when CDF
    answers 429 to everything; these bounds keep one request to well under the deadline.

    Also makes the SDK's connection pool big enough for our concurrency: an execution in flight
    has up to two requests open at once (its detail and its ledger record; its session and its
    ledger write), and the SDK's default pool of 20 connections capped a batch at 10 to 16
    executions whatever the concurrency (docs/benchmarks.md). The SDK reads this when it builds its
    pool, at the first request of the process; a larger pool set by the user is kept.

    And sends request bodies uncompressed: ours are a few hundred bytes (a session, a retry, a batch
    of ledger rows), which gzip makes no smaller, and gzip's set-up costs 50-60 µs of CPU per POST,
    2-3% of a bulk call that is CPU-bound (docs/benchmarks.md).
    """
    global_config.max_retries = settings.sdk_max_retries
    global_config.max_retries_connect = min(settings.sdk_max_retries, 3)
    global_config.max_retry_backoff = settings.sdk_max_backoff_seconds
    global_config.disable_gzip = True
    global_config.max_connection_pool_size = max(
        global_config.max_connection_pool_size, 2 * settings.concurrency + _SPARE_CONNECTIONS
    )


def apply_request_timeout(client: CogniteClient | AsyncCogniteClient, settings: Settings) -> None:
    """Bound one HTTP request's timeout on the client we were given."""
    client.config.timeout = min(client.config.timeout, settings.request_timeout_seconds)


def run_on_sdk_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on cognite-sdk's own background event loop, as its sync client does.

    The SDK keeps one HTTP connection pool per event loop; using its loop reuses that pool across
    warm invocations and works whether or not the caller already runs an event loop.
    """
    from cognite.client.utils._async_helpers import run_sync  # the SDK's own bridge (pinned SDK)

    result: T = run_sync(coroutine)
    return result


def as_request_error(exc: CogniteException) -> CdfRequestError:
    """An SDK error as the per-ID error the results carry: its status, our words, and whether it may pass."""
    match exc:
        case CogniteAPIError():
            retryable = exc.code == 429 or exc.code >= 500
            return CdfRequestError(exc.code, _api_message(exc), retryable)
        case CogniteProjectAccessError():
            return CdfRequestError(401, "unauthorized: the token is invalid, expired or has no project access", False)
        case CogniteRequestError():
            # Timeouts, refused and dropped connections, left after the SDK's own retries.
            return CdfRequestError(None, f"no response from CDF: {type(exc).__name__}", retryable=True)
        case CogniteAuthError():
            # The token fetch of a credential provider other than ours: its message quotes the identity provider.
            return as_identity_provider_error(exc)
        case _:
            return CdfRequestError(None, f"{type(exc).__name__}: {_truncate(str(exc))}", retryable=False)


def _api_message(exc: CogniteAPIError) -> str:
    message = _truncate(str(exc.message))
    return f"{message} (x-request-id: {exc.x_request_id})" if exc.x_request_id else message


def _truncate(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE_LENGTH else text[:_MAX_MESSAGE_LENGTH] + "..."


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CdfRequestError(None, "CDF answered something other than a JSON object", retryable=True)
    return value
