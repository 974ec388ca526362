"""The exceptions this package raises, in one place.

::

    RetryToolError                 base class: catch this to catch everything raised on purpose
    ├── PayloadError               the call's data holds no readable execution ID, or is malformed
    │   │                          (too many IDs, wrong types): nothing was sent to CDF
    │   └── UnsupportedEventError  Lambda: the event is from no source this function knows (the
    │                              message names what it saw)
    ├── AuthenticationError        Lambda HTTP: the request could not be authenticated; nothing was
    │   │                          sent to CDF
    │   ├── SignatureError         missing, malformed, expired or wrong signature (HTTP 401)
    │   ├── SenderNotAllowedError  validly signed, but by a sender not configured (HTTP 403)
    │   └── SignatureCheckUnavailableError  the signing certificate could not be fetched (HTTP 503)
    ├── DeliveryInProgressError    Lambda: the same delivery is being handled by another invocation
    │                              right now; the platform should deliver it again later
    ├── IdempotencyStoreError      Lambda: the idempotency table could not be read or written; the
    │                              delivery was not handled and should come again
    ├── ConfigurationError         settings from the call, the environment or defaults are invalid:
    │   │                          raised before any request to CDF
    │   └── PolicyOverrideError    the call's ``policy`` or ``sweep`` loosens the operator's limits
    │                              (or contradicts them): the message names each field, the call's
    │                              value and the limit; the same payload is refused again
    ├── TransientFailuresError     raised by asynchronous entrypoints *after* every ID was handled,
    │                              when at least one ID failed with ``retryable: true``, so that the
    │                              platform's own redelivery takes over; ``report`` holds the result
    ├── CdfRequestError            internal: one request to CDF failed (``code``, ``retryable``); the
    │   │                          service turns it into a ``failed`` result, it never escapes
    │   ├── ExecutionNotFoundError internal: CDF does not know the execution (a ``not_found`` result)
    │   └── IdentityProviderError  no token for CDF: the identity provider refused, failed or did not
    │                              answer within the deadline; every ID of the call is ``failed`` and
    │                              nothing is sent to CDF (the command line exits 3 with its message)
    └── LedgerError                internal: the attempt ledger (RAW, DynamoDB) could not be read or
                                   written; the service then does not retry (a ``failed`` result,
                                   ``retryable: true``): an attempt that cannot be counted is not made

Per-ID problems (an invalid ID, a 404, a 503) never raise: they are results. Messages never hold a
token, a client secret or a nonce.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workflow_retry.models import RetryReport


class RetryToolError(Exception):
    """Base class of every exception this package raises on purpose."""


class PayloadError(RetryToolError, ValueError):
    """The payload cannot be read: no execution ID in it, a field of the wrong type, or too many IDs."""


class UnsupportedEventError(PayloadError):
    """The Lambda event comes from no source this function knows; the message names what it saw."""


class ConfigurationError(RetryToolError, ValueError):
    """A setting is invalid. Raised before any request to CDF."""


class PolicyOverrideError(ConfigurationError):
    """A call's ``policy`` or ``sweep`` loosens the operator's limits, or contradicts them.

    A fault of the call, not of the environment: the same payload is refused again, so an event that
    carries it is reported, not delivered again.
    """


class AuthenticationError(RetryToolError):
    """An HTTP delivery could not be authenticated; nothing was sent to CDF. Messages hold no secret."""


class SignatureError(AuthenticationError):
    """A missing, malformed, expired or non-matching signature (HTTP 401)."""


class SenderNotAllowedError(AuthenticationError):
    """A validly signed delivery from a sender that is not configured, e.g. another SNS topic (HTTP 403)."""


class SignatureCheckUnavailableError(AuthenticationError):
    """The signature could not be checked now (the signing certificate could not be fetched): HTTP 503."""


class DeliveryInProgressError(RetryToolError):
    """The same delivery is being handled by another invocation right now; deliver it again later."""


class DeliveryKeyReusedError(RetryToolError):
    """A delivery key (SNS MessageId, webhook-id, ...) came again with another payload: refused, not
    answered with the other payload's result."""


class IdempotencyStoreError(RetryToolError):
    """The idempotency table could not be read or written: the delivery was not handled."""


class TransientFailuresError(RetryToolError):
    """Some IDs failed for a reason that may pass; the platform should deliver the event again."""

    def __init__(self, report: RetryReport) -> None:
        self.report = report
        failed = [r.execution_id for r in report.results if r.wants_redelivery]
        super().__init__(
            f"{len(failed)} execution(s) failed transiently or are cooling down, and may succeed later: {failed[:20]}"
        )

    def to_dict(self) -> dict[str, Any]:
        return self.report.to_dict()


class CdfRequestError(RetryToolError):
    """Internal: one request to CDF failed. The service turns it into a ``failed`` result; it never escapes.

    ``code`` is the HTTP status (None when no response came); ``retryable`` is True for 429, 5xx,
    timeouts and dropped connections left after the SDK's own retries.
    """

    def __init__(self, code: int | None, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class ExecutionNotFoundError(CdfRequestError):
    """Internal: CDF does not know the execution (404, or the 400 it has been seen to answer)."""


class IdentityProviderError(CdfRequestError):
    """No token for CDF: the identity provider refused the client, failed, or did not answer in time.

    ``code`` is None (CDF was not reached); the message names the identity provider's host and its HTTP
    status or the exception's type, never what it answered (an error page can quote the request, client
    secret included). ``retryable`` is True for 408, 429, 5xx, timeouts, refused connections and names
    that do not resolve, and for a 2xx without a usable token; False when the client was refused (4xx).
    """

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(None, message, retryable)


class LedgerError(RetryToolError):
    """Internal: the attempt ledger could not be read or written. The execution is not retried.

    ``code`` is the store's HTTP status when it answered (e.g. 403: the capability to use the RAW
    database is missing); ``retryable`` is True for throttling, 5xx and lost connections.
    """

    def __init__(self, message: str, code: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
