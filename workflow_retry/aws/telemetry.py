"""What a Lambda container tells CloudWatch: Powertools Logger's JSON lines and Metrics (EMF).

One :class:`LambdaTelemetry` per container (built at the cold start, imported only on the Lambda path:
Powertools' Logger costs a cold start tens of milliseconds, which a Cognite Function never pays).

Logs: Powertools Logger owns the package logger (``workflow_retry``), so every line of the tool is one
JSON object on stdout with Powertools' keys (``level``, ``timestamp``, ``function_request_id``,
``cold_start``, ...), ``event_source`` (sqs, sns, http, ...) and the record's fields (``execution_id``,
``workflow``, ``version``, ``outcome``, ``attempt``, ``reason``), named as a Cognite Function's lines
(:mod:`workflow_retry.logs`). Powertools keeps the Lambda runtime's own root handler from printing the
same records a second time. The level is ``POWERTOOLS_LOG_LEVEL`` or ``AWS_LAMBDA_LOG_LEVEL`` (else
INFO), unless the package logger's level was set by the host.

Metrics: at the end of each invocation, one CloudWatch metric per outcome (:data:`OUTCOME_METRICS`:
``Retried``, ``Failed``, ``Exhausted``, ``GaveUp``, ``Deferred``, ``Invalid``, ``NotFound``,
``Skipped``), each the number of executions the invocation gave that outcome (zeros included, so that
graphs and alarms see every invocation), in the namespace ``POWERTOOLS_METRICS_NAMESPACE`` (default
``WorkflowRetry``) with the dimension ``service`` (``POWERTOOLS_SERVICE_NAME``, default
``workflow-retry``). Powertools writes them to stdout as one Embedded Metric Format line, which
CloudWatch turns into metrics. A sweep counts everything it looked at (its ``outcomes``); a duplicate
delivery answered from memory counts nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from workflow_retry.logs import PACKAGE_LOGGER
from workflow_retry.models import RetryReport

T = TypeVar("T")

OUTCOME_METRICS = {
    "retried": "Retried",
    "failed": "Failed",
    "exhausted": "Exhausted",
    "gave_up": "GaveUp",
    "deferred": "Deferred",
    "invalid": "Invalid",
    "not_found": "NotFound",
    "skipped": "Skipped",
}
"""Outcome (``gave_up``: executions given up on) -> CloudWatch metric name."""
DEFAULT_NAMESPACE = "WorkflowRetry"
DEFAULT_SERVICE = "workflow-retry"


class LambdaTelemetry:
    """The container's Powertools Logger and Metrics; the keys and the outcome counts of each invocation."""

    def __init__(self) -> None:
        from aws_lambda_powertools import Logger, Metrics  # the Lambda path only (see the module docstring)
        from aws_lambda_powertools.logging.formatter import BasePowertoolsFormatter

        package = logging.getLogger(PACKAGE_LOGGER)
        # A Logger made after the first takes the package logger's first handler as its own. Name the one
        # that has Powertools' formatter: the first may be another (the Cognite path's JSON handler, in a
        # process that ran both paths), whose formatter Powertools cannot drive.
        own = next((h for h in package.handlers if isinstance(h.formatter, BasePowertoolsFormatter)), None)
        self.logger = Logger(service=PACKAGE_LOGGER, level=package.level or None, logger_handler=own)
        self.metrics = Metrics(
            namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE,
            service=os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE,
        )
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def invocation(self, context: Any, handle: Callable[[Any, Any], T], event: Any) -> T:
        """Run ``handle(event, context)`` with the invocation's keys (request ID, cold start) on every line,
        then publish its outcome metrics (also when it raised)."""
        with self._lock:
            self._counts.clear()
        try:
            return self.logger.inject_lambda_context(clear_state=True)(handle)(event, context)
        finally:
            self._publish()

    def count(self, report: RetryReport) -> None:
        """Add the outcomes of one report (a delivery of the invocation) to the invocation's counts."""
        outcomes = report.sweep.outcomes if report.sweep is not None else report.counts
        with self._lock:
            self._counts.update({outcome: n for outcome, n in outcomes.items() if n})
            self._counts["gave_up"] += len(report.gave_up)

    def _publish(self) -> None:
        from aws_lambda_powertools.metrics import MetricUnit

        with self._lock:
            counts = dict(self._counts)
        for outcome, name in OUTCOME_METRICS.items():
            self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=counts.get(outcome, 0))
        try:
            self.metrics.flush_metrics()
        except Exception:
            logging.getLogger(__name__).exception("could not publish the invocation's metrics")

    def set_event_source(self, source: str) -> None:
        self.logger.append_keys(event_source=source)
