"""CDF-native monitoring: each call and each sweep reported as one extraction pipeline run.

Where ``RETRY_EXTRACTION_PIPELINE`` names an extraction pipeline (its external ID), every call that
retries IDs and every sweep (not a dry run) reports one run through cognite-sdk
(``client.extraction_pipelines.runs.create``). CDF keeps the runs as the pipeline's history, e-mails
the pipeline's contacts (those with ``sendNotification``) on a ``failure``, and when no run at all
arrives within the pipeline's ``allowedNotSeenRangeInMinutes``.

The status of a run:

- ``failure``: the tool gave up on at least one execution (it used up its attempts, or CDF refused its
  retry for a reason that will not pass), or an execution failed for a reason that will not pass, or a
  sweep could not list the executions. A person has to look.
- ``seen``: a sweep that found nothing to act on. The tool is alive and there was nothing to do.
- ``success``: everything else: each execution was retried, or needs nothing now (skipped, cooling
  down), or failed for a passing reason (a later call or sweep takes it again).

The message (at most 1,000 characters, CDF's limit) holds the counts and the IDs given up on; when
they do not fit, as many as fit and how many more there are. Reporting never changes the retry
results: it is bounded by the time the call set aside for it, and a failure is logged.
"""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal

from workflow_retry.models import Outcome, RetryReport

if TYPE_CHECKING:
    from cognite.client import CogniteClient

logger = logging.getLogger(__name__)

RunStatus = Literal["success", "failure", "seen"]
MAX_MESSAGE_LENGTH = 1000
"""CDF refuses a run message longer than this."""


def run_status(report: RetryReport) -> RunStatus:
    """The run status of a call's or a sweep's report (see the module docstring)."""
    if report.gave_up or _failed_for_good(report):
        return "failure"
    if report.sweep is not None and report.sweep.listing_error is not None:
        return "failure"
    if report.sweep is not None and not report.results:
        return "seen"
    return "success"


def run_message(report: RetryReport) -> str:
    """The counts, then the IDs given up on (and failed for good), within :data:`MAX_MESSAGE_LENGTH`."""
    if report.sweep is not None:
        sweep = report.sweep
        counts = {o: n for o, n in sorted(sweep.outcomes.items()) if n}
        head = f"sweep: {sweep.executions_seen} execution(s) seen"
        if sweep.listing_error is not None:
            head += f", listing failed: {sweep.listing_error.message}"
        elif sweep.stopped_early:
            head += f", stopped early: {sweep.stopped_early}"
    else:
        counts = {o: n for o, n in report.counts.items() if n}
        head = f"call: {len(report.results)} execution ID(s)"
    parts = [head, ", ".join(f"{n} {o}" for o, n in counts.items()) or "nothing to do"]
    if report.gave_up:
        parts.append(f"{len(report.gave_up)} gave up")
    message = "; ".join(parts)
    failed_for_good = [i for i in _failed_for_good(report) if i not in report.gave_up]
    message = _with_ids(message, "gave up on", list(report.gave_up))
    message = _with_ids(message, "failed for good", failed_for_good)
    return _cut(message)


def report_run(client: CogniteClient, pipeline: str, report: RetryReport, timeout_seconds: float) -> RunStatus | None:
    """Report the run of ``report`` to the extraction pipeline ``pipeline``, waiting at most ``timeout_seconds``.

    Returns the status reported, or None when it could not be (logged, never raised).
    """
    from cognite.client.data_classes import ExtractionPipelineRunWrite  # the run reporting path only

    status = run_status(report)
    message = run_message(report)
    run = ExtractionPipelineRunWrite(extpipe_external_id=pipeline, status=status, message=message)
    if timeout_seconds <= 0:
        logger.error("run of extraction pipeline %s not reported: the call's deadline has come", pipeline)
        return None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="extpipe-run")
    try:
        # The SDK call is synchronous; a thread bounds it (on a timeout it finishes on its own, unawaited).
        future = pool.submit(contextvars.copy_context().run, client.extraction_pipelines.runs.create, run)
        future.result(timeout=timeout_seconds)
    except TimeoutError:
        logger.error("run of extraction pipeline %s not reported within %.1f s", pipeline, timeout_seconds)
        return None
    except Exception as exc:
        logger.error("run of extraction pipeline %s not reported: %s", pipeline, _describe(exc))
        return None
    finally:
        pool.shutdown(wait=False)
    logger.info(
        "reported a %s run to extraction pipeline %s: %s",
        status,
        pipeline,
        message,
        extra={"event": "pipeline_run", "pipeline": pipeline, "status": status},
    )
    return status


def _failed_for_good(report: RetryReport) -> list[str]:
    return [
        r.execution_id
        for r in report.results
        if r.outcome is Outcome.FAILED and r.error is not None and not r.error.retryable
    ]


def _with_ids(message: str, label: str, ids: list[str]) -> str:
    """``message`` with ``; label: a, b`` added: as many IDs as fit, then how many more there are."""
    if not ids:
        return message
    shown: list[str] = []
    for execution_id in ids:
        more = len(ids) - len(shown) - 1
        trial = f"{message}; {label}: {', '.join([*shown, execution_id])}" + (f" and {more} more" if more else "")
        if len(trial) > MAX_MESSAGE_LENGTH:
            break
        shown.append(execution_id)
    more = len(ids) - len(shown)
    if not shown:
        return f"{message}; {label}: {more} execution(s)"
    return f"{message}; {label}: {', '.join(shown)}" + (f" and {more} more" if more else "")


def _cut(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_LENGTH else message[: MAX_MESSAGE_LENGTH - 3] + "..."


def _describe(exc: Exception) -> str:
    from cognite.client.exceptions import CogniteAPIError

    if isinstance(exc, CogniteAPIError):
        return f"{exc.code} {exc.message}"
    return type(exc).__name__
