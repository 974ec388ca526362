"""The token for CDF: fetched from the identity provider ahead of each call, off the SDK's event loop.

cognite-sdk fetches its token synchronously inside the first request of a call, on the event loop that
runs every request of the call and enforces its deadline, with httpx's default 5 s timeout; a failure
surfaces as a raw httpx exception, a ``KeyError`` or a ``CogniteOAuthError`` that quotes the identity
provider's answer (an error page can quote the request, client secret included). So:

- :class:`BoundedClientCredentials` (what :func:`~workflow_retry.connection.build_client` uses) is the
  SDK's ``OAuthClientCredentials`` with a bounded token request whose failures are an
  :class:`~workflow_retry.errors.IdentityProviderError` chosen by the HTTP status or the exception's
  type alone: the body of an answer is read only for the token of a 2xx, and never quoted;
- :func:`fetch_token_ahead` gets the token in a thread, waiting at most the call's remaining deadline,
  and makes it last the whole call, so no request on the event loop waits for the identity provider.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx2
from cognite.client import AsyncCogniteClient, CogniteClient, global_config
from cognite.client.credentials import OAuthClientCredentials, Token
from cognite.client.exceptions import CogniteAuthError

from workflow_retry.errors import IdentityProviderError

_RETRYABLE_REFUSALS = frozenset({408, 425, 429})
"""4xx statuses that say "not now" rather than "not you"."""
_MAX_TOKEN_RESPONSE_BYTES = 64 * 1024
"""A token answer is a few kB (a JWT and three fields); anything longer is not read into memory."""


class BoundedClientCredentials(OAuthClientCredentials):
    """The SDK's client credentials flow, with a bounded token request and errors mapped by status and type.

    The token is kept here (not in the SDK's private cache) so that :meth:`fetch_ahead` can ask for one
    that lasts a whole call; the SDK calls :meth:`authorization_header` before each request, which then
    answers from memory. The form the SDK posts (``_prepare_token_request``) is the SDK's own.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scopes: list[str] | None,
        *,
        timeout_seconds: float,
        **token_custom_args: Any,
    ) -> None:
        super().__init__(token_url, client_id, client_secret, scopes, **token_custom_args)
        self.timeout_seconds = timeout_seconds
        """Timeout of a token request made outside :meth:`fetch_ahead` (a call's requests never make one)."""
        self._token: tuple[str, float] | None = None  # (access token, expires at in time.time() seconds)
        self._fetching = threading.Lock()

    def authorization_header(self) -> tuple[str, str]:
        return "Authorization", f"Bearer {self._token_lasting(0.0, self.timeout_seconds)}"

    def lasts(self, seconds: float) -> bool:
        """Whether the token in memory outlasts ``seconds`` from now (plus the SDK's leeway)."""
        token = self._token
        return token is not None and token[1] - self.token_expiry_leeway_seconds > time.time() + seconds

    def fetch_ahead(self, valid_for: float, timeout: float) -> None:
        """Make the token in memory last ``valid_for`` seconds, fetching a new one within ``timeout`` if needed."""
        self._token_lasting(valid_for, timeout)

    def _token_lasting(self, seconds: float, timeout: float) -> str:
        token = self._token
        if token is None or not self.lasts(seconds):
            with self._fetching:
                token = self._token
                if token is None or not self.lasts(seconds):
                    token = self._token = self._fetch(timeout)
        return token[0]

    def _refresh_access_token(self) -> tuple[str, float]:
        return self._fetch(self.timeout_seconds)

    def _fetch(self, timeout: float) -> tuple[str, float]:
        where = _describe(self.token_url)
        http_options, form = self._prepare_token_request()
        try:
            with httpx2.stream(
                "POST",
                self.token_url,
                data=form,
                headers={"Accept": "application/json"},
                verify=not global_config.disable_ssl,
                **(http_options | {"timeout": timeout}),
            ) as response:
                status = response.status_code
                if not 200 <= status < 300:  # its body is never read
                    raise IdentityProviderError(f"{where} answered HTTP {status}", _retryable_status(status))
                body = _read_at_most(response, _MAX_TOKEN_RESPONSE_BYTES)
        except (httpx2.InvalidURL, httpx2.UnsupportedProtocol) as exc:
            raise IdentityProviderError(
                f"{where}: IDP_TOKEN_URL is not a usable URL ({type(exc).__name__})", False
            ) from None
        except httpx2.TimeoutException as exc:
            raise IdentityProviderError(
                f"{where} did not answer within {timeout:.1f} s ({type(exc).__name__})", True
            ) from None
        except httpx2.HTTPError as exc:
            raise IdentityProviderError(f"{where} cannot be reached ({type(exc).__name__})", True) from None
        token = _token_of(body, time.time()) if body is not None else None
        if token is None:
            raise IdentityProviderError(f"{where} answered HTTP {status} without a usable access token", True)
        return token


