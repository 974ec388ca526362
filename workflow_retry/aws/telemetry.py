"""What a Lambda container tells CloudWatch: Powertools Logger's JSON lines.

One :class:`LambdaTelemetry` per container (built at the cold start, imported only on the Lambda path:
Powertools' Logger costs a cold start tens of milliseconds, which a Cognite Function never pays).

Logs: Powertools Logger owns the package logger (``workflow_retry``), so every line of the tool is one
JSON object on stdout with Powertools' keys (``level``, ``timestamp``, ``function_request_id``,
``cold_start``, ...), ``event_source`` (sqs, sns, http, ...) and the record's fields (``execution_id``,
``workflow``, ``version``, ``outcome``, ``attempt``, ``reason``), named as a Cognite Function's lines
(:mod:`workflow_retry.logs`). Powertools keeps the Lambda runtime's own root handler from printing the
same records a second time. The level is ``POWERTOOLS_LOG_LEVEL`` or ``AWS_LAMBDA_LOG_LEVEL`` (else
INFO), unless the package logger's level was set by the host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from workflow_retry.logs import PACKAGE_LOGGER

T = TypeVar("T")


class LambdaTelemetry:
    """The container's Powertools Logger, and the keys of each invocation."""

    def __init__(self) -> None:
        from aws_lambda_powertools import Logger  # the Lambda path only (see the module docstring)

        host_level = logging.getLogger(PACKAGE_LOGGER).level
        self.logger = Logger(service=PACKAGE_LOGGER, level=host_level or None)

    def invocation(self, context: Any, handle: Callable[[Any, Any], T], event: Any) -> T:
        """Run ``handle(event, context)`` with the invocation's keys (request ID, cold start) on every line."""
        return self.logger.inject_lambda_context(clear_state=True)(handle)(event, context)

    def set_event_source(self, source: str) -> None:
        self.logger.append_keys(event_source=source)
