"""What each platform gets back, and the one rule of which deliveries must come again.

- SQS: ``{"batchItemFailures": [{"itemIdentifier": "<messageId>"}]}``, the records to deliver again;
- SNS, EventBridge: the core result plus ``deliveries`` (one line per delivery); the entrypoint
  raises :class:`~workflow_retry.errors.TransientFailuresError` afterwards when an ID failed transiently;
- HTTP: ``{"statusCode", "headers", "body"}`` with a JSON object as body (see :func:`http_status_of`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from workflow_retry.models import Outcome, RetryReport

RETRY_AFTER_SECONDS = 30
"""``Retry-After`` sent with 409 and 503 answers."""

DeliveryStatus = Literal["handled", "replayed", "invalid", "transient", "in_progress", "store_failed", "key_reused"]


@dataclass(frozen=True)
class DeliveryOutcome:
    """What became of one delivery. ``result`` is the core result (``RetryReport.to_dict()``) when one exists;
    ``report`` is set when it was computed in this invocation."""

    key: str | None
    status: DeliveryStatus
    result: dict[str, Any] | None = None
    report: RetryReport | None = None
    reason: str | None = None

    @property
    def comes_back(self) -> bool:
        """Whether the platform should deliver it again (SQS: a batch item failure)."""
        # A reused key comes back too: it keeps failing, and so ends in the dead-letter queue (or the
        # on-failure destination), where a person sees it, rather than being dropped as done.
        return self.status in ("transient", "in_progress", "store_failed", "key_reused")

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        return out


def batch_response(failed_record_ids: Iterable[str]) -> dict[str, Any]:
    """SQS's partial batch response (the mapping needs ``FunctionResponseTypes: [ReportBatchItemFailures]``)."""
    return {"batchItemFailures": [{"itemIdentifier": record_id} for record_id in failed_record_ids]}


def async_result(outcomes: Sequence[DeliveryOutcome]) -> dict[str, Any]:
    """The result of SNS and EventBridge deliveries: the core result (merged when several) and a line per delivery."""
    with_result = [o.result for o in outcomes if o.result is not None]
    if len(with_result) == 1 and len(outcomes) == 1:
        merged = dict(with_result[0])
    else:
        counts: Counter[str] = Counter()
        for result in with_result:
            counts.update(result.get("counts", {}))
        merged = {"results": [r for result in with_result for r in result.get("results", [])], "counts": dict(counts)}
    merged["deliveries"] = [o.summary() for o in outcomes]
    return merged


def merged_report(reports: Iterable[RetryReport]) -> RetryReport:
    return RetryReport(results=tuple(result for report in reports for result in report.results))


def http_response(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The response shape API Gateway (REST and HTTP APIs) and Function URLs all accept."""
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def http_error(status: int, message: str, *, retry_after: bool = False) -> dict[str, Any]:
    headers = {"retry-after": str(RETRY_AFTER_SECONDS)} if retry_after else None
    return http_response(status, {"error": message}, headers)


def http_status_of(report: RetryReport) -> int:
    """200 when every ID was handled; 503 when CDF throttled or was unavailable (429, 503), the identity
    provider failed transiently (no token, nothing sent), or a retry is cooling down; 502 for any other
    transient failure (another 5xx, no answer, the deadline)."""
    if not report.needs_redelivery:
        return 200
    unavailable = any(
        r.outcome is Outcome.DEFERRED
        or (r.error is not None and r.error.retryable and (r.error.code in (429, 503) or r.error.identity_provider))
        for r in report.results
    )
    return 503 if unavailable else 502


def http_answer(outcome: DeliveryOutcome) -> dict[str, Any]:
    """The HTTP response for one delivery that passed authentication."""
    match outcome.status:
        case "invalid":
            return http_error(400, outcome.reason or "the payload cannot be read")
        case "in_progress":
            return http_error(409, outcome.reason or "being handled", retry_after=True)
        case "key_reused":
            return http_error(409, outcome.reason or "the delivery key was used for another payload")
        case "store_failed":
            return http_error(503, outcome.reason or "the idempotency table failed", retry_after=True)
        case "replayed":
            return http_response(200, {**(outcome.result or {}), "replayed": True})
    status = http_status_of(outcome.report) if outcome.report is not None else 200
    headers = {"retry-after": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return http_response(status, outcome.result or {}, headers)