def fetch_token_ahead(client: CogniteClient | AsyncCogniteClient, *, valid_for: float, timeout: float) -> None:
    """Have the client's token ready for a call of ``valid_for`` seconds, waiting at most ``timeout`` seconds.

    The fetch runs in a daemon thread: the identity provider can hang the thread, not the caller (nor
    the SDK's event loop). A ``Token`` (a Cognite Function's runtime client) needs no fetch. Raises
    :class:`IdentityProviderError`.
    """
    credentials = client.config.credentials
    if isinstance(credentials, Token):
        return
    fetch: Callable[[], object]
    if isinstance(credentials, BoundedClientCredentials):
        if credentials.lasts(valid_for):
            return
        fetch = partial(credentials.fetch_ahead, valid_for, timeout)
    else:
        fetch = credentials.authorization_header  # another provider: its own timeouts, bounded by the wait
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fetch()
        except BaseException as exc:  # reported to the caller, mapped by type
            failure.append(exc)

    thread = threading.Thread(target=run, name="idp-token", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    token_url = getattr(credentials, "token_url", None)
    if thread.is_alive():
        raise IdentityProviderError(f"{_describe(token_url)} did not answer within {timeout:.1f} s", True)
    if failure:
        raise as_identity_provider_error(failure[0], token_url if isinstance(token_url, str) else None) from None


def as_identity_provider_error(exc: BaseException, token_url: str | None = None) -> IdentityProviderError:
    """An error of any credential provider's token fetch, by its type (and HTTP status) only."""
    where = _describe(token_url)
    match exc:
        case IdentityProviderError():
            return exc
        case httpx2.HTTPStatusError():
            status = exc.response.status_code
            return IdentityProviderError(f"{where} answered HTTP {status}", _retryable_status(status))
        case httpx2.TimeoutException():
            return IdentityProviderError(f"{where} did not answer in time ({type(exc).__name__})", True)
        case httpx2.HTTPError():
            return IdentityProviderError(f"{where} cannot be reached ({type(exc).__name__})", True)
        case CogniteAuthError():
            # The SDK's refusal carries the provider's own words, not its status: refused, not retryable.
            return IdentityProviderError(f"{where} refused the token request ({type(exc).__name__})", False)
        case _:
            return IdentityProviderError(f"{where} gave no usable token ({type(exc).__name__})", True)


def _retryable_status(status: int) -> bool:
    return status in _RETRYABLE_REFUSALS or status >= 500


def _read_at_most(response: httpx2.Response, limit: int) -> bytes | None:
    """The body, or None when it is longer than ``limit`` bytes (not read further)."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _token_of(body: bytes, now: float) -> tuple[str, float] | None:
    """The access token and its expiry from a 2xx answer's body, or None; nothing else of the body is kept."""
    try:
        answer = json.loads(body)
        token, expires_in = answer["access_token"], float(answer["expires_in"])
    except (ValueError, KeyError, TypeError):  # not JSON or UTF-8, not an object, no token, no number
        return None
    if not isinstance(token, str) or not token or not math.isfinite(expires_in) or expires_in <= 0:
        return None
    return token, now + expires_in


def _describe(token_url: object) -> str:
    """``cannot authenticate: the identity provider (<host>)``: the host only (a URL can hold userinfo)."""
    host = None
    if isinstance(token_url, str):
        try:
            host = urlsplit(token_url).hostname
        except ValueError:
            host = None
    return f"cannot authenticate: the identity provider ({host or 'IDP_TOKEN_URL'})"
